"""Streaming: a user's torch Datasets read through a DataLoader instead of device-resident tensors.

The datasets here count every ``__getitem__``: streamed data must be read batch by batch (about
epochs x samples reads, never a pass over the whole split up front) and give what the resident
tensors of the same samples give.
"""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from torch import nn

from rayprune.api import build_config
from rayprune.config import DataConfig, parse_config
from rayprune.data import (
    Dataset,
    StreamedDataError,
    StreamedDataset,
    dataset_from_splits,
    load_dataset,
)
from rayprune.data.streaming import DEFAULT_MAX_RESIDENT_MB
from rayprune.engine import FineTuneConfig, evaluate, fine_tune, recalibrate_batchnorm
from rayprune.engine.objective import DataSplit, MetricError, neg_mse_metric, resolve_objective
from rayprune.errors import UserError, UserTypeError
from rayprune.problem import PruningProblem, configured_dataset

TESTS = Path(__file__).parent
CLASSES = 4
SHAPE = (1, 8, 8)


# -- data that counts its reads ----------------------------------------------------------------------
class Counting(torch.utils.data.Dataset):
    """Samples from tensors, counting reads per index (``targets`` only when asked: most user
    Datasets do not have it)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, targets: bool = False) -> None:
        self.x, self.y, self.reads = x, y, collections.Counter()
        if targets:
            self.targets = y.tolist()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.reads[i] += 1
        return self.x[i], self.y[i]

    @property
    def total(self) -> int:
        return sum(self.reads.values())


class NpyImages(torch.utils.data.Dataset):
    """Images in .npy files on disk, memory-mapped lazily in each process: what a large dataset looks
    like. It pickles as two paths, never as its pixels."""

    def __init__(self, x_path: Path, y_path: Path) -> None:
        self.x_path, self.y_path = str(x_path), str(y_path)
        self.n = int(np.load(self.y_path, mmap_mode="r").shape[0])
        self._x = self._y = None
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self._x is None:
            self._x, self._y = np.load(self.x_path, mmap_mode="r"), np.load(self.y_path, mmap_mode="r")
        self.reads += 1
        return torch.from_numpy(np.array(self._x[i])), int(self._y[i])

    def __getstate__(self):
        return {**self.__dict__, "_x": None, "_y": None, "reads": 0}


class Unpicklable(Counting):
    """Holds a generator, which no pickler can ship."""

    def __init__(self, x, y) -> None:
        super().__init__(x, y)
        self.stream = (i for i in range(3))


def images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 1x8x8 images of 4 classes (a bright quadrant per class, plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = 0.5 * torch.randn(n, *SHAPE, generator=g)
    for k in range(CLASSES):
        r, c = divmod(k, 2)
        x[y == k, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.0
    return x, y


def splits(n_train=240, n_val=60, n_test=60, **kw) -> tuple[Counting, Counting, Counting]:
    x, y = images(n_train + n_val + n_test)
    a, b = n_train, n_train + n_val
    return Counting(x[:a], y[:a], **kw), Counting(x[a:b], y[a:b], **kw), Counting(x[b:], y[b:], **kw)


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, CLASSES))


def batch_accuracy(model, split, context) -> float:
    """A user metric written for streamed splits: it reads only ``split.batches()``."""
    hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in split.batches(batch_size=16))
    return hits / len(split)


def whole_split_accuracy(model, split, context) -> float:
    """A user metric written for resident data: it reads ``split.x``."""
    return float((model(split.x).argmax(1) == split.y).float().mean())


FT = FineTuneConfig(iterations=25, batch_size=32, lr=0.05)


# -- (a) streamed data is read batch by batch, never whole -------------------------------------------
def test_a_streamed_dataset_is_read_batch_by_batch_never_whole():
    train, val, test = splits()
    data = dataset_from_splits(train, val, test, streaming=True, num_classes=CLASSES, augment="crop")
    assert isinstance(data, StreamedDataset) and data.train is train  # kept as the user's Dataset
    assert (train.total, val.total, test.total) == (1, 1, 1)  # sample 0 each: shape and label checks
    assert not hasattr(data, "x_train")
    with pytest.raises(StreamedDataError, match="streamed"):
        data.x_val  # noqa: B018
    model = net()
    largest = []
    model.register_forward_pre_hook(lambda m, args: largest.append(len(args[0])))

    train.reads.clear()
    fine_tune(model, data, FT, seed=0)
    assert train.total == FT.iterations * FT.batch_size  # exactly the samples of the batches trained on
    recalibrate_batchnorm(model, data.source("train"), batch_size=16, max_batches=3)
    assert train.total == FT.iterations * FT.batch_size + 3 * 16
    val.reads.clear()
    evaluate(model, data.source("val"), batch_size=25)
    assert val.total == len(val) and set(val.reads.values()) == {1}
    assert max(largest) == FT.batch_size  # the model only ever saw batches


def test_each_epoch_reads_every_training_sample_once():
    train, val, test = splits(n_train=100)
    data = dataset_from_splits(train, val, test, streaming=True, num_classes=CLASSES)
    train.reads.clear()
    fine_tune(net(), data, FineTuneConfig(epochs=3, batch_size=20, lr=0.05), seed=0)
    assert train.total == 3 * 100 and set(train.reads.values()) == {3}  # 3 epochs: 3 reads of each sample


# -- (b) the same results as the resident tensors ----------------------------------------------------
def test_streamed_and_resident_data_train_recalibrate_and_score_the_same():
    train, val, test = splits()
    resident = dataset_from_splits(train, val, test, streaming=False, augment="crop")
    streamed = dataset_from_splits(train, val, test, streaming=True, num_classes=CLASSES, augment="crop")
    assert isinstance(resident, Dataset) and isinstance(streamed, StreamedDataset)
    models = {}
    for name, data in (("resident", resident), ("streamed", streamed)):
        model = net()
        stats = fine_tune(model, data, FT, seed=3)  # shuffled per epoch by seed, augmented on device
        recalibrate_batchnorm(model, data.source("train"), batch_size=16, max_batches=5)
        models[name] = (model, stats)
    (a, stats_a), (b, stats_b) = models["resident"], models["streamed"]
    assert stats_a["final_loss"] == pytest.approx(stats_b["final_loss"], rel=1e-5)
    for (key, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(wa.float(), wb.float(), atol=1e-5), key
    for split in ("val", "test"):
        acc = evaluate(a, resident.source(split))
        assert evaluate(b, streamed.source(split)) == acc and 0.5 < acc  # it learnt something
    for metric in (resolve_objective().metric, batch_accuracy):
        on_resident = metric(a, DataSplit("val", source=resident.source("val")), None)
        assert metric(b, DataSplit("val", source=streamed.source("val")), None) == pytest.approx(on_resident)


def test_regression_streams_the_same_as_resident_targets():
    x, _ = images(200)
    target = x.mean(dim=(1, 2, 3)) * 3.0
    parts = [Counting(x[s], target[s]) for s in (slice(0, 140), slice(140, 170), slice(170, 200))]
    resident = dataset_from_splits(*parts, task="regression", streaming=False)
    # the resident path shuffles a given train split once: stream that order, to compare like with like
    ordered = [Counting(*resident.source(s).tensors()) for s in ("train", "val", "test")]
    streamed = dataset_from_splits(*ordered, task="regression", streaming=True)
    objective = resolve_objective("regression")
    scores = []
    for data in (resident, streamed):
        assert data.num_classes == 1 and data.task == "regression"
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
        torch.manual_seed(0)
        model[1].reset_parameters()
        fine_tune(model, data, FineTuneConfig(iterations=20, batch_size=16, lr=0.05), seed=0, loss_fn=objective.loss)
        scores.append(neg_mse_metric(model, DataSplit("val", source=data.source("val"))))
    assert scores[1] == pytest.approx(scores[0], rel=1e-5)


def test_a_metric_gets_batches_of_a_streamed_split_and_a_clear_error_for_whole_tensors(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    train, val, test = splits()
    data = dataset_from_splits(train, val, test, streaming=True, num_classes=CLASSES)
    split = DataSplit("val", source=data.source("val"), device="cpu")
    assert split.streamed and split.dataset is val and len(split) == len(val)
    model = net().eval()
    assert resolve_objective(metric="test_streaming:batch_accuracy").score(model, split) == pytest.approx(
        evaluate(model, data.source("val")))
    with pytest.raises(MetricError, match=r"streamed .*split\.batches\(\)"):
        resolve_objective(metric="test_streaming:whole_split_accuracy").score(model, split)


# -- (c) auto decides by size; what cannot stream is said ---------------------------------------------
def test_auto_streams_only_data_larger_than_the_threshold():
    train, val, test = splits()
    size_mb = 4 * np.prod(SHAPE) * 360 / 2**20  # float32, all three splits: ~0.09 MiB
    small = dataset_from_splits(train, val, test, max_resident_mb=size_mb * 2)  # auto by default
    assert isinstance(small, Dataset) and train.total == len(train)  # read whole, once (sample 0 not twice)
    train.reads.clear()
    large = dataset_from_splits(train, val, test, max_resident_mb=size_mb / 2, num_classes=CLASSES)
    assert isinstance(large, StreamedDataset) and train.total == 1
    assert large.size_mb == pytest.approx(size_mb)
    assert isinstance(dataset_from_splits(train, val, test, streaming=False, max_resident_mb=1e-9), Dataset)
    # the config's default threshold is the data layer's
    assert DataConfig().streaming == "auto" and DataConfig().max_resident_mb == DEFAULT_MAX_RESIDENT_MB


def test_a_data_factory_streams_by_the_config(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("RAYPRUNE_TEST_NPY", str(write_npy(tmp_path)))
    data = load_dataset("test_streaming:npy_factory", streaming="auto", max_resident_mb=1e-3)
    assert isinstance(data, StreamedDataset) and isinstance(data.train, NpyImages)
    assert (len(data.train), len(data.val), len(data.test)) == (240, 60, 60) and data.class_names == tuple("abcd")
    assert isinstance(load_dataset("test_streaming:npy_factory"), Dataset)  # 0.09 MiB: resident by default
    cfg = parse_config({"data": {"name": "test_streaming:npy_factory", "streaming": True, "num_workers": 1}})
    from_config = configured_dataset(cfg)
    assert isinstance(from_config, StreamedDataset) and from_config.num_workers == 1


def test_streaming_true_refuses_what_cannot_stream():
    train, val, test = splits()
    x, y = images(50)
    with pytest.raises(UserError, match="no split of 'user' is a torch Dataset"):
        dataset_from_splits((x, y), streaming=True)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(zip(x, y))

    with pytest.raises(UserError, match="without random access"):
        dataset_from_splits(Stream(), streaming=True)
    assert isinstance(dataset_from_splits(Stream(), max_resident_mb=1e-9), Dataset)  # auto: read whole
    with pytest.raises(UserError, match="dataset 'digits' is read into tensors"):
        load_dataset("digits", streaming=True)
    with pytest.raises(UserError, match="normalise=True"):
        dataset_from_splits(train, val, test, streaming=True, normalise=True, num_classes=CLASSES)
    with pytest.raises(UserError, match="'streaming'"):
        dataset_from_splits(train, streaming="sometimes")


def test_a_streamed_classification_needs_its_class_count_without_reading_every_label():
    train, val, test = splits()
    with pytest.raises(UserError, match="number of classes up front.*num_classes.*targets"):
        dataset_from_splits(train, val, test, streaming=True)
    assert train.total == 1  # refused after sample 0, not after a pass over the data
    labelled = splits(targets=True)  # a `targets` attribute, as torchvision datasets have: enough
    assert dataset_from_splits(*labelled, streaming=True).num_classes == CLASSES
    with pytest.raises(UserError, match="Labels must be < num_classes=3"):
        dataset_from_splits(*labelled, streaming=True, num_classes=3)


def test_missing_splits_are_carved_as_the_resident_path_carves_them():
    x, y = images(300)
    full = Counting(x, y, targets=True)  # labels known: stratified like the resident path
    resident = dataset_from_splits(full, seed=5)
    streamed = dataset_from_splits(full, seed=5, streaming=True)
    for split in ("train", "val", "test"):
        part = getattr(streamed, split)
        assert isinstance(part, torch.utils.data.Subset)
        assert torch.equal(torch.stack([part[i][0] for i in range(len(part))]), getattr(resident, f"x_{split}"))
    # labels unknown: a seeded random split of the same sizes, disjoint, the same for the same seed
    plain = Counting(x, y)
    a, b = (dataset_from_splits(plain, seed=5, streaming=True, num_classes=CLASSES) for _ in range(2))
    index = {s: set(getattr(a, s).indices) for s in ("train", "val", "test")}
    assert [len(v) for v in index.values()] == [len(resident.y_train), len(resident.y_val), len(resident.y_test)]
    assert not (index["train"] & index["val"] or index["train"] & index["test"] or index["val"] & index["test"])
    assert getattr(b, "val").indices == getattr(a, "val").indices
    capped = dataset_from_splits(full, seed=5, streaming=True, max_samples=100)
    assert len(capped.train) + len(capped.val) + len(capped.test) == 100


# -- the problem: eval_samples, shipping to actors, the neon agent -----------------------------------
def streamed_problem(data, **sections) -> PruningProblem:
    model = net().eval()
    cfg = build_config(model=model, data=data, budgets={"params": 0.5}, device="cpu", sections=sections)
    return PruningProblem.from_parts(cfg, data, model, {"source": "in-memory"}, device=torch.device("cpu"))


def test_eval_samples_score_a_fixed_seeded_subset_of_a_streamed_split():
    train, val, test = splits(n_val=200)
    data = dataset_from_splits(train, val, test, streaming=True, num_classes=CLASSES)
    problem = streamed_problem(data)
    assert set(problem.base_accuracy) == {"val", "test"}
    model = net(seed=1).eval()
    val.reads.clear()
    first = problem.accuracy(model, "val", 50)
    picked = set(val.reads)
    assert val.total == 50 and picked != set(range(50))  # a random subset, not the first 50 of the Dataset
    assert problem.accuracy(model, "val", 50) == first and set(val.reads) == picked  # the same every call
    val.reads.clear()
    problem.accuracy(model, "val")
    assert val.total == 200


def test_shipping_a_streamed_problem_sends_the_datasets_not_tensors(tmp_path):
    paths = write_npy(tmp_path)
    parts = [NpyImages(paths / f"x_{s}.npy", paths / f"y_{s}.npy") for s in ("train", "val", "test")]
    data = dataset_from_splits(*parts, streaming=True, num_classes=CLASSES)
    problem = streamed_problem(data)
    shared = problem.shareable()
    payload = cloudpickle.dumps(shared["data"])
    assert len(payload) < 4096 < sum((paths / f"x_{s}.npy").stat().st_size for s in ("train", "val", "test"))
    again = PruningProblem.from_shared(pickle.loads(cloudpickle.dumps(shared)), device="cpu")
    assert isinstance(again.data, StreamedDataset) and again.data.train.reads == 0
    assert again.base_accuracy == problem.base_accuracy
    assert again.accuracy(again.base_model, "val") == problem.base_accuracy["val"]


def test_a_dataset_that_cannot_be_pickled_is_refused_when_shipped_naming_its_class():
    x, y = images(120)
    data = dataset_from_splits(Unpicklable(x[:80], y[:80]), Unpicklable(x[80:100], y[80:100]),
                               Unpicklable(x[100:], y[100:]), streaming=True, num_classes=CLASSES)
    problem = streamed_problem(data)  # usable in this process
    with pytest.raises(UserTypeError, match=r"train split .*test_streaming\.Unpicklable.*cannot be pickled.*"
                                            r"file paths.*data\.streaming: false"):
        problem.shareable()


def test_the_neon_agent_refuses_streamed_data_before_anything_runs(monkeypatch, tmp_path):
    data = dataset_from_splits(*splits(), streaming=True, num_classes=CLASSES)
    with pytest.raises(UserError, match="neon agent needs the data as tensors.*data.streaming: false"):
        streamed_problem(data, search={"agent": "neon"})
    # `rayprune prune --agent neon` (the agent given outside the config): refused before the base model trains
    from rayprune.search.prune import run_prune

    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("RAYPRUNE_TEST_NPY", str(write_npy(tmp_path / "npy")))
    monkeypatch.setenv("RAYPRUNE_CACHE", str(tmp_path / "cache"))
    cfg = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "test_streaming:npy_factory",
                                                                "streaming": True, "device": "cpu"}})
    with pytest.raises(UserError, match="neon agent needs the data as tensors"):
        run_prune(cfg, tmp_path / "out", agent="neon", progress=False, log=lambda m: None)
    assert not (tmp_path / "cache").exists()  # no base model was trained


# -- DataLoader details ------------------------------------------------------------------------------
def test_worker_processes_persist_between_reads_and_give_the_same_batches():
    train, val, test = splits()
    one = dataset_from_splits(train, val, test, streaming=True, num_classes=CLASSES)
    two = dataset_from_splits(train, val, test, streaming=True, num_classes=CLASSES, num_workers=2)
    model = net().eval()
    source = two.source("val")
    assert evaluate(model, source) == evaluate(model, source) == evaluate(model, one.source("val"))
    assert len(source._loaders) == 1  # one DataLoader, its workers kept for the next candidate
    a, b = net(), net()
    fine_tune(a, one, FT, seed=1)
    fine_tune(b, two, FT, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_reading_streamed_data_leaves_the_global_rng_alone():
    data = dataset_from_splits(*splits(), streaming=True, num_classes=CLASSES, augment="crop")
    state = torch.random.get_rng_state()
    evaluate(net().eval(), data.source("val"))
    list(data.source("train").batches(32, shuffle=True, augment=None))
    assert torch.equal(torch.random.get_rng_state(), state)


# -- (d) end to end, on Ray --------------------------------------------------------------------------
SMALL = {
    "search": {"batch_size": 8, "rerank": {"top_k": 2}, "eval_samples": 40,
               "finetune": {"iterations": 5, "batch_size": 32}, "final_finetune": {"iterations": 20, "batch_size": 32}},
    "evaluation": {"evaluators": 2, "cpus": 0.75},
    "device": "cpu",
}


@pytest.mark.slow
def test_prune_on_streamed_data_end_to_end(ray_session, tmp_path):
    import rayprune

    paths = write_npy(tmp_path / "data")
    parts = {s: NpyImages(paths / f"x_{s}.npy", paths / f"y_{s}.npy") for s in ("train", "val", "test")}
    model = net()
    fine_tune(model, dataset_from_splits(*parts.values(), streaming=False), FineTuneConfig(iterations=120, lr=0.05))
    model.eval()
    base_params = sum(p.numel() for p in model.parameters())
    result = rayprune.prune(model, {**parts, "num_classes": CLASSES}, budgets={"params": 0.5}, evaluations=16,
                            out=tmp_path / "run", progress=False, log=None, config={"data": {"streaming": True}},
                            **SMALL)
    assert result.feasible and sum(p.numel() for p in result.model.parameters()) <= 0.5 * base_params
    assert (result.candidates["stage"] == "search").sum() == 16
    assert (result.candidates["status"] == "ok").all()
    assert result.summary["pruned"]["accuracy_val"] > 0.5  # scored on the streamed val split in the actors


# -- helpers -----------------------------------------------------------------------------------------
def write_npy(folder: Path) -> Path:
    """The images of :func:`splits` as float32 .npy files, one pair per split."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, part in zip(("train", "val", "test"), splits()):
        np.save(folder / f"x_{split}.npy", part.x.numpy())
        np.save(folder / f"y_{split}.npy", part.y.numpy())
    return folder


def npy_factory():
    """A data factory (``data.name: test_streaming:npy_factory``) returning Datasets of files."""
    folder = Path(os.environ["RAYPRUNE_TEST_NPY"])
    parts = {s: NpyImages(folder / f"x_{s}.npy", folder / f"y_{s}.npy") for s in ("train", "val", "test")}
    return {**parts, "class_names": list("abcd")}
