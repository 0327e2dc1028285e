"""`EpisodeSettings`: the one definition of a NEON episode's settings, and everything derived from it."""

import dataclasses
from types import SimpleNamespace

import pytest

from rayprune.config import NeonConfig, parse_config
from rayprune.neon.apply import episode_settings
from rayprune.neon.policy import load_policy
from rayprune.neon.settings import DEFAULT_ACTIONS, EpisodeSettings
from rayprune.neon.training import RetrainSettings


def test_the_configs_defaults_are_the_episode_defaults():
    """The config spells the same settings for users; its defaults must not drift from these
    (pretraining's passes default differs on purpose: neon.pretrain.passes)."""
    from_config = EpisodeSettings.from_config(NeonConfig())
    assert dataclasses.replace(from_config, passes=EpisodeSettings().passes) == EpisodeSettings()
    assert from_config.passes == NeonConfig().pretrain.passes


def test_a_setting_the_config_leaves_unset_takes_the_default():
    neon = SimpleNamespace(actions=None, activation_samples=None, rollback=False, stop_when_idle=None, retrain=None,
                           pretrain=SimpleNamespace(passes=3, reward_units=None))
    assert EpisodeSettings.from_config(neon) == EpisodeSettings(passes=3, rollback=False)


def test_config_values_reach_the_settings():
    cfg = parse_config({"neon": {"actions": [1.0, 0.5], "activation_samples": 64, "rollback": False,
                                 "retrain": {"max_epochs": 2}, "pretrain": {"passes": 2, "reward_units": "fraction"}}})
    assert EpisodeSettings.from_config(cfg.neon) == EpisodeSettings(
        actions=(1.0, 0.5), passes=2, retrain=RetrainSettings(max_epochs=2), activation_samples=64, rollback=False,
        reward_units="fraction")


def test_a_policys_record_reads_back_and_older_records_take_the_defaults():
    settings = EpisodeSettings(actions=(1.0, 0.5), passes=3, retrain=RetrainSettings(max_epochs=1),
                               activation_samples=32, rollback=False, stop_when_idle=False, reward_units="fraction")
    assert EpisodeSettings.from_meta(settings.actions, settings.to_meta()) == settings
    assert EpisodeSettings.from_meta(DEFAULT_ACTIONS, {}) == EpisodeSettings()
    assert EpisodeSettings.from_meta(DEFAULT_ACTIONS, {"passes": 2}) == EpisodeSettings(passes=2)
    shipped = load_policy()
    assert EpisodeSettings.from_meta(shipped.actions, shipped.meta["episode"]).to_meta() == shipped.meta["episode"]


def test_at_prune_time_the_agents_settings_hold_unless_the_config_sets_one():
    policy = SimpleNamespace(actions=[1.0, 0.8], meta={"episode": EpisodeSettings(passes=8, rollback=True).to_meta()})
    default = parse_config({}).neon
    assert episode_settings(default, policy, log=lambda m: None) == EpisodeSettings(actions=(1.0, 0.8), passes=8)
    told = []
    chosen = episode_settings(parse_config({"neon": {"passes": 2, "rollback": False}}).neon, policy, log=told.append)
    assert chosen == EpisodeSettings(actions=(1.0, 0.8), passes=2, rollback=False)
    assert any("passes = 2" in line for line in told) and any("rollback = False" in line for line in told)


@pytest.mark.parametrize("bad, field", [({"passes": 0}, "passes"), ({"passes": 1.5}, "passes"),
                                        ({"actions": ()}, "actions"), ({"actions": (1.0, 1.2)}, "actions"),
                                        ({"activation_samples": 0}, "activation_samples"),
                                        ({"reward_units": "points"}, "reward_units")])
def test_bad_settings_are_named(bad, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        EpisodeSettings(**bad)
