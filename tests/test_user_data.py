"""A user's own data: from memory (rayprune.data.convert), a factory, an image folder and an .npz file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rayprune.config import parse_config
from rayprune.data import DataFactoryError, dataset_from_splits, load_dataset
from rayprune.errors import UserError


def _arrays(n: int = 60, shape: tuple[int, ...] = (4,), classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), np.arange(n) % classes


class CountingDataset(torch.utils.data.Dataset):
    """A map-style dataset that records every index read."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.reads = x, y, []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.reads.append(i)
        return self.x[i], self.y[i]


# ----------------------------------------------------------------------------- in memory


def test_a_torch_dataset_is_read_once_in_order() -> None:
    x, y = torch.randn(30, 1, 5, 5), torch.arange(30) % 3
    train, test = CountingDataset(x, y), CountingDataset(x[:9], y[:9])
    data = dataset_from_splits(train, test=test, seed=0)
    assert train.reads == list(range(30)) and test.reads == list(range(9))
    assert data.kind == "image" and data.input_shape == (1, 5, 5) and data.num_classes == 3
    assert len(data.y_train) + len(data.y_val) == 30 and torch.equal(data.x_test, x[:9])


def test_an_iterable_dataset_is_read_once() -> None:
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(1500):  # more than the 1024 samples allocated for a stream of unknown length
                yield np.full(2, i, dtype=np.float64), i % 2

    data = dataset_from_splits(Stream(), seed=0)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1500
    assert sorted(data.x_train[:, 0].tolist() + data.x_val[:, 0].tolist() + data.x_test[:, 0].tolist()) == list(
        range(1500)
    )


def test_tensors_and_numpy_give_the_same_dataset_and_values_stay_as_given() -> None:
    x, y = _arrays(shape=(6, 6))  # (H, W) samples: images with a channel added
    from_numpy = dataset_from_splits((x, y.astype(np.int32)), seed=3)
    from_torch = dataset_from_splits((torch.from_numpy(x), torch.from_numpy(y)), seed=3)
    assert from_numpy.kind == "image" and from_numpy.input_shape == (1, 6, 6)
    for field in ("x_train", "y_val", "x_test"):
        assert torch.equal(getattr(from_numpy, field), getattr(from_torch, field))
    assert from_numpy.y_train.dtype == torch.int64 and from_numpy.mean is None
    # normalise=False by default: every value is one of the caller's, unchanged.
    assert set(from_numpy.x_train.flatten().tolist()) <= set(x.flatten().tolist())


def test_the_dataset_never_shares_memory_with_the_caller() -> None:
    x, y = _arrays()
    data = dataset_from_splits((x, y), (x[:5], y[:5]), (x[:5], y[:5]))
    data.x_train.add_(1.0)
    data.y_train.add_(1)
    assert np.array_equal(x, _arrays()[0]) and np.array_equal(y, _arrays()[1])


def test_inferred_splits_are_disjoint_and_reproducible_by_seed() -> None:
    x = np.arange(200, dtype=np.float32).reshape(200, 1)  # each sample carries its own index
    y = np.arange(200) % 4

    def ids(data):
        return [set(data.x_train[:, 0].tolist()), set(data.x_val[:, 0].tolist()), set(data.x_test[:, 0].tolist())]

    first, again, other = (ids(dataset_from_splits((x, y), seed=s)) for s in (5, 5, 6))
    train, val, test = first
    assert not (train & val or train & test or val & test) and len(train | val | test) == 200
    assert (len(train), len(val), len(test)) == (140, 20, 40)
    assert first == again and first != other


def test_a_given_val_split_is_kept_and_test_is_carved_from_train() -> None:
    x, y = _arrays(100)
    data = dataset_from_splits((x, y), val=(x[:7], y[:7]), test_fraction=0.25, seed=0)
    assert torch.equal(data.x_val, torch.from_numpy(x[:7]))
    assert (len(data.y_train), len(data.y_test)) == (75, 25)


def test_normalise_true_does_what_the_built_in_sets_do() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(40, 3, 4, 4), dtype=np.uint8)
    data = dataset_from_splits((images, np.arange(40) % 2), normalise=True, seed=0)
    assert data.mean is not None and all(0 < m < 1 for m in data.mean)  # uint8 scaled to [0, 1] first
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std()) - 1) < 0.05
    features, labels = _arrays(50)
    table = dataset_from_splits((features * 10 + 3, labels), normalise=True, seed=0)
    assert float(table.x_train.min()) == 0.0 and float(table.x_train.max()) == 1.0


def test_labels_integral_floats_and_num_classes() -> None:
    x, y = _arrays(30)
    data = dataset_from_splits((x, y.astype(np.float64)), num_classes=5, class_names=None)
    assert data.num_classes == 5 and data.y_train.dtype == torch.int64
    named = dataset_from_splits((x, y), class_names=["a", "b", "c", "d"])
    assert named.num_classes == 4 and named.class_names == ("a", "b", "c", "d")


def test_text_labels_are_coded_alike_in_every_split_sorted_or_by_class_names() -> None:
    """Text labels were refused in memory ("must hold integer class indices; got dtype <U4") while the CSV reader
    took them: they are coded the same in every split, sorted (LabelEncoder's order) or by class_names."""
    import pandas as pd

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    train = (x, np.array(["low", "mid", "high", "low", "mid", "high"]))
    val = (x[:3], ["high", "high", "low"])  # a list
    test = (pd.DataFrame(x[:2], columns=["a", "b"]), pd.Series(["mid", "low"]))  # pandas: object dtype
    data = dataset_from_splits(train, val, test)
    assert data.class_names == ("high", "low", "mid") and data.num_classes == 3
    assert data.y_train.tolist() == [1, 2, 0, 1, 2, 0] and data.y_val.tolist() == [0, 0, 1]
    assert data.y_test.tolist() == [2, 1]
    ordered = dataset_from_splits(train, val, test, class_names=["low", "mid", "high", "extra"])
    assert ordered.class_names == ("low", "mid", "high", "extra") and ordered.num_classes == 4
    assert ordered.y_train.tolist() == [0, 1, 2, 0, 1, 2] and ordered.y_val.tolist() == [2, 2, 0]
    raw = dataset_from_splits((x, np.array([b"b", b"a"] * 3)), (x[:2], np.array([b"a", b"b"], dtype=object)),
                              (x[:1], ["b"]))  # bytes labels read as text
    assert raw.class_names == ("a", "b") and raw.y_train.tolist() == [1, 0] * 3 and raw.y_val.tolist() == [0, 1]
    with pytest.raises(UserError, match=r"The labels \['mid'\] are not in class_names \['low', 'high'\]"):
        dataset_from_splits(train, val, test, class_names=["low", "high"])
    with pytest.raises(UserError, match=r"\['train'\] have text labels and \['val'\] do not"):
        dataset_from_splits(train, (x[:3], np.array([0, 1, 0])))
    with pytest.raises(UserError, match=r"one class index per sample, shape \(N,\); got shape \(6, 1\)"):
        dataset_from_splits((x, train[1].reshape(6, 1)))  # a column of text labels: the shape error, as for integers


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ((np.zeros((5, 3)), np.zeros(4)), r"Split 'train' .* got 5 samples in x and 4 labels in y"),
        ("pictures/", r"Split 'train' must be an \(x, y\) pair .* got str 'pictures/'"),
        ([{"x": 1, "y": 0}] * 4, r"Split 'train' must be an \(x, y\) pair .* list of length 4 of dict"),
        (([[1.0, 2.0]], [0]), r"The x of split 'train' must be a torch.Tensor or numpy.ndarray; got a list"),
        ((np.zeros((4, 2)), np.array([0, 1, -1, 1])), r"split 'train' must hold class indices >= 0; .* -1"),
        ((np.zeros((4, 2)), np.array([0, 1, 0.5, 1])), r"integer class indices; got 1 non-integral value\(s\): 0.5"),
        ((np.zeros((4, 2)), np.array(["a", 1, "b", 2], dtype=object)), r"integer class indices; got dtype object \(e.g. 'a'\)"),
        ((np.zeros((0, 2)), np.zeros(0)), r"Split 'train' is empty"),
        ((np.zeros((4, 2)), np.eye(4)), r"shape \(N,\); got shape \(4, 4\) \(one-hot"),
        ((np.full((4, 2), np.nan), np.array([0, 1, 0, 1])), r"must be finite; got 8 NaN"),
        ((np.zeros((4, 2)), np.zeros(4)), r"at least 2 classes"),
    ],
)
def test_bad_input_is_a_user_error_saying_what_was_expected(train, message) -> None:
    with pytest.raises(UserError, match=message):
        dataset_from_splits(train)


def test_splits_with_different_sample_shapes_are_refused() -> None:
    x, y = _arrays(20, shape=(3, 8, 8))
    with pytest.raises(UserError, match=r"one shape; got train \(3, 8, 8\), test \(3, 9, 9\)"):
        dataset_from_splits((x, y), test=(np.zeros((4, 3, 9, 9)), y[:4]))


def test_an_empty_given_split_names_it() -> None:
    x, y = _arrays(20)
    with pytest.raises(UserError, match="Split 'val' is empty"):
        dataset_from_splits((x, y), val=(x[:0], y[:0]))


def test_labels_beyond_num_classes_are_refused() -> None:
    x, y = _arrays(20, classes=4)
    with pytest.raises(UserError, match=r"Labels must be < num_classes=3; split 'train' has label 3"):
        dataset_from_splits((x, y), num_classes=3)


# ----------------------------------------------------------------------------- a factory


def _write_module(tmp_path: Path, monkeypatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_factory_named_in_load_dataset_gets_the_seed_and_its_data_as_given(tmp_path, monkeypatch) -> None:
    _write_module(tmp_path, monkeypatch, "my_data_a", """
        import numpy as np
        SEEDS = []
        def splits(seed):
            SEEDS.append(seed)
            x = np.arange(80, dtype=np.float32).reshape(40, 2) * 100
            y = np.arange(40) % 2
            return {"train": (x[:30], y[:30]), "test": (x[30:], y[30:]), "class_names": ["no", "yes"]}
    """)
    data = load_dataset("my_data_a:splits", seed=7, val_fraction=0.2)
    import my_data_a

    assert my_data_a.SEEDS == [7]
    assert data.name == "my_data_a:splits" and data.class_names == ("no", "yes")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (24, 6, 10)
    assert float(data.x_test.max()) == 7900.0  # not normalised


def test_a_factory_may_return_a_tuple_and_errors_name_it(tmp_path, monkeypatch) -> None:
    _write_module(tmp_path, monkeypatch, "my_data_b", """
        import numpy as np
        def pair():
            x, y = np.zeros((20, 3)), np.arange(20) % 2
            return (x, y), (x[:4], y[:4]), (x[:4], y[:4])
        def mismatched():
            return {"train": (np.zeros((5, 3)), np.zeros(4))}
        def extra():
            return {"train": (np.zeros((5, 3)), np.zeros(5)), "validation": None}
        def broken():
            raise KeyError("features.csv")
    """)
    data = load_dataset("my_data_b:pair")
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (20, 4, 4)
    with pytest.raises(UserError, match=r"'my_data_b:mismatched'.*5 samples in x and 4 labels"):
        load_dataset("my_data_b:mismatched")
    with pytest.raises(UserError, match=r"'my_data_b:extra'.*unknown key\(s\) \['validation'\]"):
        load_dataset("my_data_b:extra")
    with pytest.raises(DataFactoryError, match=r"'my_data_b:broken' raised KeyError"):
        load_dataset("my_data_b:broken")
    with pytest.raises(ImportError, match="'my_data_b:missing'"):
        load_dataset("my_data_b:missing")
    with pytest.raises(ValueError, match="'path' does not apply to dataset 'my_data_b:pair'"):
        load_dataset("my_data_b:pair", path="x.npz")


def test_a_misspelt_sklearn_name_stays_an_unknown_name() -> None:
    with pytest.raises(UserError, match="data.name must be one of .*sklearn:wine"):
        load_dataset("sklearn:wines")


# ----------------------------------------------------------------------------- an image folder


def _write_images(folder: Path, classes: dict[str, int], *, size=(6, 5), mode="RGB", seed=0) -> None:
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / name / f"{i}.png")


def test_an_image_folder_is_read_with_sorted_classes_and_corrupt_files_skipped(tmp_path) -> None:
    _write_images(tmp_path, {"zebra": 10, "cat": 10, "dog": 10})
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png at all")
    good = (tmp_path / "cat" / "0.png").read_bytes()
    (tmp_path / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match=r"Skipped 2 file\(s\).*cat/truncated.png, dog/broken.png"):
        data = load_dataset("imagefolder", root=tmp_path, seed=0)
    assert data.class_names == ("cat", "dog", "zebra") and data.input_shape == (3, 5, 6)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 30
    assert data.summary()["skipped_files"] == 2 and data.augment == "crop"
    assert abs(float(data.x_train.mean())) < 1e-4  # normalised like the built-in sets
    from rayprune.data import preprocessing_of  # spec.json says which output is which class

    assert preprocessing_of(data)["class_names"] == ["cat", "dog", "zebra"]


def test_an_image_folder_with_train_and_test_and_mixed_sizes(tmp_path) -> None:
    _write_images(tmp_path / "train", {"a": 8, "b": 8}, size=(7, 7), mode="L")
    _write_images(tmp_path / "train", {"a": 2}, size=(9, 4), mode="L", seed=1)  # overwrites 0.png, 1.png
    _write_images(tmp_path / "test", {"a": 3, "b": 3}, size=(7, 7), mode="L", seed=2)
    with pytest.raises(UserError, match=r"2 different sizes \(7x7, 9x4\); set 'image_size'"):
        load_dataset("imagefolder", root=tmp_path)
    data = load_dataset("imagefolder", root=tmp_path, image_size=4, val_fraction=0.25)
    assert data.input_shape == (1, 4, 4) and data.class_names == ("a", "b")  # all grayscale: L
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (12, 4, 6)


def test_a_checkpoint_scored_on_splits_carved_from_its_image_folder_or_npz_is_warned_about(tmp_path) -> None:
    """Only a CSV's carved rows were warned about: a model trained elsewhere on a whole image folder (or .npz) had
    its validation and test accuracy measured partly on its own training images, silently."""
    from rayprune.problem import warn_if_carved

    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")

    def warnings_for(name: str, path: Path) -> list[str]:
        key = "root" if name == "imagefolder" else "path"
        cfg = parse_config({"data": {"name": name, key: str(path)}, "model": {"name": "mlp", "checkpoint": str(ckpt)}})
        logs: list[str] = []
        warn_if_carved(cfg, load_dataset(name, **{key: path}), logs.append)
        return logs

    _write_images(tmp_path / "flat", {"a": 8, "b": 8})  # class folders only: val and test carved
    [log] = warnings_for("imagefolder", tmp_path / "flat")
    assert "split the val and test images off" in log and "train/, val/ and test/ sub-folders" in log
    _write_images(tmp_path / "split" / "train", {"a": 8, "b": 8})
    _write_images(tmp_path / "split" / "test", {"a": 3, "b": 3}, seed=1)  # no val/: val carved from train/
    [log] = warnings_for("imagefolder", tmp_path / "split")
    assert "split the val images off" in log and "(the val one is missing)" in log
    _write_images(tmp_path / "split" / "val", {"a": 3, "b": 3}, seed=2)
    assert warnings_for("imagefolder", tmp_path / "split") == []  # every split the user's own

    x, y = _arrays(40)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    [log] = warnings_for("npz", tmp_path / "xy.npz")
    assert "split the val and test rows off" in log and "x_val/y_val and x_test/y_test arrays" in log
    np.savez(tmp_path / "held.npz", x_train=x[:30], y_train=y[:30], x_val=x[30:35], y_val=y[30:35],
             x_test=x[35:], y_test=y[35:])
    assert warnings_for("npz", tmp_path / "held.npz") == []


def test_an_image_folder_without_class_folders_or_images_is_refused(tmp_path) -> None:
    with pytest.raises(UserError, match="must hold one sub-folder per class; .* has no sub-folders"):
        load_dataset("imagefolder", root=tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match=r"No readable image under .*: 1 file\(s\) in 1 class folder"):
        load_dataset("imagefolder", root=tmp_path)
    _write_images(tmp_path, {"dog": 6})
    (tmp_path / "ghost").mkdir()  # an empty class folder: a 3rd output no image teaches (was accepted silently)
    with pytest.raises(UserError, match=r"Class folder\(s\) 'cat', 'ghost' under .* hold no readable image"):
        load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(NotADirectoryError, match="'root' of dataset 'imagefolder'"):
        load_dataset("imagefolder", root=tmp_path / "nowhere")
    with pytest.raises(UserError, match="'root' is required"):
        load_dataset("imagefolder")


# ----------------------------------------------------------------------------- an .npz file


def test_npz_with_official_splits_channels_last(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(30, 8, 8, 3), dtype=np.uint8)  # N×H×W×C
    y = np.arange(30) % 3
    np.savez(tmp_path / "d.npz", x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    data = load_dataset("npz", path=tmp_path / "d.npz", val_fraction=0.2, seed=0)
    assert data.input_shape == (3, 8, 8) and data.kind == "image" and data.num_classes == 3
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (16, 4, 10)
    assert data.mean is not None


def test_npz_with_x_and_y_is_split(tmp_path) -> None:
    x, y = _arrays(50)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    data = load_dataset("npz", path=tmp_path / "t.npz")
    assert data.kind == "tabular" and (len(data.y_train), len(data.y_val), len(data.y_test)) == (35, 5, 10)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((4, 2))}, r"missing \['y_train'\]"),
        ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2, "x_test": np.zeros((2, 2))}, r"missing \['y_test'\]"),
        ({"x": np.zeros((4, 2)), "y": np.arange(4) % 2, "labels": np.arange(4)}, r"unknown \['labels'\]"),
        ({"x": np.zeros((4, 2)), "y": np.arange(4), "x_test": np.zeros((4, 2))}, "not both"),
        ({"x_train": np.zeros((4, 2)), "y_train": np.arange(3)}, "4 samples in x and 3 labels"),
    ],
)
def test_npz_errors_name_the_file_and_keys(tmp_path, arrays, message) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message) as error:
        load_dataset("npz", path=tmp_path / "bad.npz")
    assert "bad.npz" in str(error.value)


def test_npz_that_is_not_an_archive(tmp_path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="Cannot read .*junk.npz"):
        load_dataset("npz", path=tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="data.path of dataset 'npz'"):
        load_dataset("npz", path=tmp_path / "none.npz")


# ----------------------------------------------------------------------------- through a config


def test_a_config_reaches_the_user_sources_through_the_problem_call(tmp_path, monkeypatch) -> None:
    import rayprune.problem

    class Loaded(Exception):
        pass

    def stop(cfg, data, **kwargs):  # the data PruningProblem.from_config loaded, before any training
        raise Loaded(data)

    monkeypatch.setattr(rayprune.problem, "obtain_base_model", stop)
    _write_images(tmp_path / "imgs", {"a": 6, "b": 6}, size=(5, 5))
    _write_images(tmp_path / "imgs", {"b": 1}, size=(3, 8), seed=1)
    cfg = parse_config({"data": {"name": "imagefolder", "root": str(tmp_path / "imgs"), "image_size": 6,
                                 "device": "cpu"}})
    with pytest.raises(Loaded) as loaded:
        rayprune.problem.PruningProblem.from_config(cfg)
    data = loaded.value.args[0]
    assert data.input_shape == (3, 6, 6) and data.num_classes == 2 and len(data.y_test) > 0
    with pytest.raises(ValueError, match="image_size"):
        parse_config({"data": {"name": "imagefolder", "image_size": 0}})


def test_a_pandas_frame_and_series_are_an_x_y_pair() -> None:
    """A tabular user's features are a DataFrame: refused before, as "got a pandas.DataFrame"."""
    import pandas as pd

    from rayprune.api import _as_dataset, build_config

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=90), "b": rng.normal(size=90), "flag": rng.normal(size=90) > 0})
    labels = pd.Series(np.arange(90) % 3)
    data = dataset_from_splits((frame, labels), (frame, labels), (frame, labels))
    assert data.input_shape == (3,) and data.num_classes == 3
    assert np.allclose(data.x_train.numpy(), frame.to_numpy(dtype=np.float32))  # columns in order, as given
    target = pd.Series(rng.normal(size=90))
    assert dataset_from_splits((frame, target), None, None, task="regression").y_train.dtype == torch.float32
    one = _as_dataset((frame, labels), build_config())  # one (x, y) pair through the API, not (train, val)
    assert len(one.y_train) + len(one.y_val) + len(one.y_test) == 90
    with pytest.raises(UserError, match=r"non-numeric columns \['town'\]; encode them .* pandas.get_dummies"):
        dataset_from_splits((frame.assign(town="north"), labels), None, None)
    with pytest.raises(UserError, match=r"is a pandas.DataFrame; pass it as an \(x, y\) pair"):
        dataset_from_splits(frame.assign(label=labels), None, None)


def test_splits_of_two_input_dtypes_are_refused() -> None:
    """int64 token ids in train and float32 in test: the model would be fed one dtype in search, another in test."""
    from rayprune.data import Dataset

    x, y = torch.ones(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(UserError, match="Every split's x must have the same dtype; got train: torch.int64"):
        Dataset("mixed", "tabular", x.long(), y, x.long(), y, x, y, num_classes=2, input_shape=(3,))


def test_real_valued_2d_targets_without_task_regression_are_told_about_the_task():
    """(N, 3) float targets without task='regression' were told to turn one-hot labels into indices."""
    x, y = np.random.default_rng(0).random((40, 4)), np.random.default_rng(1).normal(size=(40, 3))
    with pytest.raises(UserError, match=r"shape \(40, 3\) holding real values.*data.task: regression"):
        dataset_from_splits((x, y))
    with pytest.raises(UserError, match="one-hot labels must be turned into indices"):
        dataset_from_splits((x, np.eye(3)[np.arange(40) % 3]))


def test_a_regressions_targets_are_named_from_python_or_from_a_pandas_y(tmp_path, monkeypatch):
    """From Python a regression's outputs could not be named (the CSV path could): spec.json and model.onnx said
    nothing of which output predicts what (a new user's pass, s32); nor the inputs of a DataFrame x (s33)."""
    import pandas as pd

    from rayprune.data.factory import load_factory

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), rng.normal(size=(60, 2))
    assert dataset_from_splits((x, y), task="regression").target_names is None
    named = dataset_from_splits((x, y), task="regression", target_names=["cool", "heat"])
    assert named.target_names == ("cool", "heat") and named.num_classes == 2
    frame = pd.DataFrame(y, columns=["cool", "heat"])
    assert dataset_from_splits((x, frame), task="regression").target_names == ("cool", "heat")
    assert dataset_from_splits((x, frame["heat"]), task="regression").target_names == ("heat",)
    from rayprune.data.datasets import preprocessing_of  # a DataFrame x names the inputs the same way (s33)

    columns = pd.DataFrame(x, columns=["t_in", "t_out", "rh", "wind"])
    for task, target in (("regression", frame), ("classification", np.arange(60) % 3)):
        data = dataset_from_splits((columns, target), task=task)
        assert data.feature_names == ("t_in", "t_out", "rh", "wind"), task
        assert preprocessing_of(data)["feature_names"] == ["t_in", "t_out", "rh", "wind"]
        assert "one-hot" not in " ".join(preprocessing_of(data)["steps"])
    assert dataset_from_splits((x, y), task="regression").feature_names is None
    with pytest.raises(UserError, match=r"names 1 target\(s\) \['cool'\], but y has 2 value\(s\) per sample"):
        dataset_from_splits((x, y), task="regression", target_names=["cool"])
    assert dataset_from_splits((x, y[:, :1]), task="regression", target_names="price").target_names == ("price",)
    with pytest.raises(UserError, match="must be distinct"):
        dataset_from_splits((x, y), task="regression", target_names=["a", "a"])
    with pytest.raises(UserError, match="a classifier's classes are named by 'class_names'"):
        dataset_from_splits((x, np.arange(60) % 3), target_names=["a"])
    module = tmp_path / "rp_named_factory.py"
    module.write_text("import numpy as np\n"
                      "def data():\n"
                      "    g = np.random.default_rng(0)\n"
                      "    return {'train': (g.normal(size=(60, 4)), g.normal(size=(60, 2))), 'task': 'regression',\n"
                      "            'target_names': ['cool', 'heat']}\n"
                      "def frame():\n"
                      "    import pandas as pd\n"
                      "    g = np.random.default_rng(0)\n"
                      "    return {'train': (pd.DataFrame(g.normal(size=(60, 2)), columns=['a', 'b']), np.arange(60) % 2)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_factory("rp_named_factory:data", task="regression").target_names == ("cool", "heat")
    assert load_factory("rp_named_factory:frame").feature_names == ("a", "b")  # a factory's DataFrame x too


def test_an_npz_of_real_valued_targets_is_a_regression(tmp_path):
    """`data: {name: npz, task: regression}` was refused ('npz holds class labels'): sensor arrays and their
    targets are commonly kept in one .npz."""
    from rayprune.problem import configured_dataset

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 4, 64)).astype(np.float32), rng.normal(size=(200, 3)).astype(np.float32)
    np.savez(tmp_path / "signals.npz", x=x, y=y)
    section = {"name": "npz", "path": str(tmp_path / "signals.npz"), "task": "regression", "device": "cpu"}
    data = configured_dataset(parse_config({"data": section}, source="x"))
    assert (data.task, data.num_classes, data.input_shape) == ("regression", 3, (1, 4, 64))
    assert data.y_train.dtype == torch.float32 and len(data.y_train) + len(data.y_val) + len(data.y_test) == 200
    with pytest.raises(UserError, match="need data.task: regression"):  # without the task: class labels, as before
        configured_dataset(parse_config({"data": {**section, "task": "classification"}}, source="x"))
