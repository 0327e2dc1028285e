"""Candidate evaluation: the plain evaluator here; Ray actors and the pool in ``evaluation.pool``."""

from .candidate import CandidateEvaluator, candidate_id

__all__ = ["CandidateEvaluator", "candidate_id"]
