"""crl's own random streams: a seed reproduces a policy's draws, whatever else the process draws."""

import json
import random

import numpy as np
import torch

from rayprune.agents.crl import RandomStreams


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_one_seed_gives_the_same_draws_and_another_seed_other_draws() -> None:
    a, b, c = RandomStreams(7), RandomStreams(7), RandomStreams(8)
    with a.active():
        first = _draws()
    torch.rand(11), np.random.rand(5), random.random()  # the process draws in between
    with b.active():
        again = _draws()
    with c.active():
        other = _draws()
    assert first == again
    assert all(x != y for x, y in zip(first, other))


def test_the_process_streams_go_on_as_if_the_policy_had_never_drawn() -> None:
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected = _draws()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    streams = RandomStreams(3)
    with streams.active():
        _draws()
    assert _draws() == expected


def test_a_json_round_trip_of_the_state_continues_the_same_streams() -> None:
    a = RandomStreams(5)
    with a.active():
        _draws()
    b = RandomStreams(99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    with a.active():
        x = _draws()
    with b.active():
        y = _draws()
    assert x == y


def test_streams_are_restored_when_the_work_inside_fails() -> None:
    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(1)
    streams = RandomStreams(2)
    try:
        with streams.active():
            torch.rand(4)
            raise RuntimeError("rollout failed")
    except RuntimeError:
        pass
    assert torch.equal(torch.rand(2), expected)
