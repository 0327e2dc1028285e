"""The YAML configuration, validated by pydantic before anything heavy starts.

Every section forbids unknown keys, so a misspelt key is an error that names its path
(``search.finetune.iteratons``). Numbers written as strings (YAML reads ``1e-3`` as one) are
converted and checked; duplicate keys in a YAML mapping are an error instead of silently keeping
the last one.

Example::

    cfg = load_config("configs/quickstart.yaml", overrides={"search": {"agent": "random"}})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .costs.budget import BUILTIN_COST_NAMES, RELATIVE_BY_DEFAULT, Budget
from .errors import UserError

__all__ = [
    "ConfigError",
    "Config",
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "BaseTrainingConfig",
    "PruningConfig",
    "CostsConfig",
    "LatencyConfig",
    "BudgetConfig",
    "SearchConfig",
    "SweepConfig",
    "CRLConfig",
    "EvolutionConfig",
    "TPEConfig",
    "AdaptiveBNConfig",
    "RerankConfig",
    "EvaluationConfig",
    "NeonConfig",
    "NeonNetworksConfig",
    "NeonPretrainConfig",
    "NeonRetrainConfig",
    "NeonSuiteConfig",
    "load_config",
    "parse_config",
    "resolve_paths",
    "default_cache_dir",
]


class ConfigError(UserError):
    """A configuration that does not validate; the message lists every problem with its key path."""


def default_cache_dir() -> Path:
    """``$RAYPRUNE_CACHE`` or ``~/.cache/rayprune``: where trained base models are cached."""
    return Path(os.environ.get("RAYPRUNE_CACHE", Path.home() / ".cache" / "rayprune"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelConfig(_Section):
    """The model to prune: a zoo name, ``package.module:factory`` or ``torchvision:<name>``."""

    name: str = "small_cnn"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: trained weights (a state_dict); if absent the base model is trained on first use and cached
    checkpoint: Optional[Path] = None


class DataConfig(_Section):
    """The dataset: ``mnist5k`` (embedded), ``digits``, ``cifar10``/``cifar100`` (``root``),
    ``tabular`` (``path`` + ``label``) or ``sklearn:<name>``."""

    name: str = "mnist5k"
    root: Optional[Path] = None
    path: Optional[Path] = None
    label: Optional[str] = None
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    max_samples: Optional[int] = Field(None, gt=0)
    #: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"

    @model_validator(mode="after")
    def _fractions(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1; got {self.val_fraction} + {self.test_fraction}."
            )
        return self


class TrainConfig(_Section):
    """An optimisation run (fine-tune): exactly one of ``iterations`` and ``epochs``."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    iterations: Optional[int] = Field(None, ge=0)
    epochs: Optional[float] = Field(None, ge=0.0)
    batch_size: int = Field(128, gt=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one_length(self) -> "TrainConfig":
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError(
                "exactly one of 'iterations' and 'epochs' must be set; "
                f"got iterations={self.iterations}, epochs={self.epochs}."
            )
        return self

    def engine_config(self):
        """The :class:`rayprune.engine.FineTuneConfig` for this section."""
        from .engine import FineTuneConfig

        return FineTuneConfig(**self.model_dump(include=set(TrainConfig.model_fields)))


class BaseTrainingConfig(TrainConfig):
    """How the base model is trained when no checkpoint is given (cached by content hash)."""

    epochs: Optional[float] = Field(8.0, ge=0.0)
    lr: float = Field(0.05, gt=0.0)
    cache_dir: Optional[Path] = None


class PruningConfig(_Section):
    """The pruning space: channel importance, rounding, lower bound of keep ratios."""

    importance: Literal["l1", "l2", "bn_scale", "random"] = "l2"
    round_to: int = Field(1, ge=1)
    min_keep: float = Field(0.1, gt=0.0, le=1.0)
    ignored_layers: list[str] = Field(default_factory=list)
    #: re-estimate BatchNorm statistics of every candidate before its search-time evaluation
    recalibrate_bn: bool = True


class LatencyConfig(_Section):
    device: str = "cpu"
    batch_size: int = Field(1, gt=0)
    threads: Optional[int] = Field(1, gt=0)
    warmup: int = Field(5, ge=0)
    repeats: int = Field(20, gt=0)


class CostsConfig(_Section):
    """Which costs every candidate records, and how latency/memory are measured."""

    measure: list[str] = Field(default_factory=lambda: ["params", "macs"])
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    memory_batch_size: int = Field(1, gt=0)
    #: user costs: name -> "package.module:function" with signature f(model, context) -> float
    custom: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class BudgetConfig(_Section):
    """``value`` is a fraction of the base model's cost if ``relative`` (default for params, MACs and
    peak memory), else an absolute value in the cost's unit."""

    value: float
    relative: Optional[bool] = None


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
    #: AMC-style cap on each action so analytic budgets stay reachable
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
    reward_normalization: Literal["level", "none"] = "level"
    lagrange_init: float = Field(1.0, gt=0)
    lagrange_lr: float = Field(1.0, gt=0)

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


class EvaluationConfig(_Section):
    """The evaluator pool: Ray actors that build and score candidates (every agent uses it)."""

    evaluators: int = Field(2, gt=0)
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)
    max_restarts: int = Field(3, ge=-1)
    max_task_retries: int = Field(3, ge=-1)


class SearchConfig(_Section):
    """How candidates are searched and scored (every agent the same way), re-ranked and fine-tuned."""

    agent: Literal["uniform", "random", "evolution", "tpe", "crl", "neon"] = "crl"
    #: candidates each search scores, whatever the agent (shared by a sweep's levels)
    evaluations: int = Field(512, gt=0)
    #: candidates proposed and scored together per step (crl: episodes per PPO iteration)
    batch_size: int = Field(32, gt=0)
    #: two_stage: search on adaptive_bn, re-rank the top_k per level with `finetune`, fine-tune the winner;
    #: adaptive_bn / finetune: search on that score and fine-tune its best candidate (no re-rank)
    score: Literal["two_stage", "adaptive_bn", "finetune"] = "two_stage"
    adaptive_bn: AdaptiveBNConfig = Field(default_factory=AdaptiveBNConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    #: short fine-tune: the `finetune` score, and the re-rank of two_stage
    finetune: TrainConfig = Field(default_factory=lambda: TrainConfig(iterations=50))
    #: long fine-tune of the chosen candidate before export
    final_finetune: TrainConfig = Field(default_factory=lambda: TrainConfig(iterations=600))
    #: validation samples used for search-time scores (None: all); re-rank and final use all
    eval_samples: Optional[int] = Field(1000, gt=0)
    crl: CRLConfig = Field(default_factory=CRLConfig)
    evolution: EvolutionConfig = Field(default_factory=EvolutionConfig)
    tpe: TPEConfig = Field(default_factory=TPEConfig)


class SweepConfig(_Section):
    """``rayprune sweep``: agents x seeds as Ray Tune trials, each searching every budget level with its
    own evaluators; one candidate store for the whole sweep."""

    #: searches run side by side, one Tune trial per agent x seed (empty: search.agent)
    agents: list[Literal["uniform", "random", "evolution", "tpe", "crl"]] = Field(default_factory=list)
    #: seconds between a trial's checkpoints (rows written after the last one are redone on restart)
    checkpoint_seconds: float = Field(30.0, ge=0.0)

    #: levels per constraint, e.g. {params: [0.5, 0.25, 0.1]}; several constraints: their product.
    #: Empty: the single level given by ``budgets``. Relative/absolute as in ``budgets``.
    budgets: dict[str, list[float]] = Field(default_factory=dict)
    seeds: int = Field(1, gt=0)
    #: trials running at once (None: as many as the cluster's resources allow)
    max_concurrent_trials: Optional[int] = Field(None, gt=0)
    #: CPU share of the trial's own bundle (the RL driver: policy updates are tiny)
    trial_cpus: float = Field(0.25, gt=0)
    #: times a failed trial is restarted from its last checkpoint
    max_failures: int = Field(1, ge=-1)
    #: start even if no trial fits on the cluster right now (an autoscaler will add nodes)
    wait_for_resources: bool = False


class NeonRetrainConfig(_Section):
    """NEON's retraining: Adam on mini-batches with early stopping on the validation loss.

    Used for the layers a pruning step touched (``neon.retrain``) and, with longer defaults, for
    the random base networks of pretraining (``neon.pretrain.networks.train``)."""

    max_epochs: int = Field(6, gt=0)
    #: epochs without a lower validation loss before stopping (the best weights are restored)
    patience: int = Field(2, ge=0)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, gt=0)
    #: train samples per epoch, a fixed stratified subset (None: all)
    max_samples: Optional[int] = Field(512, gt=1)


class NeonSuiteConfig(_Section):
    """Which datasets of NEON's offline suite to pretrain on (``rayprune.neon.suite``)."""

    #: dataset names and/or group names (A-D); both empty: the whole suite
    datasets: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    #: groups left out (held out for evaluation)
    exclude_groups: list[str] = Field(default_factory=list)
    max_samples: Optional[int] = Field(2000, gt=1)
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)


class NeonNetworksConfig(_Section):
    """NEON's random base networks (METHODS.md section 2); the paper's widths are 100, 200, ..., 1000."""

    per_dataset: int = Field(3, gt=0)
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64, 128])
    min_layers: int = Field(1, ge=1)
    max_layers: int = Field(6, ge=1)
    #: what comes before each Linear, with its probability
    pre_layer_probs: dict[Literal["dropout", "batchnorm", "none"], float] = Field(
        default_factory=lambda: {"dropout": 1 / 3, "batchnorm": 1 / 3, "none": 1 / 3})
    activation_probs: dict[Literal["relu", "tanh", "sigmoid"], float] = Field(
        default_factory=lambda: {"relu": 0.9, "tanh": 0.05, "sigmoid": 0.05})
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    train: NeonRetrainConfig = Field(default_factory=lambda: NeonRetrainConfig(max_epochs=60, patience=8, max_samples=None))
    #: trained networks are cached here by content hash (default: <cache>/neon-networks)
    cache_dir: Optional[Path] = None

    @model_validator(mode="after")
    def _check(self) -> "NeonNetworksConfig":
        if self.min_layers > self.max_layers:
            raise ValueError(f"min_layers must be <= max_layers; got {self.min_layers} > {self.max_layers}.")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive integers; got {self.widths}.")
        for name in ("pre_layer_probs", "activation_probs"):
            probs = getattr(self, name)
            if any(v < 0 for v in probs.values()) or sum(probs.values()) <= 0:
                raise ValueError(f"{name} must be >= 0 with a positive sum; got {probs}.")
        return self


class NeonPretrainConfig(_Section):
    """``rayprune pretrain``: PPO (RLlib new API stack) across the suite's random networks."""

    iterations: int = Field(20, gt=0)
    #: passes over the hidden layers per training episode at most (the method: one, or up to four;
    #: with neon.rollback an episode makes more to compound cuts, and stops after a pass that changed nothing)
    passes: int = Field(4, ge=1, le=20)
    #: env steps (= pruned layers) per PPO iteration
    steps_per_iteration: int = Field(128, gt=0)
    #: episodes stepped in lockstep per env runner; their prune+retrain steps run as parallel Ray tasks
    num_envs: int = Field(4, gt=0)
    env_runners: int = Field(0, ge=0)
    #: run each lockstep step's candidates as Ray tasks (False: one after the other in the env)
    parallel_steps: bool = True
    #: tolerances sampled per episode (the policy sees tau, so one agent serves them all)
    tolerances: list[float] = Field(default_factory=lambda: [1.0, 5.0])
    #: seeds PPO and the draws of networks/tolerances per episode (None: the config's seed, which
    #: also seeds the random networks and the data splits)
    seed: Optional[int] = None
    #: s in NEON's reward: percent of the layer removed (the method, METHODS.md) or its fraction (an ablation:
    #: a cut beyond tolerance then costs less than one within it; docs/neon.md "Reward units")
    reward_units: Literal["percent", "fraction"] = "percent"
    lr: float = Field(1e-3, gt=0)
    gamma: float = Field(0.99, ge=0, le=1)
    #: 1.0: Monte-Carlo returns, as the method's A2C
    gae_lambda: float = Field(1.0, ge=0, le=1)
    clip_param: float = Field(0.2, gt=0)
    num_epochs: int = Field(6, gt=0)
    minibatch_size: int = Field(64, gt=0)
    entropy_coeff: float = Field(0.01, ge=0)
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    #: width of each feature map's own encoder
    segment_hidden: int = Field(16, gt=0)
    suite: NeonSuiteConfig = Field(default_factory=NeonSuiteConfig)
    networks: NeonNetworksConfig = Field(default_factory=NeonNetworksConfig)

    @field_validator("tolerances")
    @classmethod
    def _tolerances(cls, v: list[float]) -> list[float]:
        if not v or any(t < 0 for t in v):
            raise ValueError(f"tolerances must be a non-empty list of numbers >= 0; got {v}.")
        return v


class NeonConfig(_Section):
    """The NEON-style agent (METHODS.md section 2): pretrained offline, applied with inference only."""

    #: a ``rayprune pretrain`` output directory or a policy directory; None: the agent shipped in the package
    checkpoint: Optional[Path] = None
    #: tau: accuracy loss (points, validation split) the user accepts
    tolerance: float = Field(1.0, ge=0.0)
    #: passes over the hidden layers per episode at prune time (None: as many as the agent was trained with)
    passes: Optional[int] = Field(None, ge=1, le=20)
    #: undo a step that leaves the network more than tau below the unpruned one (after paying its reward),
    #: so every network of an episode is within tolerance on validation (False: the method as published).
    #: At prune time passes, rollback, stop_when_idle, activation_samples and retrain are the agent's own
    #: (what it was trained with) unless set here.
    rollback: bool = True
    #: end an episode after a pass over the layers that changed nothing
    stop_when_idle: bool = True
    #: keep fractions the agent chooses from (a pretrained policy brings its own)
    actions: list[float] = Field(default_factory=lambda: [1.0, 0.9, 0.8, 0.7, 0.6])
    #: training samples whose activations describe each neuron (the paper: up to 3,000)
    activation_samples: int = Field(512, gt=1)
    retrain: NeonRetrainConfig = Field(default_factory=NeonRetrainConfig)
    #: which network of the episode is the result: the last one within tolerance, or the final one
    select: Literal["within_tolerance", "final"] = "within_tolerance"
    #: episodes at prune time: the greedy one plus (rollouts - 1) sampled ones; the smallest within tolerance wins
    #: (1: the method as published; BENCHMARKS.md: 4 prunes more at tau = 1, within 1 point)
    rollouts: int = Field(4, ge=1)
    #: fine-tune the whole chosen network with search.final_finetune before export
    final_finetune: bool = False
    pretrain: NeonPretrainConfig = Field(default_factory=NeonPretrainConfig)

    @field_validator("actions")
    @classmethod
    def _actions(cls, v: list[float]) -> list[float]:
        if len(v) < 2 or len(set(v)) != len(v) or any(not 0.0 < a <= 1.0 for a in v):
            raise ValueError(f"actions must be at least two distinct keep fractions in (0, 1]; got {v}.")
        return v


class Config(_Section):
    """A whole rayprune run."""

    name: str = "rayprune"
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    base_training: BaseTrainingConfig = Field(default_factory=BaseTrainingConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    costs: CostsConfig = Field(default_factory=CostsConfig)
    budgets: dict[str, Union[float, BudgetConfig]] = Field(default_factory=dict)
    search: SearchConfig = Field(default_factory=SearchConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    neon: NeonConfig = Field(default_factory=NeonConfig)

    @field_validator("budgets", mode="after")
    @classmethod
    def _check_budgets(cls, budgets: dict) -> dict:
        for name, b in budgets.items():
            value, relative = (b.value, b.relative) if isinstance(b, BudgetConfig) else (b, None)
            Budget(name, float(value), name in RELATIVE_BY_DEFAULT if relative is None else relative)
        return budgets

    @model_validator(mode="after")
    def _known_costs(self) -> "Config":
        known = set(BUILTIN_COST_NAMES) | set(self.costs.custom)
        for where, names in (("budgets", list(self.budgets)), ("costs.measure", self.costs.measure),
                             ("sweep.budgets", list(self.sweep.budgets))):
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(
                    f"{where} names unknown costs {unknown}; built-in costs are {sorted(BUILTIN_COST_NAMES)}, "
                    "user costs must be defined under costs.custom as name: 'package.module:function'."
                )
        return self

    def budget_list(self) -> list[Budget]:
        """The budgets as :class:`~rayprune.costs.Budget` objects, relative/absolute resolved."""
        out = []
        for name, b in self.budgets.items():
            value, relative = (b.value, b.relative) if isinstance(b, BudgetConfig) else (b, None)
            out.append(Budget(name, float(value), name in RELATIVE_BY_DEFAULT if relative is None else relative))
        return out

    def cost_names(self) -> list[str]:
        """Every cost recorded per candidate: the measured ones, then any budgeted or swept ones."""
        return list(dict.fromkeys([*self.costs.measure, *self.budgets, *self.sweep.budgets]))

    def is_relative(self, name: str) -> bool:
        """Whether a budget on cost ``name`` is relative (the ``budgets`` entry decides, else the default)."""
        b = self.budgets.get(name)
        if isinstance(b, BudgetConfig) and b.relative is not None:
            return b.relative
        return name in RELATIVE_BY_DEFAULT


class _NoDuplicatesLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_NoDuplicatesLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the configuration:"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        received = err.get("input")
        detail = "" if err["type"] == "extra_forbidden" or isinstance(received, dict) else f"; got {received!r}"
        lines.append(f"  - {path}: {msg}{detail}")
    return "\n".join(lines)


def _deep_merge(base: dict, overrides: Mapping) -> dict:
    out = dict(base)
    for k, v in overrides.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def parse_config(data: Mapping[str, Any] | None, *, source: str = "<config>", overrides: Mapping | None = None) -> Config:
    """Validate a mapping (already parsed YAML) into a :class:`Config`."""
    data = _deep_merge(dict(data or {}), overrides or {})
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | os.PathLike, *, overrides: Mapping | None = None) -> Config:
    """Read and validate a YAML config file; relative paths inside it are taken from its folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} not found.")
    try:
        data = yaml.load(path.read_text(), Loader=_NoDuplicatesLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level; got {type(data).__name__}.")
    cfg = parse_config(data, source=str(path), overrides=overrides)
    return resolve_paths(cfg, path.parent)


def resolve_paths(cfg: Config, folder: str | os.PathLike) -> Config:
    """A copy of ``cfg`` whose relative paths (checkpoint, data, caches, NEON agent) are taken from
    ``folder`` (the config file's), absolute; ``cfg`` itself is left as it is."""
    folder = Path(folder)

    def fix(p: Optional[Path]) -> Optional[Path]:
        return p if p is None or p.is_absolute() else (folder / p).resolve()

    out = cfg.model_copy(deep=True)
    out.model.checkpoint = fix(out.model.checkpoint)
    out.data.root = fix(out.data.root)
    out.data.path = fix(out.data.path)
    out.base_training.cache_dir = fix(out.base_training.cache_dir)
    out.neon.checkpoint = fix(out.neon.checkpoint)
    out.neon.pretrain.networks.cache_dir = fix(out.neon.pretrain.networks.cache_dir)
    return out
