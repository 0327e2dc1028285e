"""PPO-Lagrangian on RLlib's new API stack (RLModule + Learner + connectors).

The method of Malik et al. 2022 (METHODS.md §1), for any gymnasium env that reports per-step
costs in ``info`` (see :mod:`rayprune.agents.cost_gae`). One iteration, in the order it runs:

1. sample episodes with the current policy (env runners);
2. dual ascent: each multiplier ``ν_i`` takes one Adam step on the mean episode cost of the
   episodes that finished in this rollout vs its budget ``b_i`` — *before* the policy update, as
   in OmniSafe — and the new ``ν`` go to the learners and to envs that have ``set_multipliers``;
3. the Learner pipeline computes reward GAE (λ, γ) and, per constraint, cost GAE (λ_c, γ_c) with
   a separate cost critic; both advantages are standardised;
4. PPO epochs on the penalised, renormalised surrogate::

       L_π = [ -min(ρ·A_R, clip(ρ, 1±ε)·A_R) + Σ_i ν_i·ρ·A_Ci ] / (1 + Σ_i ν_i)
       L   = E[ L_π + c_vf·(V_R - target_R)² + c_cvf·mean_i (V_Ci - target_Ci)² - c_H·H(π) ]

   (squared errors clamped at ``vf_clip_param`` as in RLlib's PPO; plus RLlib's KL term if
   ``use_kl_loss``, off by default here).

Example (``MyEnv`` reports ``info["costs"] = {"params": ...}`` at its last step)::

    config = (
        PPOLagrangianConfig()
        .environment(MyEnv)                       # a gym.Env class, or a registered name
        .env_runners(num_env_runners=0)
        .training(cost_keys=["params"], cost_budgets=[0.3])
    )
    algo = config.build_algo()
    result = algo.train()
    result["lagrange/params"], result["cost/params"], result["cost_violation_rate/params"]

Vector envs (K lockstep episodes per env runner), as RLlib 2.60 wants them::

    def make_env(config: dict) -> gymnasium.vector.VectorEnv:
        # config is a *plain dict*: env_config plus "num_envs" (= num_envs_per_env_runner);
        # EnvContext attributes such as worker_index do not survive. Distinct runners are told
        # apart by the seed of the first reset(seed=config.seed + worker_index).
        return MyVectorEnv(num_envs=config["num_envs"])  # metadata["autoreset_mode"] must be
                                                         # AutoresetMode.NEXT_STEP
    register_env("my-vector-env", make_env)   # a bare function is not a valid `env`
    config.environment("my-vector-env").env_runners(
        num_envs_per_env_runner=K, gym_env_vectorize_mode=gymnasium.VectorizeMode.VECTOR_ENTRY_POINT
    )

The vector env returns gymnasium's dict-of-arrays infos (e.g. built with ``self._add_info``);
RLlib splits them per sub-env (``DictInfoToList``), so each episode sees its own costs. If the
vector env (or, for RLlib's own sync vectorisation, each sub-env) has ``set_multipliers``, it is
called with ``{cost_key: ν}`` at setup and after every dual update.

The package follows RLlib's own split: ``loss`` (the maths and metric names), ``config``
(``PPOLagrangianConfig``), ``learner`` (the loss on the batch), ``algorithm`` (rollout, dual ascent,
update).
"""

from __future__ import annotations

from rayprune.agents.ppo_lagrangian.algorithm import PPOLagrangian
from rayprune.agents.ppo_lagrangian.config import PPOLagrangianConfig
from rayprune.agents.ppo_lagrangian.learner import PPOLagrangianTorchLearner
from rayprune.agents.ppo_lagrangian.loss import (
    COST_SURROGATE_KEY,
    COST_VF_EXPLAINED_VAR_KEY,
    COST_VF_LOSS_KEY,
    EPISODE_COST_METRIC,
    LAGRANGE_METRIC,
    LAGRANGE_STATE_KEY,
    REWARD_SURROGATE_KEY,
    SET_MULTIPLIERS_METHOD,
    VIOLATION_RATE_METRIC,
    clipped_surrogate,
    lagrangian_policy_loss,
    metric_name,
)

__all__ = [
    "COST_SURROGATE_KEY",
    "COST_VF_EXPLAINED_VAR_KEY",
    "COST_VF_LOSS_KEY",
    "EPISODE_COST_METRIC",
    "REWARD_SURROGATE_KEY",
    "LAGRANGE_METRIC",
    "LAGRANGE_STATE_KEY",
    "SET_MULTIPLIERS_METHOD",
    "VIOLATION_RATE_METRIC",
    "PPOLagrangian",
    "PPOLagrangianConfig",
    "PPOLagrangianTorchLearner",
    "clipped_surrogate",
    "lagrangian_policy_loss",
    "metric_name",
]
