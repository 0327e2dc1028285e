"""NEON's policy network, and loading a trained one for inference with plain PyTorch (no Ray).

The observation is a set of feature maps (:data:`~rayprune.neon.features.OBSERVATION_SEGMENTS`:
topology, weight and activation statistics of the layer and of the whole network, episode
context). As in the method, each map has its own small encoder (Linear + tanh); the encodings are
concatenated and go through an MLP to the logits over keep fractions. The critic has the same
shape and its own weights. Because every map is pooled over neurons before it gets here, the same
network serves an MLP of any depth and width.

A policy directory holds ``policy.pt`` (the actor's ``state_dict``, loaded with
``weights_only=True``) and ``policy.json`` (layout, keep fractions, the episode settings it was
trained with, and how it was trained). The package ships one under ``rayprune/assets/neon``.

Example:
    >>> policy = load_policy()                 # the shipped agent
    >>> import numpy as np
    >>> action = policy.act(np.zeros(policy.observation_size, dtype=np.float32))
    >>> 0 <= action < len(policy.actions)
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rayprune._io import atomic_torch_save, atomic_write_text
from rayprune.neon.features import OBSERVATION_SEGMENTS

__all__ = [
    "POLICY_FORMAT",
    "NeonPolicy",
    "NeonPolicyNet",
    "load_policy",
    "resolve_policy_dir",
    "save_policy",
    "shipped_policy_dir",
]

POLICY_FORMAT = "rayprune.neon-policy/1"
POLICY_FILE, META_FILE = "policy.pt", "policy.json"


class NeonPolicyNet(nn.Module):
    """Per-segment encoders → concatenation → tanh MLP → ``outputs`` numbers.

    ``head_std`` initialises the last layer with that standard deviation and zero bias (PPO's
    usual small init: a near-uniform policy and a critic that starts near 0, so the first
    advantages are the returns themselves and not the critic's random offsets).

    Example:
        >>> net = NeonPolicyNet([("a", 3), ("b", 2)], outputs=4, hidden=(8,), segment_hidden=5)
        >>> net(torch.zeros(7, 5)).shape
        torch.Size([7, 4])
    """

    def __init__(
        self,
        segments: Sequence[tuple[str, int]],
        outputs: int,
        *,
        hidden: Sequence[int] = (64, 64),
        segment_hidden: int = 16,
        head_std: float | None = None,
    ) -> None:
        super().__init__()
        self.segments = [(str(n), int(s)) for n, s in segments]
        self.encoders = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(size, segment_hidden), nn.Tanh()) for name, size in self.segments}
        )
        layers: list[nn.Module] = []
        width = segment_hidden * len(self.segments)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.Tanh()]
            width = int(h)
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(width, int(outputs))
        if head_std is not None:  # small last layer: near-uniform policy, near-zero values at the start
            nn.init.normal_(self.head.weight, std=head_std)
            nn.init.zeros_(self.head.bias)

    @property
    def input_size(self) -> int:
        return sum(size for _, size in self.segments)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        parts = torch.split(obs, [size for _, size in self.segments], dim=-1)
        encoded = [self.encoders[name](part) for (name, _), part in zip(self.segments, parts)]
        return self.head(self.trunk(torch.cat(encoded, dim=-1)))


@dataclass
class NeonPolicy:
    """A trained actor and what it needs to act: its keep fractions and episode settings."""

    net: NeonPolicyNet
    actions: list[float]
    meta: dict[str, Any] = field(default_factory=dict)
    directory: str | None = None

    @property
    def observation_size(self) -> int:
        return self.net.input_size

    @torch.no_grad()
    def probabilities(self, obs: np.ndarray) -> np.ndarray:
        """Action probabilities for one observation."""
        logits = self.net(torch.as_tensor(np.asarray(obs, dtype=np.float32))[None])[0]
        return torch.softmax(logits, dim=-1).numpy()

    def act(self, obs: np.ndarray, *, greedy: bool = True, rng: np.random.Generator | None = None) -> int:
        """The most probable action (``greedy``) or one sampled with ``rng``."""
        p = self.probabilities(obs)
        if greedy:
            return int(np.argmax(p))
        rng = rng if rng is not None else np.random.default_rng()
        return int(rng.choice(len(p), p=p / p.sum()))


def save_policy(net: NeonPolicyNet, directory: str | os.PathLike, *, actions: Sequence[float],
                hidden: Sequence[int], segment_hidden: int, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``policy.pt`` and ``policy.json`` to ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, out / POLICY_FILE)
    doc = {
        "format": POLICY_FORMAT, "segments": [list(s) for s in net.segments], "actions": [float(a) for a in actions],
        "hidden": [int(h) for h in hidden], "segment_hidden": int(segment_hidden), **dict(meta or {}),
    }
    atomic_write_text(out / META_FILE, json.dumps(doc, indent=1, default=str))
    return out


def shipped_policy_dir() -> Path:
    """Where the package keeps its pretrained agent (``rayprune/assets/neon``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "neon"


def resolve_policy_dir(path: str | os.PathLike | None) -> Path:
    """``None`` → the shipped agent; a policy directory → itself; a ``rayprune pretrain`` output
    directory → its ``policy/`` subdirectory."""
    if path is None:
        return shipped_policy_dir()
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"The NEON agent checkpoint {str(p)!r} does not exist; pass the --out directory of "
                                "`rayprune pretrain` or a policy directory.")
    for candidate in (p, p / "policy"):
        if (candidate / META_FILE).is_file() and (candidate / POLICY_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"The NEON agent checkpoint {str(p)!r} holds no {POLICY_FILE} + {META_FILE} (itself or in policy/); "
        "pass the --out directory of `rayprune pretrain` or a policy directory."
    )


def load_policy(path: str | os.PathLike | None = None) -> NeonPolicy:
    """Load a policy for inference (see :func:`resolve_policy_dir` for ``path``)."""
    directory = resolve_policy_dir(path)
    meta = json.loads((directory / META_FILE).read_text())
    if meta.get("format") != POLICY_FORMAT:
        raise ValueError(f"{directory / META_FILE} has format {meta.get('format')!r}; expected {POLICY_FORMAT!r}.")
    segments = [(str(n), int(s)) for n, s in meta["segments"]]
    if segments != [(n, s) for n, s in OBSERVATION_SEGMENTS]:
        raise ValueError(
            f"The policy in {directory} was trained on observation maps {segments}, but this rayprune "
            f"builds {list(OBSERVATION_SEGMENTS)}; pretrain a new agent with `rayprune pretrain`."
        )
    net = NeonPolicyNet(segments, len(meta["actions"]), hidden=meta["hidden"], segment_hidden=meta["segment_hidden"])
    net.load_state_dict(torch.load(directory / POLICY_FILE, map_location="cpu", weights_only=True))
    net.eval()
    return NeonPolicy(net=net, actions=[float(a) for a in meta["actions"]], meta=meta, directory=str(directory))
