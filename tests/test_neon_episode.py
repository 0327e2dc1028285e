"""NEON's episode dynamics: which neurons go, what is retrained, the reward paid, passes."""

import copy

import numpy as np
import pytest
import torch

from rayprune.models import build_model
from rayprune.neon.episode import PruningEpisode
from rayprune.neon.reward import neon_reward
from rayprune.neon.settings import EpisodeSettings
from rayprune.neon.suite import load_suite_dataset
from rayprune.neon.training import RetrainSettings, train_early_stopping, validation_loss
from rayprune.pruning import PruningSpace

FAST = RetrainSettings(max_epochs=2, patience=1, max_samples=256)


@pytest.fixture(scope="module")
def trained():
    data = load_suite_dataset("clf_easy", seed=0)
    torch.manual_seed(0)
    net = build_model("mlp", num_classes=2, in_features=10, hidden_sizes=[20, 12, 8],
                      pre_layer=["none", "batchnorm", "none", "dropout"])
    train_early_stopping(net, data, RetrainSettings(max_epochs=15, patience=3, max_samples=None))
    return net.eval(), data


def test_step_prunes_lowest_magnitude_neurons_and_retrains_only_touched_layers(trained):
    net, data = trained
    episode = PruningEpisode(net, data, EpisodeSettings(retrain=FAST), tolerance=1.0, seed=1)
    # the group's L2 ranking (incoming row, BatchNorm entry, outgoing column of each neuron), least important first
    ranking = PruningSpace(net, torch.zeros(1, 10), importance="l2").groups[0].ranking
    record = episode.step(episode.actions.index(0.7))  # 20 -> 14 neurons
    assert (record["width_before"], record["width_after"]) == (20, 14) and record["removed_percent"] == pytest.approx(30.0)
    assert episode.widths == [14, 12, 8]
    assert episode.kept[0].tolist() == sorted(ranking[6:].tolist())
    # the kept neurons carry their own weights into the pruned layer (before retraining moved them)
    assert not set(episode.kept[0].tolist()) & set(ranking[:6].tolist())
    model = episode.model
    assert model.features[0].linear.weight.shape == (14, 10) and model.features[1].linear.weight.shape == (12, 14)
    assert model.features[1].batchnorm.num_features == 14
    # layers the step did not touch keep their weights exactly; the touched ones were retrained
    assert torch.equal(model.features[2].linear.weight, net.features[2].linear.weight)
    assert torch.equal(model.classifier.weight, net.classifier.weight)
    assert record["retrain_iterations"] > 0
    # NEON's reward on the measured change
    assert record["reward"] == pytest.approx(neon_reward(30.0, record["accuracy_change"], tolerance=1.0))
    assert record["params"] < episode.base_params and not episode.done


def test_keeping_everything_changes_nothing(trained):
    net, data = trained
    episode = PruningEpisode(net, data, EpisodeSettings(retrain=FAST), tolerance=1.0)
    record = episode.step(episode.actions.index(1.0))
    assert record["reward"] == 0.0 and record["retrain_iterations"] == 0 and record["accuracy_change"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(episode.model.state_dict().values(), net.state_dict().values()))


def test_passes_compound_and_the_episode_ends(trained):
    net, data = trained
    episode = PruningEpisode(net, data, EpisodeSettings(passes=2, retrain=FAST, rollback=False), tolerance=5.0)
    assert episode.total_steps == 6
    layers = []
    while not episode.done:
        layers.append(episode.layer)
        episode.step(episode.actions.index(0.6))
    assert layers == [0, 1, 2, 0, 1, 2]
    assert episode.widths == [7, 4, 3]  # 20 -> 12 -> 7, 12 -> 7 -> 4, 8 -> 5 -> 3
    summary = episode.summary()
    assert summary["reduction"] == pytest.approx(episode.base_params / episode.params) and summary["reduction"] > 3
    with pytest.raises(RuntimeError, match="over"):
        episode.step(0)


def test_bad_arguments_are_named(trained):
    net, data = trained
    with pytest.raises(ValueError, match="'passes' must be an integer >= 1; got 0"):
        EpisodeSettings(passes=0)
    with pytest.raises(ValueError, match="'actions' must be keep fractions"):
        EpisodeSettings(actions=(1.0, 0.0))
    with pytest.raises(ValueError, match="'reward_units'"):
        EpisodeSettings(reward_units="points")
    with pytest.raises(ValueError, match="'tolerance'"):
        PruningEpisode(net, data, tolerance=-1.0)
    with pytest.raises(TypeError, match="'settings' must be an EpisodeSettings"):
        PruningEpisode(net, data, {"passes": 2})
    episode = PruningEpisode(net, data, EpisodeSettings(retrain=FAST))
    with pytest.raises(ValueError, match="action"):
        episode.step(7)


def test_ignored_layers_are_never_pruned(trained):
    net, data = trained
    episode = PruningEpisode(net, data, EpisodeSettings(retrain=FAST), ignored_layers=["features.1.linear"])
    assert episode.roots == ["features.0.linear", "features.2.linear"]
    assert np.array_equal(episode.kept[1], np.arange(8))


def test_retraining_keeps_the_best_validation_loss_and_trains_only_what_it_is_given(trained):
    net, data = trained
    model = build_model("mlp", num_classes=2, in_features=10, hidden_sizes=[20, 12, 8],
                        pre_layer=["none", "batchnorm", "none", "dropout"])
    model.load_state_dict(net.state_dict())
    model.eval()
    start = validation_loss(model, data.x_val, data.y_val)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # a learning rate this large only makes things worse: the starting weights must come back
    stats = train_early_stopping(model, data, RetrainSettings(max_epochs=3, patience=1, lr=10.0),
                                 parameters=list(model.features[2].parameters()))
    assert not stats["improved"] and stats["iterations"] > 0
    assert validation_loss(model, data.x_val, data.y_val) == pytest.approx(start)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[k], before[k]) for k in params)
    assert all(p.requires_grad for p in model.parameters())  # frozen parameters are unfrozen again
    # with a sane rate the given parameters move, the others do not
    stats = train_early_stopping(model, data, RetrainSettings(max_epochs=4, patience=2, lr=1e-2),
                                 parameters=list(model.classifier.parameters()))
    assert torch.equal(model.features[0].linear.weight, before["features.0.linear.weight"])
    assert stats["improved"] == (not torch.equal(model.classifier.weight, before["classifier.weight"]))


def test_retraining_restores_each_modules_mode_and_keeps_frozen_batchnorm_frozen(trained):
    """A network in train mode with its BatchNorm frozen in eval mode comes back exactly so."""
    net, data = trained
    model = copy.deepcopy(net).train()
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    norm.eval()
    flags = {name: m.training for name, m in model.named_modules()}
    running = norm.running_mean.clone()
    validation_loss(model, data.x_val, data.y_val)
    assert {name: m.training for name, m in model.named_modules()} == flags
    train_early_stopping(model, data, RetrainSettings(max_epochs=2, patience=2, lr=1e-2, max_samples=128),
                         parameters=list(model.classifier.parameters()))
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert torch.equal(norm.running_mean, running)  # a frozen layer's statistics are frozen too


@pytest.fixture(scope="module")
def digits_net():
    data = load_suite_dataset("digits", seed=0)
    torch.manual_seed(0)
    net = build_model("mlp", num_classes=10, in_features=64, hidden_sizes=[24, 16])
    train_early_stopping(net, data, RetrainSettings(max_epochs=20, patience=3, max_samples=None))
    return net.eval(), data


FROZEN = RetrainSettings(max_epochs=1, patience=1, lr=1e-12, max_samples=64)  # retraining moves nothing


def test_a_step_beyond_tolerance_is_paid_then_rolled_back(digits_net):
    net, data = digits_net
    # 24 -> 1 neuron without real retraining: a 10-class network cannot survive that
    episode = PruningEpisode(net, data, EpisodeSettings(actions=(1.0, 0.04), retrain=FROZEN, passes=2), tolerance=1.0)
    before = {k: v.clone() for k, v in episode.model.state_dict().items()}
    record = episode.step(1)
    assert record["regime"] == "beyond_tolerance" and record["rolled_back"]
    assert record["tried_accuracy_change"] < -1.0
    assert record["reward"] == pytest.approx(neon_reward(100 * 23 / 24, record["tried_accuracy_change"], tolerance=1.0))
    assert record["reward"] < 0
    # the network, its surviving neurons and its accuracy are the ones before the step
    assert record["width_after"] == 24 and episode.widths == [24, 16] and episode.kept[0].tolist() == list(range(24))
    assert episode.accuracy_change == 0.0 and record["accuracy_change"] == 0.0 and episode.params == episode.base_params
    assert all(torch.equal(v, before[k]) for k, v in episode.model.state_dict().items())


def test_without_rollback_the_broken_network_stays(digits_net):
    net, data = digits_net
    episode = PruningEpisode(net, data, EpisodeSettings(actions=(1.0, 0.04), retrain=FROZEN, rollback=False), tolerance=1.0)
    record = episode.step(1)
    assert record["regime"] == "beyond_tolerance" and not record["rolled_back"]
    assert episode.widths == [1, 16] and episode.accuracy_change < -1.0


def test_an_episode_stops_after_a_pass_that_changed_nothing(digits_net):
    net, data = digits_net
    episode = PruningEpisode(net, data, EpisodeSettings(actions=(1.0, 0.04), retrain=FROZEN, passes=3), tolerance=1.0)
    episode.step(0)
    episode.step(1)  # rolled back: still nothing changed in this pass
    assert episode.done and episode.t == 2 < episode.total_steps
    # a pass that changed something goes on to the next pass
    episode = PruningEpisode(net, data, EpisodeSettings(actions=(1.0, 0.5), retrain=FROZEN, passes=3), tolerance=100.0)
    episode.step(1), episode.step(0)
    assert not episode.done and episode.pass_index == 1 and episode.widths == [12, 16]
    episode.step(0), episode.step(0)
    assert episode.done and episode.t == 4
    # stop_when_idle=False: every pass is made
    episode = PruningEpisode(net, data, EpisodeSettings(actions=(1.0, 0.5), retrain=FROZEN, passes=3, stop_when_idle=False),
                             tolerance=1.0)
    for _ in range(2):
        episode.step(0)
    assert not episode.done


def test_a_layer_cut_to_one_neuron_stays_and_the_others_are_still_pruned(digits_net):
    _, data = digits_net
    torch.manual_seed(0)
    net = build_model("mlp", num_classes=10, in_features=64, hidden_sizes=[2, 8, 6]).eval()
    # Torch-Pruning has no group for a one-neuron layer: steps must find layers by name, not position
    episode = PruningEpisode(net, data, EpisodeSettings(actions=(1.0, 0.6), retrain=FROZEN, passes=3, rollback=False,
                                                        stop_when_idle=False), tolerance=100.0)
    while not episode.done:
        episode.step(1)
    assert episode.widths == [1, 2, 1]  # 2 -> 1; 8 -> 5 -> 3 -> 2; 6 -> 4 -> 2 -> 1
    assert [episode.model.get_submodule(r).out_features for r in episode.roots] == [1, 2, 1]


def test_neon_min_keep_floors_every_layer_at_its_share_of_the_original_width(trained):
    """neon.min_keep: the smallest keep fraction, pass after pass, stops at half of each layer (20, 12, 8 -> 10, 6, 4)."""
    net, data = trained
    settings = EpisodeSettings(retrain=FAST, passes=2, rollback=False)
    floored = PruningEpisode(net, data, settings, tolerance=100.0, min_keep=0.5)
    free = PruningEpisode(net, data, settings, tolerance=100.0)
    smallest = int(np.argmin(floored.actions))
    while not floored.done:
        floored.step(smallest)
    while not free.done:
        free.step(smallest)
    assert floored.widths == [10, 6, 4]
    assert min(w / o for w, o in zip(free.widths, free.original_widths)) < 0.5  # without it, further down
    with pytest.raises(ValueError, match="min_keep"):
        PruningEpisode(net, data, settings, min_keep=1.5)
