"""Config sections of the search: agents (crl, evolution, TPE), scores, the evaluator pool, sweeps."""

from __future__ import annotations

from typing import Any, Literal, Mapping, Optional, Sequence

from pydantic import Field, field_validator, model_validator

from ..placement import Node, describe_nodes, packs
from .base import Section as _Section
from .train import TrainConfig

__all__ = ["CRLConfig", "EvolutionConfig", "TPEConfig", "AdaptiveBNConfig", "RerankConfig", "EvaluationConfig",
           "SearchConfig", "SweepConfig", "packs"]


_MOVED_KEYS = {
    "search.crl.iterations": "search.evaluations (candidates scored by every agent; PPO iterations follow from it)",
    "search.crl.episodes_per_iteration": "search.batch_size (candidates per step of every agent)",
    "search.crl.finetune_schedule": "search.score (every agent is scored the same way)",
    "search.crl.evaluators": "evaluation.evaluators",
    "search.crl.evaluator_cpus": "evaluation.cpus",
    "search.crl.evaluator_gpus": "evaluation.gpus",
    "search.crl.evaluator_max_restarts": "evaluation.max_restarts",
    "search.crl.evaluator_max_task_retries": "evaluation.max_task_retries",
}


def _refuse_moved(data: Any, section: str) -> Any:
    """Name the new home of a key that moved, instead of a bare 'unknown key'."""
    if isinstance(data, Mapping):
        moved = [f"{section}.{k} -> {_MOVED_KEYS[f'{section}.{k}']}" for k in data if f"{section}.{k}" in _MOVED_KEYS]
        if moved:
            raise ValueError("key(s) moved: " + "; ".join(moved))
    return data


class CRLConfig(_Section):
    """The constrained-RL agent (PPO-Lagrangian, METHODS.md section 1).

    Each PPO iteration samples ``search.batch_size`` episodes (one candidate each), scores them on
    the evaluator pool and updates the policy and the multipliers."""

    #: one policy for all of a sweep's budget levels (the level is in the observation, each episode
    #: draws one); False: one policy per level, each with its share of the candidates
    budget_conditioned: bool = True
    #: episodes stepped together per env runner (policy inference batched over them)
    num_envs: int = Field(8, gt=0)
    #: remote env runners (0: sample in the driver, the default: sampling is policy inference only)
    env_runners: int = Field(0, ge=0)
    #: what an episode's actions are: "direction", one number per group in [min_keep, 1] that the agent
    #: projects onto the level's budget boundary as random search and evolution do (an untrained
    #: policy proposes what random search proposes); "ratio", AMC's keep ratio per group between a
    #: floor and a cap that depend on the groups decided before it (action_wall, budget_fill).
    #: "direction" since session 8: level on VGG11 and small_cnn, 5.8 points better mean final test on
    #: the user-style CNN where "ratio" lost to every baseline (BENCHMARKS.md, "crl with direction actions")
    action: Literal["direction", "ratio"] = "direction"
    #: with action "ratio": AMC-style cap on each action so analytic budgets stay reachable
    action_wall: bool = True
    #: with action_wall, also a floor on each action so the budget can still be spent if the later groups
    #: keep everything: the action picks a point in [floor, cap], so every candidate lands on the budget
    #: boundary of its tightest analytic constraint and the agent learns how to share it between groups
    budget_fill: bool = True
    #: 10x the method's 3e-4, and minibatches of 128 instead of 64: a search has a few dozen PPO iterations,
    #: not 40k timesteps (BENCHMARKS.md "crl settings": best search score 0.786/0.591/0.367 -> 0.823/0.704/0.437
    #: at params 10/5/2 % on VGG11, development seeds 0-1)
    lr: float = Field(3e-3, gt=0)
    gamma: float = Field(0.99, ge=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    cost_gae_lambda: float = Field(1.0, ge=0, le=1)
    clip_param: float = Field(0.2, gt=0)
    num_epochs: int = Field(10, gt=0)
    minibatch_size: int = Field(128, gt=0)
    entropy_coeff: float = Field(0.0, ge=0)
    hidden: list[int] = Field(default_factory=lambda: [32, 32])
    #: the Gaussian policy's initial log standard deviation on the [-1, 1] action (None: RLlib's init)
    initial_log_std: Optional[float] = -0.5
    #: rewards standardised per budget level over its recent scores, so levels with lower accuracy do
    #: not dominate a budget-conditioned policy's advantages ("none": the raw score, the method)
    #: ("rank": centred ranks per level; "elite": risk-seeking, only a level's recent top ``elite_share``
    #: is rewarded, by its margin over that quantile)
    reward_normalization: Literal["level", "rank", "elite", "none"] = "level"
    #: with reward_normalization "elite": the share of a level's recent scores that earns a reward
    elite_share: float = Field(0.2, gt=0, le=1)
    #: self-imitation (Oh et al. 2018): every PPO update also learns from each level's ``replay_elites``
    #: best-scored episodes so far (re-rewarded against the level's current scores; PPO's clipped ratio to
    #: the policy that sampled them bounds the pull), so the policy does not drift away from the best
    #: candidates it has found. 0: off (the method)
    replay_elites: int = Field(0, ge=0)
    lagrange_init: float = Field(1.0, gt=0)
    #: Adam's learning rate of the dual ascent on the multipliers; 0: a fixed penalty lagrange_init
    #: (the ablation without dual ascent)
    lagrange_lr: float = Field(1.0, ge=0)
    #: let crl's batches overlap like the other agents' (with ``search.pipeline``): the next rollout is
    #: drawn while the last batch is scored, so each PPO update learns from a rollout of the policy one
    #: update behind (PPO's clipped ratio covers that), and the evaluators do not wait for the update
    pipeline: bool = False

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        return _refuse_moved(data, "search.crl")


class EvolutionConfig(_Section):
    """``--agent evolution``: a population of keep-ratio vectors (MetaPruning/EagleEye style).

    Each step makes ``search.batch_size`` children: two parents drawn by tournament from the level's
    ``population`` best, uniform crossover with probability ``crossover``, Gaussian mutation
    (``mutation_sd``) of each gene with probability ``mutation_prob``; every child is projected onto
    the level's budget boundary, as random search's candidates are. Until the population is full,
    children are random candidates."""

    population: int = Field(32, gt=1)
    tournament: int = Field(3, gt=0)
    crossover: float = Field(0.5, ge=0.0, le=1.0)
    mutation_prob: float = Field(0.3, gt=0.0, le=1.0)
    mutation_sd: float = Field(0.1, gt=0.0)


class TPEConfig(_Section):
    """``--agent tpe``: Optuna's TPE sampler through its ask/tell API, one study per level; each
    sampled direction is projected onto the budget boundary like random search's."""

    #: random trials before TPE starts modelling (Optuna's n_startup_trials)
    startup: int = Field(32, gt=0)
    multivariate: bool = True


class AdaptiveBNConfig(_Section):
    """The ``adaptive_bn`` score: BatchNorm statistics re-estimated on ``batches x batch_size`` training
    samples (no gradient step), then accuracy on ``search.eval_samples`` validation samples."""

    batches: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=1)


class RerankConfig(_Section):
    """Two-stage scoring: the ``top_k`` distinct candidates per budget level (by the cheap score) are
    re-ranked after a short fine-tune (``search.finetune``) on the whole validation split."""

    top_k: int = Field(8, gt=0)
    #: at a level whose search score is weak (docs/search.md, "A weak search score"), this many of its best
    #: re-ranked candidates get the final fine-tune and the level takes the best by validation accuracy
    #: (1: only the re-rank's winner, as at every other level). 4: +3.4 test points over the re-rank's
    #: winner alone at the weak level of BENCHMARKS.md "Is the search blind?" (3 seeds; never below it)
    weak_finals: int = Field(4, gt=0)
    #: at a weak level, the level's uniform candidate (one keep ratio for every group) is re-ranked and gets a
    #: final fine-tune too, competing by validation accuracy with the weak_finals: +0.60 test points on a converged
    #: CNN's weak level (5 seeds; it won one), no change on ResNet-20's two (6 runs) (BENCHMARKS.md "The uniform
    #: candidate at a weak level"); only with score two_stage (it needs the re-rank)
    weak_uniform: bool = True
    #: at a weak level, the level's global pruning candidate (the network's least important channels dropped
    #: wherever they are, as few as fit: the ``global`` agent's candidate) is re-ranked and finalised too, like
    #: weak_uniform: +0.31 test points over 11 runs on two converged models' weak levels (+0.56 CNN, +0.10
    #: ResNet-20; unresolved) (BENCHMARKS.md "Global pruning"); only with score two_stage
    weak_global: bool = True


class EvaluationConfig(_Section):
    """The evaluator pool: Ray actors that build and score candidates (every agent uses it)."""

    evaluators: int = Field(2, gt=0)
    #: CPUs each evaluator reserves. None (the default): 1, or less where the connected cluster has fewer CPUs
    #: than one trial's evaluators (and the trial's own share) would need at 1 each, e.g. 2 evaluators and a
    #: sweep trial on a 2-core laptop (:meth:`fitted`); a number is reserved as given
    cpus: Optional[float] = Field(None, gt=0)
    gpus: float = Field(0.0, ge=0)
    max_restarts: int = Field(3, ge=-1)
    max_task_retries: int = Field(3, ge=-1)
    #: seconds one candidate's score may take (a chunk of n gets n times this) before its evaluator
    #: is restarted and the candidates become `error` rows; None: no limit
    timeout_s: Optional[float] = Field(None, gt=0)
    #: the same for one final fine-tune (re-rank fine-tunes are scores and use `timeout_s`)
    final_timeout_s: Optional[float] = Field(None, gt=0)
    #: hold a candidate in torch.channels_last for its forward passes (BatchNorm re-estimation and
    #: accuracy; fine-tunes keep the usual layout): 1.2-1.4x faster adaptive-BN scores on CPU for the
    #: small CNN, VGG11 and a depthwise-separable CNN, 1.3x slower for ResNet-20 (BENCHMARKS.md
    #: "Memory format"), so off unless a config asks
    channels_last: bool = False

    @property
    def cpus_each(self) -> float:
        """The CPUs each evaluator reserves: ``cpus``, or 1 where it was left unset and not :meth:`fitted`."""
        return float(self.cpus) if self.cpus is not None else 1.0

    def bundle(self, cpus: float) -> dict[str, float]:
        """One evaluator's resources at ``cpus`` CPUs (and ``gpus``, when set)."""
        return {"CPU": float(cpus), **({"GPU": float(self.gpus)} if self.gpus else {})}

    def fitted(self, nodes: Sequence[Node], reserved: float = 0.0) -> tuple["EvaluationConfig", Optional[str]]:
        """This section with ``cpus`` set for a cluster whose nodes hold ``nodes`` (CPUs each, or each node's
        ``{"CPU": .., "GPU": ..}``), where a bundle of ``reserved`` CPUs (a sweep trial's own; 0: none) is placed
        too, and a line saying so where the unset default had to shrink (else None): the largest share (1 at
        most, in steps of 0.05) whose bundles can all be placed, each on one node (:func:`packs`; an evaluator
        with a GPU share only on a node with that much GPU). A ``cpus`` the user set is kept (one that cannot be
        placed is refused later with the numbers); so is 1 where nothing smaller can be placed either.

        >>> EvaluationConfig().fitted([2.0], reserved=0.25)[0].cpus            # 2 evaluators + a trial on 2 cores
        0.85
        >>> EvaluationConfig().fitted([1.0, 1.0], reserved=0.25)[0].cpus       # two 1-CPU nodes: 0.25 + 0.75 | 0.75
        0.75
        >>> EvaluationConfig().fitted([16.0], reserved=0.25)[0].cpus, EvaluationConfig(cpus=1.5).fitted([2.0])[0].cpus
        (1.0, 1.5)
        >>> gpu_node, cpu_head = {"CPU": 2.0, "GPU": 1.0}, {"CPU": 8.0}      # the evaluators need the GPU node's CPUs
        >>> EvaluationConfig(gpus=0.5).fitted([cpu_head, gpu_node], reserved=0.25)[0].cpus
        1.0
        >>> EvaluationConfig(evaluators=4, gpus=0.25).fitted([cpu_head, gpu_node], reserved=0.25)[0].cpus
        0.5
        """
        if self.cpus is not None:
            return self, None
        trial = [{"CPU": reserved}] if reserved > 0 else []
        for step in range(20, 0, -1):  # 1.00, 0.95, ..., 0.05
            share = step / 20
            if packs(trial + [self.bundle(share)] * self.evaluators, nodes):
                break
        else:  # not even 0.05 each: the refusal names the numbers
            return self.model_copy(update={"cpus": 1.0}), None
        if share >= 1.0:
            return self.model_copy(update={"cpus": 1.0}), None
        return self.model_copy(update={"cpus": share}), (
            f"evaluation.cpus is not set: each of the {self.evaluators} evaluators reserves {share:g} CPU"
            + (f" (and the trial {reserved:g})" if reserved else "")
            + f" so that they fit this cluster ({describe_nodes(nodes)}); set evaluation.cpus to choose.")


#: the fine-tunes' lengths where a config gives none (a section with only its optimizer or lr keeps them)
DEFAULT_ITERATIONS = {"finetune": 50, "final_finetune": 600}


class SearchConfig(_Section):
    """How candidates are searched and scored (every agent the same way), re-ranked and fine-tuned."""

    #: random search by default: on the search benchmark (BENCHMARKS.md "Search", session 17: all four models
    #: with today's code in the product's batch order, every agent side by side on seeds 2-6) it has the lowest
    #: rank sum of mean final test over the levels (random 8, evolution 10, crl 11, TPE 11); the agents end
    #: within half a point of each other almost everywhere and the ranks move with the seeds, so the simplest
    #: search with no model of its own is the default; crl (PPO-Lagrangian) was the default in session 16
    agent: Literal["uniform", "global", "random", "sequential_random", "evolution", "tpe", "crl", "neon"] = "random"
    #: candidates each search scores, whatever the agent (shared by a sweep's levels)
    evaluations: int = Field(512, gt=0)
    #: candidates proposed and scored together per step (crl: episodes per PPO iteration)
    batch_size: int = Field(32, gt=0)
    #: overlap batches: the next batch is proposed and scoring before the last is written and told, so the
    #: evaluators do not wait on the driver (agents whose proposals need no outcome of the batch before: all but
    #: crl, which always runs in step); false runs every batch to its end before the next is proposed
    pipeline: bool = True
    #: two_stage: search on adaptive_bn, re-rank the top_k per level with `finetune`, fine-tune the winner;
    #: adaptive_bn / finetune: search on that score and fine-tune its best candidate (no re-rank)
    score: Literal["two_stage", "adaptive_bn", "finetune"] = "two_stage"
    adaptive_bn: AdaptiveBNConfig = Field(default_factory=AdaptiveBNConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    #: short fine-tune: the `finetune` score, and the re-rank of two_stage
    finetune: TrainConfig = Field(default_factory=lambda: TrainConfig(iterations=DEFAULT_ITERATIONS["finetune"]))
    #: long fine-tune of the chosen candidate before export
    final_finetune: TrainConfig = Field(
        default_factory=lambda: TrainConfig(iterations=DEFAULT_ITERATIONS["final_finetune"]))
    #: validation samples used for search-time scores (None: all); re-rank and final use all
    eval_samples: Optional[int] = Field(1000, gt=0)
    crl: CRLConfig = Field(default_factory=CRLConfig)
    evolution: EvolutionConfig = Field(default_factory=EvolutionConfig)
    tpe: TPEConfig = Field(default_factory=TPEConfig)
    #: "package.module:function" with f(model, split, context) -> float, higher is better, used in place of
    #: the task's default (top-1 accuracy; minus MSE for regression) everywhere a candidate is scored
    metric: Optional[str] = None
    #: ``max``: higher is better; ``min``: ``search.metric`` is minimised (an error, a loss), so rayprune maximises,
    #: records and shows minus it (named ``module:-function``); the default metrics are higher-is-better
    metric_mode: Literal["max", "min"] = "max"

    @field_validator("finetune", "final_finetune", mode="before")
    @classmethod
    def _default_length(cls, v: Any, info: Any) -> Any:
        """A section given without ``iterations`` or ``epochs`` (only its optimizer or lr) keeps the default length
        (it was refused: the default lived in the section's factory, which a given section replaces)."""
        if isinstance(v, Mapping) and v.get("iterations") is None and v.get("epochs") is None:
            return {**v, "iterations": DEFAULT_ITERATIONS[info.field_name]}
        return v

    @field_validator("metric", mode="before")
    @classmethod
    def _named_metric(cls, v: Any) -> Any:
        from . import refuse_function_object  # the package imports this module first

        refuse_function_object(v, "search.metric")
        return v

    @field_validator("metric")
    @classmethod
    def _dotted_metric(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (v.count(":") != 1 or not all(v.split(":"))):
            raise ValueError("must be written 'package.module:function'")
        return v

    @model_validator(mode="after")
    def _mode_needs_a_metric(self) -> "SearchConfig":
        if self.metric_mode == "min" and self.metric is None:
            raise ValueError("search.metric_mode 'min' needs search.metric (a metric of yours to minimise): the "
                             "default metrics, accuracy and minus the MSE, are higher-is-better")
        return self


class SweepConfig(_Section):
    """``rayprune sweep``: agents x seeds as Ray Tune trials, each searching every budget level with its
    own evaluators; one candidate store for the whole sweep."""

    #: searches run side by side, one Tune trial per agent x seed (empty: search.agent); not ``neon``, which prunes by
    #: tolerance, not to budget levels
    agents: list[Literal["uniform", "global", "random", "sequential_random", "evolution", "tpe", "crl"]] = Field(
        default_factory=list)
    @field_validator("agents", mode="before")
    @classmethod
    def _no_neon(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and "neon" in value:
            raise ValueError("'neon' prunes by tolerance, not to budget levels, and cannot be swept; use `rayprune "
                             "prune --agent neon` for it and budgeted agents here")
        if isinstance(value, (list, tuple)):
            twice = sorted({a for a in value if isinstance(a, str) and value.count(a) > 1})
            if twice:  # the same agent and seed twice: the same search, scored twice, under one trial name
                raise ValueError(f"lists {', '.join(repr(a) for a in twice)} more than once; each agent runs once per "
                                 f"seed: sweep.seeds (--seeds) gives an agent more runs")
        return value

    #: seconds between a trial's checkpoints (rows written after the last one are redone on restart)
    checkpoint_seconds: float = Field(30.0, ge=0.0)

    #: levels per constraint, e.g. {params: [0.5, 0.25, 0.1]}; several constraints: their product.
    #: Empty: the single level given by ``budgets``. Relative/absolute as in ``budgets``.
    budgets: dict[str, list[float]] = Field(default_factory=dict)
    #: per cost, whether its levels are fractions of the base model (true) or in the cost's unit (false); set by a
    #: rel:/%/abs: mark on the levels (or --budgets); a cost not named here reads as budgets.<cost> does
    relative: dict[str, bool] = Field(default_factory=dict)
    seeds: int = Field(1, gt=0)
    #: the first trial seed: an agent's trials search with seeds first_seed .. first_seed + seeds - 1 (e.g. 3 with
    #: seeds 2 runs seeds 3 and 4 beside an earlier sweep's 0-2); the top-level ``seed`` is another thing: it splits
    #: the data and seeds base training and fine-tunes
    first_seed: int = Field(0, ge=0)
    #: trials running at once (None: as many as the cluster's resources allow)
    max_concurrent_trials: Optional[int] = Field(None, gt=0)
    #: CPU share of the trial's own bundle (the RL driver: policy updates are tiny)
    trial_cpus: float = Field(0.25, gt=0)
    #: times a failed trial is restarted from its last checkpoint
    max_failures: int = Field(1, ge=-1)
    #: start even if no trial fits on the cluster right now (an autoscaler will add nodes)
    wait_for_resources: bool = False
