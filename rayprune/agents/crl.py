"""``--agent crl``: the constrained-RL pruning agent (PPO-Lagrangian on RLlib) with an evaluator pool.

Per iteration (``algo.train()``): the env runners step K lockstep pruning episodes per env, send
the K terminal candidates to the :class:`~rayprune.evaluation.pool.EvaluatorPool` together, the
multipliers take a dual-ascent step on the episodes' measured costs (normalised so every budget is
1), and PPO updates the policy on the Lagrangian surrogate. Every evaluated candidate is written
as a Parquet row by the env that asked for it; the driver reads them back for progress.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import gymnasium as gym
import pandas as pd
import torch

from .._auth import use_cluster_token
from ..evaluation.pool import EvaluatorPool
from ..problem import PruningProblem
from ..telemetry import Telemetry
from ..results import CandidateWriter, drop_rows_after, read_candidates
from .env import PruningEnvSpec, LockstepPruningEnv

__all__ = ["ENV_NAME", "EnvContext", "CRLSearch", "make_env", "build_algorithm", "search_crl", "ensure_ray"]

ENV_NAME = "rayprune-pruning"


@dataclass
class EnvContext:
    """Shipped to env runners by reference (one ``ray.put``): the spec, the pool, where rows go."""

    spec: PruningEnvSpec
    pool: EvaluatorPool
    out_dir: str
    constants: dict[str, Any]
    seed: int = 0


def make_env(env_config: dict) -> LockstepPruningEnv:
    """RLlib env creator (``gym_env_vectorize_mode=VECTOR_ENTRY_POINT``): returns a VectorEnv of
    ``env_config["num_envs"]`` lockstep episodes."""
    import ray

    ctx: EnvContext = ray.get(env_config["context"])
    env_ref: dict[str, Any] = {}

    def on_rows(rows: list[dict]) -> None:
        env = env_ref["env"]
        writer = env_ref.setdefault(
            "writer",
            CandidateWriter(ctx.out_dir, constants=ctx.constants, flush_every=10**9,
                            name=f"{ctx.constants.get('trial_id', 'trial')}-{env.id}"),
        )
        for row in rows:
            writer.add({**row, "iteration": env.training_iteration})
        writer.flush()

    env = LockstepPruningEnv(ctx.spec, ctx.pool.evaluate_many, num_envs=int(env_config.get("num_envs", 1)),
                             on_rows=on_rows, seed=ctx.seed)  # RLlib reseeds with seed + worker index
    env_ref["env"] = env
    return env


def ensure_ray(address: Optional[str] = None, *, log: Callable[[str], None] = print,
               metadata: Optional[dict[str, str]] = None) -> None:
    """Connect to ``address`` (``auto``, ``HOST:PORT``, ``ray://...``) or start a local Ray.

    ``metadata`` (config name, budgets) becomes the Ray job's metadata, shown in the dashboard.
    """
    import ray
    from ray.job_config import JobConfig

    if ray.is_initialized():
        return
    job = JobConfig(metadata={k: str(v) for k, v in (metadata or {}).items()})
    if address:
        use_cluster_token()  # effective only if Ray was not imported yet: the CLI calls it first
        ray.init(address=address, log_to_driver=False, job_config=job)
        log(f"Connected to Ray at {address}: {ray.cluster_resources()}")
    elif os.environ.get("RAY_ADDRESS"):  # inside a Ray job (ray job submit) or set by the user
        use_cluster_token()
        ray.init(log_to_driver=False, job_config=job)
        log(f"Connected to Ray at {os.environ['RAY_ADDRESS']}: {ray.cluster_resources()}")
    else:  # a fresh local instance, never a stale `ray start` cluster recorded on this machine
        ray.init(address="local", log_to_driver=False, job_config=job)
        log(f"Started a local Ray instance: {ray.cluster_resources()}")


def build_algorithm(problem: PruningProblem, context_ref, *, seed: int):
    """The PPO-Lagrangian algorithm for ``problem`` (env registered under :data:`ENV_NAME`)."""
    from ray.tune.registry import register_env

    from .ppo_lagrangian import PPOLagrangianConfig

    crl = problem.config.search.crl
    register_env(ENV_NAME, make_env)
    steps_per_episode = problem.space.num_groups
    runners = max(1, crl.env_runners)
    per_round = crl.num_envs * runners
    episodes = int(math.ceil(crl.episodes_per_iteration / per_round) * per_round)
    config = (
        PPOLagrangianConfig()
        .environment(env=ENV_NAME, env_config={"context": context_ref})
        .env_runners(
            num_env_runners=crl.env_runners,
            num_envs_per_env_runner=crl.num_envs,
            gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT,
            num_cpus_per_env_runner=0 if crl.env_runners == 0 else 1,
        )
        .learners(num_learners=0)
        .training(
            lr=crl.lr, gamma=crl.gamma, lambda_=crl.gae_lambda, clip_param=crl.clip_param,
            num_epochs=crl.num_epochs, minibatch_size=min(crl.minibatch_size, episodes * steps_per_episode),
            train_batch_size_per_learner=episodes * steps_per_episode, entropy_coeff=crl.entropy_coeff,
            cost_keys=[b.metric for b in problem.budgets], cost_budgets=[1.0] * len(problem.budgets),
            lagrange_init=crl.lagrange_init, lagrange_lr=crl.lagrange_lr, cost_gae_lambda=crl.cost_gae_lambda,
        )
        .rl_module(model_config={"fcnet_hiddens": list(crl.hidden), "fcnet_activation": "tanh"})
        .debugging(seed=seed, log_level="ERROR")
    )
    return config.build_algo()


def _progress(frame: pd.DataFrame, problem: PruningProblem) -> dict[str, Any]:
    if frame.empty:
        return {"evaluations": 0, "errors": 0, "best_accuracy": None}
    ok = frame[(frame["status"] == "ok") & frame["feasible"].astype(bool)]
    best = ok.sort_values("accuracy", ascending=False).iloc[0] if not ok.empty else None
    out = {
        "evaluations": int(len(frame)),
        "errors": int((frame["status"] != "ok").sum()),
        "best_accuracy": None if best is None else float(best["accuracy"]),
        "best_candidate_id": None if best is None else str(best["candidate_id"]),
    }
    if best is not None:
        out.update({f"best_{c}": float(best[c]) for c in problem.limits})
    return out


@contextlib.contextmanager
def _preserve_global_torch_state():
    """Restore torch's determinism flags and the global RNGs after RLlib's ``set_torch_seed``.

    ``.debugging(seed=...)`` makes RLlib call ``torch.use_deterministic_algorithms(True)`` and reseed
    Python's, numpy's and torch's global generators; without this, everything later in the process
    (the final fine-tune, other trials) would inherit that.
    """
    import random

    import numpy as np

    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def _set_env_state(env_runner: Any, *, iteration: int, episodes_done: Optional[int] = None) -> None:
    env = getattr(env_runner, "env", None)
    if env is None:
        return
    env = env.unwrapped
    if isinstance(env, LockstepPruningEnv):
        env.training_iteration = iteration
        if episodes_done is not None:
            env.episodes_done = episodes_done


def _get_episodes_done(env_runner: Any) -> int:
    env = getattr(env_runner, "env", None)
    return int(getattr(env.unwrapped, "episodes_done", 0)) if env is not None else 0


class CRLSearch:
    """The constrained-RL search, one PPO-Lagrangian iteration per :meth:`step`.

    Used by ``rayprune prune`` (a loop over :meth:`step`) and by the sweep's Tune trainable
    (:meth:`step`, then :meth:`save` for the trial checkpoint; :meth:`restore` on resume).
    Rows land under ``out_dir/candidates/`` with ``constants`` (trial id, budgets ...) and the
    training iteration that produced them.
    """

    def __init__(self, problem: PruningProblem, *, out_dir: str | Path, constants: dict[str, Any], seed: int,
                 placement_group=None, bundle_offset: int = 0, log: Callable[[str], None] = print) -> None:
        import ray

        self.problem = problem
        self.out_dir = str(out_dir)
        self.trial_id = str(constants.get("trial_id", "prune"))
        self.log = log
        crl = problem.config.search.crl
        self.tags = {
            "sweep": str(constants.get("sweep_id", "")),
            "trial": str(constants.get("trial_name", self.trial_id)),
            "budget": ",".join(f"{b.metric}={b.value:g}" for b in problem.budgets),
        }
        self.telemetry = Telemetry(self.tags)
        self.pool = EvaluatorPool(
            problem, size=crl.evaluators, num_cpus=crl.evaluator_cpus, num_gpus=crl.evaluator_gpus,
            max_restarts=crl.evaluator_max_restarts, max_task_retries=crl.evaluator_max_task_retries,
            placement_group=placement_group, bundle_offset=bundle_offset,
            name=self.tags["trial"], tags=self.tags,
        )
        self.pool.wait_ready()
        spec = PruningEnvSpec.from_problem(problem, action_wall=crl.action_wall, budget_fill=crl.budget_fill,
                                           finetune_schedule=crl.finetune_schedule)
        self._context_ref = ray.put(EnvContext(spec=spec, pool=self.pool, out_dir=self.out_dir,
                                               constants=dict(constants), seed=seed))
        with _preserve_global_torch_state():  # RLlib's seeding turns on deterministic algorithms process-wide
            self.algo = build_algorithm(problem, self._context_ref, seed=seed)
        self.iteration = 0
        self._evaluations = 0

    def rows(self) -> pd.DataFrame:
        """This trial's candidate rows written so far."""
        frame = read_candidates(self.out_dir)
        if not frame.empty and "trial_id" in frame.columns:
            frame = frame[frame["trial_id"] == self.trial_id]
        return frame

    def step(self) -> dict[str, Any]:
        """One iteration: rollout of lockstep episodes (candidates evaluated on the pool), dual
        ascent, PPO update. Returns progress metrics (see :data:`rayprune.sweep.metrics`)."""
        from .ppo_lagrangian import EPISODE_COST_METRIC, LAGRANGE_METRIC, VIOLATION_RATE_METRIC, metric_name

        self.iteration += 1
        self.algo.env_runner_group.foreach_env_runner(functools.partial(_set_env_state, iteration=self.iteration))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the policy is tiny; evaluators get the cores
        t0 = time.time()
        try:
            result = self.algo.train()
        finally:
            torch.set_num_threads(threads)
        seconds = time.time() - t0
        prog = _progress(self.rows(), self.problem)
        new = prog["evaluations"] - self._evaluations
        self._evaluations = prog["evaluations"]
        limits = self.problem.limits
        self.telemetry.gauge("rayprune_best_feasible_accuracy", prog["best_accuracy"])
        for c in limits:
            self.telemetry.gauge("rayprune_lagrange_multiplier", result.get(metric_name(LAGRANGE_METRIC, c)), constraint=c)
            self.telemetry.gauge("rayprune_constraint_violation_rate", result.get(metric_name(VIOLATION_RATE_METRIC, c)),
                                 constraint=c)
        return {
            "iteration": self.iteration,
            **prog,
            "evals_per_s": new / max(seconds, 1e-9),
            "iteration_seconds": seconds,
            **{f"lambda_{c}": result.get(metric_name(LAGRANGE_METRIC, c)) for c in limits},
            **{f"violation_rate_{c}": result.get(metric_name(VIOLATION_RATE_METRIC, c)) for c in limits},
            **{f"mean_cost_{c}": result.get(metric_name(EPISODE_COST_METRIC, c)) for c in limits},
        }

    def describe(self, metrics: dict[str, Any], total: Optional[int] = None) -> str:
        """One progress line."""
        limits = self.problem.limits
        best = metrics.get("best_accuracy")
        costs = ", ".join(f"{c}={metrics.get(f'best_{c}', float('nan')):.4g}" for c in limits) if best is not None else "-"
        lam = ", ".join(f"λ[{c}]={metrics[f'lambda_{c}']:.3f}" for c in limits if metrics.get(f"lambda_{c}") is not None)
        viol = ", ".join(f"violations[{c}]={metrics[f'violation_rate_{c}']:.2f}" for c in limits
                         if metrics.get(f"violation_rate_{c}") is not None)
        return (f"crl iter {metrics['iteration']}{'' if total is None else f'/{total}'}: evaluations "
                f"{metrics['evaluations']}, best feasible accuracy {'-' if best is None else f'{best:.4f}'} ({costs}), "
                f"{lam}, {viol}, {metrics['evals_per_s']:.2f} evals/s")

    def save(self, directory: str | Path) -> None:
        """Algorithm state (policy, optimiser, multipliers) and the search's own counters."""
        directory = Path(directory)
        self.algo.save_to_path(str(directory / "algo"))
        episodes = self.algo.env_runner_group.foreach_env_runner(_get_episodes_done)
        state = {"iteration": self.iteration, "evaluations": self._evaluations,
                 "episodes_done": int(max(episodes) if episodes else 0)}
        (directory / "search_state.json").write_text(json.dumps(state))

    def restore(self, directory: str | Path) -> None:
        """Continue from :meth:`save`; rows written after that checkpoint are dropped (they will be
        produced again), so no row is lost or duplicated."""
        directory = Path(directory)
        self.algo.restore_from_path(str(directory / "algo"))
        state = json.loads((directory / "search_state.json").read_text())
        self.iteration = int(state["iteration"])
        drop_rows_after(self.out_dir, self.trial_id, self.iteration)
        self._evaluations = len(self.rows())
        self.algo.env_runner_group.foreach_env_runner(
            functools.partial(_set_env_state, iteration=self.iteration, episodes_done=int(state["episodes_done"])))

    def close(self) -> None:
        try:
            self.algo.stop()
        finally:
            self.pool.shutdown()


def search_crl(problem: PruningProblem, evaluator, writer: CandidateWriter, seed: int,
               log: Callable[[str], None], *, address: Optional[str] = None, **_: Any) -> dict[str, Any]:
    """Run the constrained-RL search for ``rayprune prune``; rows land under ``writer``'s directory."""
    ensure_ray(address, log=log, metadata={"rayprune": "prune", "config": problem.config.name,
                                          "budgets": ",".join(f"{b.metric}={b.value:g}" for b in problem.budgets)})
    crl = problem.config.search.crl
    search = CRLSearch(problem, out_dir=Path(writer.directory).parent, constants=dict(writer.constants),
                       seed=seed, log=log)
    started = time.time()
    metrics: dict[str, Any] = {}
    try:
        for _ in range(crl.iterations):
            metrics = search.step()
            log(search.describe(metrics, crl.iterations))
    finally:
        search.close()
    metrics["seconds"] = time.time() - started
    return metrics
