"""One NEON episode on one dense network: observe a layer, keep a fraction of it, retrain, repeat.

An episode makes ``passes`` passes over the hidden Linear layers, one step per layer. A step with
keep fraction ``k`` on a layer of current width ``w``

1. keeps ``max(1, round(k·w))`` neurons — the ones with the largest L2 group magnitude (incoming
   and outgoing weights and BatchNorm of the neuron), chosen by a :class:`~rayprune.pruning.PruningSpace`
   of the *current* network, which also removes the next layer's inputs and the BatchNorm entries;
2. retrains only the touched layers (this Linear, the BatchNorm between, the next Linear) with
   early stopping on the validation loss (:func:`~rayprune.neon.training.train_early_stopping`);
3. measures validation accuracy and pays NEON's reward (:func:`~rayprune.neon.reward.neon_reward`)
   with ``s`` the percentage of the layer this step tried to remove and ``Δ`` the accuracy change
   in points against the unpruned network;
4. with ``rollback`` (the default), a step whose network ends beyond the tolerance (``Δ < −τ``) is
   paid its reward (``−s³``) and then undone: the episode goes on from the network before it.

A fraction of 1.0 leaves the layer (and the network) untouched. With ``stop_when_idle`` (the
default) an episode also ends when a whole pass changed nothing (every step kept its layer or was
rolled back): further passes would see the same network.

Rollback is rayprune's addition to the method (docs/neon.md, "Dynamics"): as published, an
episode carries on from a network that broke the tolerance, so one bad cut spoils every later
one and the last network within τ is the result; with rollback every state of an episode is
within τ on validation and the agent may make several passes to compound cuts safely. Plain PyTorch on CPU, no Ray; the
dataset is detachable (:meth:`PruningEpisode.detach_data`) so an episode can travel to a Ray task
while the data travels by object reference.

Example:
    >>> import torch
    >>> from rayprune.models import build_model
    >>> from rayprune.neon.suite import load_suite_dataset
    >>> data = load_suite_dataset("moons", seed=0)
    >>> torch.manual_seed(0); net = build_model("mlp", num_classes=2, in_features=2, hidden_sizes=[16, 8])  # doctest: +ELLIPSIS
    <...>
    >>> ep = PruningEpisode(net, data, EpisodeSettings(retrain=RetrainSettings(max_epochs=1)), tolerance=5.0)
    >>> ep.observe().shape == (observation_size(),)
    True
    >>> record = ep.step(ep.actions.index(0.6))
    >>> record["width_before"], record["width_after"], record["removed_percent"]
    (16, 10, 37.5)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rayprune.data import Dataset, subsample_indices
from rayprune.engine import evaluate
from rayprune.neon.features import (
    LayerTopology,
    context_features,
    layer_topology_features,
    network_topology_features,
    neuron_statistics,
    observation,
    observation_size,
)
from rayprune.neon.reward import neon_reward, reward_regime
from rayprune.neon.settings import DEFAULT_ACTIONS, EpisodeSettings
from rayprune.neon.topology import DenseLayer, dense_layers, hidden_activations, require_dense
from rayprune.neon.training import RetrainSettings, train_early_stopping
from rayprune.pruning import PruningSpace, keep_channels

__all__ = ["DEFAULT_ACTIONS", "EpisodeSettings", "PruningEpisode", "RetrainSettings", "observation_size"]


def _params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


class PruningEpisode:
    """A NEON episode: the current network, which of its original neurons survive, and the dynamics.

    Args:
        model: the trained dense network (copied to CPU; the caller's stays as it is).
        data: its dataset (train split retrains, validation split scores; test is never used).
        settings: keep fractions, passes, retraining, activation sample, rollback, idle stop and
            reward units (:class:`~rayprune.neon.settings.EpisodeSettings`; its defaults: the method
            with rollback and idle stop).
        tolerance: τ in accuracy points.
        seed: seeds the activation sample and the retraining.
        base_accuracy: validation accuracy of ``model`` if already known (else measured).
        importance: the criterion that ranks neurons within a layer (as in ``PruningSpace``).
        ignored_layers: Linear layers whose neurons are never pruned (as in ``PruningSpace``).
    """

    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        settings: EpisodeSettings | None = None,
        *,
        tolerance: float = 1.0,
        seed: int = 0,
        base_accuracy: float | None = None,
        importance: str = "l2",
        ignored_layers: Sequence[str] = (),
        min_keep: float = 0.0,
    ) -> None:
        settings = EpisodeSettings() if settings is None else settings
        if not isinstance(settings, EpisodeSettings):
            raise TypeError(f"'settings' must be an EpisodeSettings; got {type(settings).__name__}.")
        if tolerance < 0:
            raise ValueError(f"'tolerance' must be >= 0 (accuracy points); got {tolerance!r}.")
        self.settings = settings
        self.data = data.to("cpu")
        self.model = copy.deepcopy(model).to("cpu").eval()
        self.tolerance = float(tolerance)
        self.importance = importance
        self.ignored_layers = tuple(ignored_layers)
        self.seed = int(seed)
        self._pass_changed = False
        self._idle_stop = False
        self.input_shape = tuple(self.data.input_shape)
        space = self._space()
        require_dense(space)
        self.layers: list[DenseLayer] = dense_layers(self.model, self._example(), space)
        self.original_widths = [g.channels for g in space.groups]
        if not 0.0 <= min_keep <= 1.0:
            raise ValueError(f"'min_keep' must be in [0, 1]; got {min_keep!r}.")
        #: per hidden layer, the fewest neurons a step may leave (``min_keep``, i.e. ``neon.min_keep``, of its original
        #: width; at least one)
        self.min_widths = [max(1, keep_channels(min_keep, c)) if min_keep > 0 else 1 for c in self.original_widths]
        #: per hidden layer, the indices (in the original network) of the neurons still there
        self.kept = [np.arange(c) for c in self.original_widths]
        self.num_classes = int(self.data.num_classes)
        self.base_params = _params(self.model)
        self.base_accuracy = float(evaluate(self.model, self.data.x_val, self.data.y_val)) if base_accuracy is None \
            else float(base_accuracy)
        self.accuracy = self.base_accuracy
        y = self.data.y_train.numpy()
        samples = min(settings.activation_samples, len(y))
        self._activation_idx = torch.from_numpy(subsample_indices(y, samples, seed=self.seed))
        self.t = 0
        self.total_reward = 0.0

    # -- bookkeeping ------------------------------------------------------------------------------
    def _example(self) -> torch.Tensor:
        return torch.zeros((1, *self.input_shape))

    def _space(self) -> PruningSpace:
        return PruningSpace(self.model, self._example(), importance=self.importance, ignored_layers=self.ignored_layers)

    @property
    def actions(self) -> tuple[float, ...]:
        """The keep fractions; an action is an index into them."""
        return self.settings.actions

    @property
    def passes(self) -> int:
        return self.settings.passes

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def total_steps(self) -> int:
        return self.passes * self.num_layers

    @property
    def done(self) -> bool:
        return self._idle_stop or self.t >= self.total_steps

    @property
    def layer(self) -> int:
        """Index of the hidden layer the next step acts on."""
        return self.t % self.num_layers

    @property
    def pass_index(self) -> int:
        return self.t // self.num_layers

    @property
    def widths(self) -> list[int]:
        return [len(k) for k in self.kept]

    @property
    def params(self) -> int:
        return _params(self.model)

    @property
    def accuracy_change(self) -> float:
        """Validation accuracy change in points against the unpruned network."""
        return 100.0 * (self.accuracy - self.base_accuracy)

    @property
    def keep_ratios(self) -> list[float]:
        """Neurons left per hidden layer, as a share of the original width."""
        return [w / o for w, o in zip(self.widths, self.original_widths)]

    def detach_data(self) -> Dataset:
        """Remove and return the dataset (to ship the episode without it); see :meth:`attach_data`."""
        data, self.data = self.data, None
        return data

    def attach_data(self, data: Dataset) -> None:
        self.data = data.to("cpu")

    # -- observation ------------------------------------------------------------------------------
    def topology(self) -> list[LayerTopology]:
        modules = dict(self.model.named_modules())
        return [
            LayerTopology(int(modules[layer.root].in_features), w, layer.pre, layer.activation, o)
            for w, o, layer in zip(self.widths, self.original_widths, self.layers)
        ]

    @torch.no_grad()
    def observe(self) -> np.ndarray:
        """The observation for the next step (for an episode that made all its passes: of its last
        layer; for one that stopped after an idle pass: of the first layer of the next pass)."""
        t = min(self.t, self.total_steps - 1)
        layer = t % self.num_layers
        modules = dict(self.model.named_modules())
        weight_stats = [neuron_statistics(modules[l.root].weight.detach().numpy()) for l in self.layers]
        acts = hidden_activations(self.model, self.layers, self.data.x_train[self._activation_idx])
        act_stats = [neuron_statistics(a.T.numpy()) for a in acts]
        topo = self.topology()
        return observation(
            layer_topology=layer_topology_features(topo[layer]),
            layer_weight_stats=weight_stats[layer],
            layer_activation_stats=act_stats[layer],
            network_topology=network_topology_features(topo, params=self.params, base_params=self.base_params,
                                                       num_classes=self.num_classes),
            network_weight_stats=np.concatenate(weight_stats),
            network_activation_stats=np.concatenate(act_stats),
            context=context_features(layer=layer, num_layers=self.num_layers, pass_index=t // self.num_layers,
                                     passes=self.passes, accuracy_change=self.accuracy_change,
                                     tolerance=self.tolerance),
        )

    # -- dynamics ---------------------------------------------------------------------------------
    def step(self, action: int) -> dict[str, Any]:
        """Apply keep fraction ``actions[action]`` to the current layer; returns the step's record."""
        if self.done:
            why = "a pass changed nothing" if self._idle_stop else f"all {self.passes} passes made"
            raise RuntimeError(f"The episode is over after {self.t} steps ({why}); start a new one.")
        if isinstance(action, (bool, np.bool_)) or not 0 <= int(action) < len(self.actions):
            raise ValueError(f"'action' must be an index in [0, {len(self.actions)}); got {action!r}.")
        keep = self.actions[int(action)]
        layer, before = self.layer, self.widths[self.layer]
        after = max(1, keep_channels(keep, before)) if keep < 1.0 else before
        after = max(after, min(before, self.min_widths[layer]))  # never below neon.min_keep of the original
        t0 = time.perf_counter()
        retrain = {"epochs": 0, "iterations": 0, "seconds": 0.0}
        previous = (self.model, self.kept[layer], self.accuracy)
        if after < before:
            space = self._space()
            # by name: a layer pruned down to one neuron is no longer a group of the current network
            group = next(g for g in space.groups if g.root == self.layers[layer].root)
            pruned = group.ranking[: before - after]
            kept_local = np.setdiff1d(np.arange(before), pruned)  # sorted: Torch-Pruning keeps order
            model = space.build([after / g.channels if g is group else 1.0 for g in space.groups])
            self.kept[layer] = self.kept[layer][kept_local]
            modules = dict(model.named_modules())
            touched = [p for name in group.layers if name in modules for p in modules[name].parameters()]
            retrain = train_early_stopping(model, self.data, self.settings.retrain, parameters=touched,
                                           seed=(self.seed * 1009 + self.t) % 2**31)
            self.model = model
        t_prune = time.perf_counter() - t0 - retrain["seconds"]
        t2 = time.perf_counter()
        if after < before:
            self.accuracy = float(evaluate(self.model, self.data.x_val, self.data.y_val))
        removed = 100.0 * (1.0 - after / before)
        delta = self.accuracy_change
        reward = neon_reward(removed, delta, tolerance=self.tolerance, units=self.settings.reward_units)
        regime = reward_regime(delta, tolerance=self.tolerance)
        tried_accuracy = self.accuracy
        rolled_back = after < before and self.settings.rollback and regime == "beyond_tolerance"
        if rolled_back:
            self.model, self.kept[layer], self.accuracy = previous
            after = before
        self._pass_changed |= after < before
        record = {
            "step": self.t, "pass": self.pass_index, "layer": layer, "root": self.layers[layer].root,
            "action": int(action), "keep_fraction": keep, "width_before": before, "width_after": after,
            "removed_percent": removed, "accuracy": self.accuracy, "accuracy_change": self.accuracy_change,
            "tried_accuracy": tried_accuracy, "tried_accuracy_change": delta, "rolled_back": rolled_back,
            "reward": reward, "regime": regime,
            "params": self.params, "retrain_epochs": retrain["epochs"], "retrain_iterations": retrain["iterations"],
            "t_prune_s": t_prune, "t_retrain_s": retrain["seconds"], "t_eval_s": time.perf_counter() - t2,
        }
        self.total_reward += reward
        self.t += 1
        if self.t % self.num_layers == 0:  # a pass ended
            self._idle_stop = self.settings.stop_when_idle and not self._pass_changed
            self._pass_changed = False
        return record

    @property
    def roots(self) -> list[str]:
        """Names of the hidden Linear layers, in the order the episode visits them."""
        return [layer.root for layer in self.layers]

    def summary(self) -> dict[str, Any]:
        """Where the episode stands: size, accuracy, reward so far."""
        return {
            "steps": self.t, "params": self.params, "base_params": self.base_params,
            "reduction": self.base_params / max(self.params, 1), "accuracy": self.accuracy,
            "base_accuracy": self.base_accuracy, "accuracy_change": self.accuracy_change,
            "within_tolerance": self.accuracy_change >= -self.tolerance, "return": self.total_reward,
            "widths": self.widths, "original_widths": list(self.original_widths), "tolerance": self.tolerance,
        }
