"""Lagrange multipliers for constrained RL, updated by dual ascent.

A multiplier knows nothing of the RL algorithm: it sees one number per update, the mean episode
cost of the latest rollout, and moves towards penalising the constraint harder when that cost is
over the budget and softer when it is under (Malik et al. 2022; OmniSafe ``common/lagrange.py``).

    ν = softplus(θ)                          # ν ≥ 0 by construction
    loss(θ) = -ν · (mean_cost - budget)      # minimised by Adam  ⇔  gradient ascent on ν
    ∂loss/∂θ = -(mean_cost - budget) · sigmoid(θ)
    θ ← max(θ, softplus⁻¹(max(min_value, 1e-8)))   # ν ≥ min_value, as the authors' clamp

This is the authors' ``DualVariable`` (loss on ν, Adam, θ clamped from below). Note its known
weakness: the ``sigmoid(θ)`` factor shrinks the gradient once ν is near 0, and Adam's second
moment still remembers the earlier, larger gradients, so after a long stretch under budget ν can
take many iterations to rise again. ``min_value > 0`` (their ``-pmv``) bounds that.

Example:
    >>> over = Lagrange(budget=0.3)           # ν starts at 1.0, Adam lr 1.0 (METHODS.md)
    >>> over.update(mean_cost=0.8) > 1.0      # over budget: ν rises
    True
    >>> under = Lagrange(budget=0.3)
    >>> under.update(mean_cost=0.1) < 1.0     # under budget: ν falls, but stays ≥ 0
    True
    >>> Lagrange(budget=0.3, init=2.0, lr=0.0).update(mean_cost=0.8)   # lr 0: a fixed penalty
    2.0

The optimiser is a scalar Adam written out here (identical to ``torch.optim.Adam`` with its
default betas/eps, see tests) so that the whole state is a handful of floats: it checkpoints with
pickle, JSON or msgpack alike and this module does not import torch or Ray.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Lagrange", "LagrangeSet", "softplus", "inverse_softplus"]


def softplus(theta: float) -> float:
    """``log(1 + exp(θ))``, computed without overflow for large ``|θ|``."""
    return max(theta, 0.0) + math.log1p(math.exp(-abs(theta)))


def inverse_softplus(nu: float) -> float:
    """θ such that ``softplus(θ) = ν`` for ``ν > 0``: ``θ = ν + log(1 - exp(-ν))``."""
    return nu + math.log(-math.expm1(-nu))


def _sigmoid(theta: float) -> float:
    if theta >= 0.0:
        return 1.0 / (1.0 + math.exp(-theta))
    z = math.exp(theta)
    return z / (1.0 + z)


@dataclass
class _ScalarAdam:
    """Adam (Kingma & Ba) for one scalar parameter, bias-corrected like ``torch.optim.Adam``."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    step: int = 0
    exp_avg: float = 0.0
    exp_avg_sq: float = 0.0

    def delta(self, grad: float) -> float:
        """Returns the change to add to the parameter for gradient ``grad``."""
        self.step += 1
        self.exp_avg = self.beta1 * self.exp_avg + (1.0 - self.beta1) * grad
        self.exp_avg_sq = self.beta2 * self.exp_avg_sq + (1.0 - self.beta2) * grad * grad
        m_hat = self.exp_avg / (1.0 - self.beta1**self.step)
        v_hat = self.exp_avg_sq / (1.0 - self.beta2**self.step)
        return -self.lr * m_hat / (math.sqrt(v_hat) + self.eps)


def _finite(name: str, value: Any, owner: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"The '{name}' of {owner} must be a real number; got {value!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"The '{name}' of {owner} must be finite; got {value}.")
    return value


class Lagrange:
    """One Lagrange multiplier ``ν = softplus(θ) ≥ 0`` for the constraint ``E[cost] ≤ b``.

    Args:
        budget: The constraint's limit ``b`` on the mean episode cost.
        init: The starting multiplier ``ν₀ > 0`` (METHODS.md: 1).
        lr: Adam's learning rate on θ (METHODS.md: 1). With Adam, each update moves θ by at most
            about ``lr``, whatever the size of the violation. 0: a fixed penalty ν = ``init`` (the
            ablation without dual ascent).
        min_value: The floor of ν (the authors' ``penalty_min_value``, 0 in METHODS.md); ν stays
            ≥ max(min_value, 1e-8) since softplus never reaches 0.
    """

    #: Lowest ν the softplus parameterisation is clamped to when ``min_value`` is 0.
    FLOOR = 1e-8

    def __init__(
        self, budget: float, *, init: float = 1.0, lr: float = 1.0, min_value: float = 0.0
    ) -> None:
        self.budget = _finite("budget", budget, "Lagrange")
        init = _finite("init", init, "Lagrange")
        if init <= 0.0:
            raise ValueError(
                f"The 'init' of Lagrange must be > 0 (ν = softplus(θ) is never 0); got {init}."
            )
        lr = _finite("lr", lr, "Lagrange")
        if lr < 0.0:
            raise ValueError(f"The 'lr' of Lagrange must be >= 0 (0: a fixed penalty); got {lr}.")
        min_value = _finite("min_value", min_value, "Lagrange")
        if not 0.0 <= min_value <= init:
            raise ValueError(
                f"The 'min_value' of Lagrange must be in [0, init={init}]; got {min_value}."
            )
        self.min_value = min_value
        self._theta_min = inverse_softplus(max(min_value, self.FLOOR))
        self.theta = inverse_softplus(init)
        self._adam = _ScalarAdam(lr=lr)

    @property
    def value(self) -> float:
        """The current multiplier ν."""
        return softplus(self.theta)

    def loss(self, mean_cost: float) -> float:
        """The dual loss ``-ν · (mean_cost - budget)`` that :meth:`update` minimises."""
        return -self.value * (mean_cost - self.budget)

    def update(self, mean_cost: float) -> float:
        """Takes one clamped Adam step on θ given the rollout's mean episode cost; returns ν."""
        mean_cost = _finite("mean_cost", mean_cost, "Lagrange.update")
        grad_theta = -(mean_cost - self.budget) * _sigmoid(self.theta)
        self.theta = max(self.theta + self._adam.delta(grad_theta), self._theta_min)
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """θ and the optimiser state, as plain Python numbers."""
        return {"budget": self.budget, "theta": self.theta, "adam": asdict(self._adam)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a :meth:`state_dict` exactly (budget and floor stay the constructor's)."""
        self.theta = float(state["theta"])
        self._adam = _ScalarAdam(**state["adam"])

    def __repr__(self) -> str:
        return f"Lagrange(budget={self.budget}, value={self.value:.6g})"


class LagrangeSet:
    """One :class:`Lagrange` per named constraint, updated together.

    Example:
        >>> lams = LagrangeSet({"params": 0.3, "latency": 0.05})
        >>> sorted(lams.update({"params": 0.5, "latency": 0.01}))
        ['latency', 'params']
    """

    def __init__(
        self,
        budgets: Mapping[str, float],
        *,
        init: float = 1.0,
        lr: float = 1.0,
        min_value: float = 0.0,
    ) -> None:
        if not budgets:
            raise ValueError(
                "The 'budgets' of LagrangeSet must name at least one constraint; got {}."
            )
        self._lagranges = {
            str(key): Lagrange(budget, init=init, lr=lr, min_value=min_value)
            for key, budget in budgets.items()
        }

    def keys(self) -> list[str]:
        """The constraint names, in construction order."""
        return list(self._lagranges)

    def __getitem__(self, key: str) -> Lagrange:
        return self._lagranges[key]

    def __len__(self) -> int:
        return len(self._lagranges)

    def values(self) -> dict[str, float]:
        """The current multiplier of every constraint, in construction order."""
        return {key: lam.value for key, lam in self._lagranges.items()}

    def as_list(self) -> list[float]:
        return [lam.value for lam in self._lagranges.values()]

    def update(self, mean_costs: Mapping[str, float] | Sequence[float]) -> dict[str, float]:
        """Updates every multiplier from its mean cost (a mapping, or a sequence in key order)."""
        if not isinstance(mean_costs, Mapping):
            if len(mean_costs) != len(self._lagranges):
                raise ValueError(
                    f"The 'mean_costs' of LagrangeSet.update must have one value per constraint "
                    f"({len(self._lagranges)}); got {len(mean_costs)}."
                )
            mean_costs = dict(zip(self._lagranges, mean_costs))
        missing = [key for key in self._lagranges if key not in mean_costs]
        if missing:
            raise ValueError(
                f"The 'mean_costs' of LagrangeSet.update lacks constraint(s) {missing}; "
                f"got keys {sorted(mean_costs)}."
            )
        return {key: lam.update(mean_costs[key]) for key, lam in self._lagranges.items()}

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {key: lam.state_dict() for key, lam in self._lagranges.items()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        if set(state) != set(self._lagranges):
            raise ValueError(
                f"The 'state' of LagrangeSet.load_state_dict must hold constraints "
                f"{self.keys()}; got {sorted(state)}."
            )
        for key, lam in self._lagranges.items():
            lam.load_state_dict(state[key])

    def __repr__(self) -> str:
        return f"LagrangeSet({self.values()})"
