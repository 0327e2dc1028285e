"""crl's self-imitation buffer (``search.crl.replay_elites``): each level's best episodes, handed back as copies."""

import numpy as np
import pytest

from rayprune.agents.crl import EliteReplay, RewardNormalizer


def episode(tag: float, steps: int = 3):
    """A finished two-step-or-more episode whose observations carry ``tag`` (to tell copies apart)."""
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    e = SingleAgentEpisode()
    e.add_env_reset(observation=np.full(2, tag, dtype=np.float32), infos={})
    for t in range(steps):
        e.add_env_step(np.full(2, tag + t + 1, dtype=np.float32), np.zeros(1, dtype=np.float32), 0.0,
                       infos={"keep_ratios": [tag]} if t == steps - 1 else {}, terminated=t == steps - 1,
                       extra_model_outputs={"action_logp": np.float32(-1.0)})
    return e.to_numpy()


def tags(episodes):
    return [float(e.get_observations(0)[0]) for e in episodes]


def test_keeps_each_levels_best_and_the_earlier_of_equal_scores():
    replay = EliteReplay(levels=2, size=2)
    for score, tag, level in [(0.5, 1, 0), (0.7, 2, 0), (0.6, 3, 0), (0.7, 4, 0), (0.9, 5, 1), (None, 6, 1)]:
        replay.offer(level, score, episode(tag))
    assert replay.scores(0) == [0.7, 0.7] and replay.scores(1) == [0.9]
    assert tags(replay.episodes([0, 1], lambda s, lvl: 0.0)) == [2.0, 4.0, 5.0]  # the 0.7 of tag 4 came later than 2's


def test_size_zero_keeps_nothing():
    replay = EliteReplay(levels=1, size=0)
    assert not replay.offer(0, 1.0, episode(1))
    assert replay.episodes([0], lambda s, lvl: 1.0) == []
    with pytest.raises(ValueError, match="size"):
        EliteReplay(levels=1, size=-1)


def test_replayed_copies_are_rewarded_now_and_leave_the_buffer_untouched():
    norm = RewardNormalizer(levels=1)
    norm([0.2, 0.4], [0, 0])
    replay = EliteReplay(levels=1, size=1)
    original = episode(7)
    replay.offer(0, 0.4, original)
    original.set_rewards(new_data=np.asarray(5.0, dtype=np.float32), at_indices=-1)  # the caller's episode moves on
    (first,) = replay.episodes([0], norm.reward)
    assert float(first.get_rewards(-1)) == pytest.approx(1.0)  # (0.4 - 0.3) / 0.1
    norm([0.4, 0.4, 0.4, 0.4], [0] * 4)  # the level's scores catch up: the same elite is worth less now
    first.set_rewards(new_data=np.asarray(-9.0, dtype=np.float32), at_indices=-1)
    (second,) = replay.episodes([0], norm.reward)
    assert 0.0 < float(second.get_rewards(-1)) < 1.0
    assert len(second) == len(original) and second.get_infos(-1)["keep_ratios"] == [7]


def test_state_round_trip_keeps_the_elites_and_their_order():
    replay = EliteReplay(levels=1, size=3)
    for score, tag in [(0.3, 1), (0.9, 2), (0.6, 3)]:
        replay.offer(0, score, episode(tag))
    other = EliteReplay(levels=1, size=3)
    other.load_state(replay.state())
    other.offer(0, 0.6, episode(4))  # equal to an elite saved before: the saved one stays ahead
    assert tags(other.episodes([0], lambda s, lvl: 0.0)) == [2.0, 3.0, 4.0]
