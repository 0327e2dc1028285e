"""``--agent crl``: the constrained-RL pruning agent (PPO-Lagrangian on RLlib) with an evaluator pool.

Per iteration (``algo.train()``): the env runners step K lockstep pruning episodes per env, send
the K terminal candidates to the :class:`~rayprune.evaluation.pool.EvaluatorPool` together, the
multipliers take a dual-ascent step on the episodes' measured costs (normalised so every budget is
1), and PPO updates the policy on the Lagrangian surrogate. Every evaluated candidate is written
as a Parquet row by the env that asked for it; the driver reads them back for progress.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import gymnasium as gym
import pandas as pd
import torch

from ..evaluation.pool import EvaluatorPool
from ..problem import PruningProblem
from ..results import CandidateWriter, read_candidates
from .env import PruningEnvSpec, LockstepPruningEnv

__all__ = ["ENV_NAME", "EnvContext", "make_env", "build_algorithm", "search_crl", "ensure_ray"]

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
            writer.add({**row, "iteration": env.batches_done})
        writer.flush()

    env = LockstepPruningEnv(ctx.spec, ctx.pool.evaluate_many, num_envs=int(env_config.get("num_envs", 1)),
                             on_rows=on_rows, seed=ctx.seed)  # RLlib reseeds with seed + worker index
    env_ref["env"] = env
    return env


def ensure_ray(address: Optional[str] = None, *, log: Callable[[str], None] = print) -> None:
    """Connect to ``address`` (``auto``, ``HOST:PORT``, ``ray://...``) or start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
        log(f"Connected to Ray at {address}: {ray.cluster_resources()}")
    else:
        ray.init(log_to_driver=False)
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
        return {"evaluations": 0, "best_accuracy": None}
    ok = frame[(frame["status"] == "ok") & frame["feasible"].astype(bool)]
    best = ok.sort_values("accuracy", ascending=False).iloc[0] if not ok.empty else None
    out = {
        "evaluations": int(len(frame)),
        "errors": int((frame["status"] != "ok").sum()),
        "best_accuracy": None if best is None else float(best["accuracy"]),
    }
    if best is not None:
        out.update({f"best_{c}": float(best[c]) for c in problem.limits})
    return out


def search_crl(problem: PruningProblem, evaluator, writer: CandidateWriter, seed: int,
               log: Callable[[str], None], *, address: Optional[str] = None) -> dict[str, Any]:
    """Run the constrained-RL search; candidate rows land under ``writer``'s directory."""
    import ray

    from .ppo_lagrangian import LAGRANGE_METRIC, VIOLATION_RATE_METRIC, metric_name

    crl = problem.config.search.crl
    ensure_ray(address, log=log)
    pool = EvaluatorPool(
        problem, size=crl.evaluators, num_cpus=crl.evaluator_cpus, num_gpus=crl.evaluator_gpus,
        max_restarts=crl.evaluator_max_restarts, max_task_retries=crl.evaluator_max_task_retries,
        name=f"Evaluator[trial={writer.constants.get('trial_id', 'prune')}]",
    )
    pool.wait_ready()
    spec = PruningEnvSpec.from_problem(problem, action_wall=crl.action_wall, finetune_schedule=crl.finetune_schedule)
    out_dir = str(Path(writer.directory).parent)
    context_ref = ray.put(EnvContext(spec=spec, pool=pool, out_dir=out_dir, constants=dict(writer.constants), seed=seed))
    algo = build_algorithm(problem, context_ref, seed=seed)
    started = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the policy is tiny; evaluators get the cores
    last: dict[str, Any] = {}
    try:
        for it in range(1, crl.iterations + 1):
            t0 = time.time()
            result = algo.train()
            frame = read_candidates(out_dir)
            prog = _progress(frame, problem)
            evals_per_s = (prog["evaluations"] - last.get("evaluations", 0)) / max(time.time() - t0, 1e-9)
            lambdas = {c: result.get(metric_name(LAGRANGE_METRIC, c)) for c in problem.limits}
            viol = {c: result.get(metric_name(VIOLATION_RATE_METRIC, c)) for c in problem.limits}
            best = prog["best_accuracy"]
            costs = ", ".join(f"{c}={prog.get(f'best_{c}', float('nan')):.4g}" for c in problem.limits) if best is not None else "-"
            log(f"crl iter {it}/{crl.iterations}: evaluations {prog['evaluations']}, best feasible accuracy "
                f"{'-' if best is None else f'{best:.4f}'} ({costs}), "
                + ", ".join(f"λ[{c}]={v:.3f}" for c, v in lambdas.items() if v is not None)
                + ", " + ", ".join(f"violations[{c}]={v:.2f}" for c, v in viol.items() if v is not None)
                + f", {evals_per_s:.2f} evals/s")
            last = {**prog, "lambdas": lambdas, "iteration": it}
    finally:
        torch.set_num_threads(threads)
        algo.stop()
        pool.shutdown()
    last["seconds"] = time.time() - started
    return last
