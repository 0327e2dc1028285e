"""NEON's observation: per-neuron statistics with known values, pooling, topology, any depth/width."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from rayprune.neon.features import (
    LAYER_TOPOLOGY_FEATURES,
    NETWORK_TOPOLOGY_FEATURES,
    NEURON_STATS,
    OBSERVATION_SEGMENTS,
    LayerTopology,
    context_features,
    layer_topology_features,
    network_topology_features,
    neuron_statistics,
    observation_size,
    pool_over_neurons,
    squash,
)
from rayprune.neon.settings import EpisodeSettings
from rayprune.neon.topology import dense_layers, hidden_activations

COL = {name: i for i, name in enumerate(NEURON_STATS)}


def test_statistics_of_hand_built_rows():
    stats = neuron_statistics(np.array([[1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 4.0], [2.0, 2.0, 2.0, 2.0]]))
    symmetric, spike, constant = stats
    # +-1: mean 0, std 1, no skew, excess kurtosis 1 - 3 = -2, L1 = 1, L2 = 1
    assert symmetric.tolist() == pytest.approx([0.0, 1.0, 0.0, -2.0, -1.0, 1.0, 1.0, 1.0])
    # one spike of 4 among zeros: mean 1, var 3, third moment (27 + 3·(-1)) / 4 = 6, fourth (81 + 3) / 4 = 21
    assert spike[COL["mean"]] == pytest.approx(1.0)
    assert spike[COL["std"]] == pytest.approx(math.sqrt(3.0))
    assert spike[COL["skew"]] == pytest.approx(6.0 / 3.0**1.5)
    assert spike[COL["kurtosis"]] == pytest.approx(21.0 / 9.0 - 3.0)
    assert spike[COL["l1"]] == pytest.approx(1.0) and spike[COL["l2"]] == pytest.approx(2.0)
    # a constant neuron: no spread, skew and kurtosis defined as 0 (not NaN)
    assert constant.tolist() == pytest.approx([2.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])


def test_statistics_match_scipy_on_random_rows():
    x = np.random.default_rng(0).normal(size=(5, 200)) ** 3
    stats = neuron_statistics(x)
    assert stats[:, COL["skew"]] == pytest.approx(scipy.stats.skew(x, axis=1, bias=True))
    assert stats[:, COL["kurtosis"]] == pytest.approx(scipy.stats.kurtosis(x, axis=1, fisher=True, bias=True))
    assert stats[:, COL["std"]] == pytest.approx(x.std(axis=1))
    # norms are per-element means, so they do not grow with fan-in
    assert stats[:, COL["l2"]] == pytest.approx(np.linalg.norm(x, axis=1) / math.sqrt(200))
    assert stats[:, COL["l1"]] == pytest.approx(np.abs(x).sum(axis=1) / 200)


def test_pooling_is_mean_std_min_max_per_statistic():
    stats = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    pooled = pool_over_neurons(stats)
    assert pooled.tolist() == pytest.approx([3.0, math.sqrt(8 / 3), 1.0, 5.0, 20.0, math.sqrt(200 / 3), 10.0, 30.0])
    with pytest.raises(ValueError, match="at least one neuron"):
        pool_over_neurons(np.zeros((0, 8)))


def test_squash_keeps_sign_and_order():
    x = np.array([-100.0, -1.0, 0.0, 0.5, 1e6])
    y = squash(x)
    assert np.all(np.diff(y) > 0) and y[2] == 0.0 and y[0] == -math.log(101.0)


def test_topology_features():
    layer = layer_topology_features(LayerTopology(in_features=8, out_features=16, pre="dropout",
                                                  activation="sigmoid", original_out=32))
    named = dict(zip(LAYER_TOPOLOGY_FEATURES, layer))
    assert named["dropout_before"] == 1.0 and named["batchnorm_before"] == 0.0
    assert named["log2_in"] == pytest.approx(0.3) and named["log2_out"] == pytest.approx(0.4)
    assert named["act_sigmoid"] == 1.0 and named["act_relu"] == 0.0 and named["width_left"] == 0.5
    net = dict(zip(NETWORK_TOPOLOGY_FEATURES, network_topology_features(
        [LayerTopology(4, 64, "batchnorm", "relu"), LayerTopology(64, 16, "none", "tanh")],
        params=1000, base_params=4000, num_classes=4)))
    assert net["depth"] == pytest.approx(2 / 6) and net["max_log2_width"] == pytest.approx(0.6)
    assert net["share_batchnorm"] == 0.5 and net["share_tanh"] == 0.5 and net["params_left"] == 0.25
    assert net["log10_params"] == pytest.approx(3 / 7) and net["log2_classes"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="'pre'"):
        LayerTopology(1, 1, pre="layernorm")


def test_context_features():
    c = context_features(layer=2, num_layers=3, pass_index=1, passes=2, accuracy_change=-50.0, tolerance=50.0)
    assert c.tolist() == pytest.approx([2 / 3, 1.0, 0.5, -3.0, 1.0, 0.0, 0.0])  # Δ clipped at -3, τ = 50 maps to 1
    left = context_features(layer=0, num_layers=1, pass_index=0, passes=1, accuracy_change=-1.5, tolerance=1.0)
    assert left[-2:].tolist() == pytest.approx([-0.05, 1.0])  # half a point beyond τ
    assert context_features(layer=0, num_layers=1, pass_index=0, passes=1, accuracy_change=-1.0, tolerance=1.0)[-1] == 0.0


def _net(hidden, seed=0):
    torch.manual_seed(seed)
    layers, width = [], 5
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 3)).eval()


def test_episode_observation_on_a_hand_built_network():
    """The layer-weight map of the observation is exactly the pooled statistics of the layer's weights."""
    from rayprune.neon.episode import PruningEpisode
    from rayprune.neon.features import observation
    from rayprune.neon.suite import load_suite_dataset

    data = load_suite_dataset("clf_easy", seed=0)
    net = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(40, dtype=torch.float32).reshape(4, 10) / 10 - 2)
        net[0].bias.zero_()
    episode = PruningEpisode(net, data, EpisodeSettings(activation_samples=50), tolerance=1.0, seed=0)
    obs = episode.observe()
    assert obs.shape == (observation_size(),) and obs.dtype == np.float32
    start = dict(OBSERVATION_SEGMENTS)["layer_topology"]
    expected_weights = squash(pool_over_neurons(neuron_statistics(net[0].weight.detach().numpy())))
    assert obs[start:start + 32] == pytest.approx(expected_weights.astype(np.float32), abs=1e-5)
    # activations: ReLU outputs on the activation sample, pooled the same way
    x = data.x_train[episode._activation_idx]
    acts = torch.relu(net[0](x)).detach().numpy()
    expected_acts = squash(pool_over_neurons(neuron_statistics(acts.T)))
    assert obs[start + 32:start + 64] == pytest.approx(expected_acts.astype(np.float32), abs=1e-5)
    # one hidden layer: the network maps equal the layer maps
    assert obs[start + 64 + len(NETWORK_TOPOLOGY_FEATURES):start + 128 + len(NETWORK_TOPOLOGY_FEATURES)] == \
        pytest.approx(obs[start:start + 64])
    # and the assembly checks segment sizes
    with pytest.raises(ValueError, match="segment"):
        observation(layer_topology=np.zeros(3), layer_weight_stats=np.zeros((2, 8)), layer_activation_stats=np.zeros((2, 8)),
                    network_topology=np.zeros(len(NETWORK_TOPOLOGY_FEATURES)), network_weight_stats=np.zeros((2, 8)),
                    network_activation_stats=np.zeros((2, 8)), context=np.zeros(7))


@pytest.mark.parametrize("hidden", [[3], [64, 8, 200], [16] * 6])
def test_any_depth_and_width_gives_one_observation_size(hidden):
    from rayprune.neon.episode import PruningEpisode
    from rayprune.neon.suite import load_suite_dataset

    data = load_suite_dataset("clf_noisy", seed=0)
    net = _net(hidden)
    net[0] = nn.Linear(15, hidden[0])
    episode = PruningEpisode(net, data, EpisodeSettings(activation_samples=32))
    assert episode.observe().shape == (observation_size(),)
    assert episode.num_layers == len(hidden)


def test_dense_layers_reads_neighbours_and_shared_activations():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn, self.b, self.drop, self.c = (nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 5),
                                                           nn.Dropout(0.1), nn.Linear(5, 2))
            self.act = nn.Tanh()

        def forward(self, x):
            return self.c(self.drop(self.act(self.b(self.bn(self.act(self.a(x)))))))

    net = Shared().eval()
    layers = dense_layers(net, torch.zeros(1, 4))
    assert [(l.root, l.pre, l.activation, l.output_call) for l in layers] == [("a", "none", "tanh", 0),
                                                                            ("b", "batchnorm", "tanh", 1)]
    x = torch.randn(9, 4)
    first, second = hidden_activations(net, layers, x)
    assert torch.allclose(first, torch.tanh(net.a(x)))
    assert torch.allclose(second, torch.tanh(net.b(net.bn(torch.tanh(net.a(x))))))


def test_reading_a_network_keeps_each_modules_mode():
    """Layers and activations are read in eval mode (dropout off), and a deliberately mixed state —
    train mode with BatchNorm frozen in eval mode — is exactly what the caller gets back."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 6), nn.ReLU(), nn.BatchNorm1d(6), nn.Linear(6, 2)).train()
    net[3].eval()
    flags = [m.training for m in net.modules()]
    layers = dense_layers(net, torch.zeros(1, 4))
    assert [m.training for m in net.modules()] == flags
    x = torch.randn(16, 4)
    (acts,) = hidden_activations(net, layers, x)
    assert [m.training for m in net.modules()] == flags
    assert torch.equal(acts, torch.relu(net[1](x)))  # read with dropout off


def test_convolutional_models_are_refused(make_model):
    from rayprune.neon.suite import load_suite_dataset  # noqa: F401  (same import cost as the other tests)

    with pytest.raises(ValueError, match="dense networks only"):
        dense_layers(make_model("small_cnn", in_channels=1), torch.zeros(1, 1, 8, 8))


def test_applying_an_agent_needs_no_ray():
    import subprocess
    import sys

    code = ("import sys; import rayprune.neon; import rayprune.search.prune; import rayprune.agents; "
            "import rayprune.neon.apply; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
