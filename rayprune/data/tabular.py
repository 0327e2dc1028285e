"""Readers for tabular classification data: a user's CSV/Parquet file or a scikit-learn bundled set.

Both return a :class:`Table` of raw features and integer labels; scaling happens later, on train
statistics only, when the :class:`~rayprune.data.Dataset` is built. Non-numeric feature columns are
one-hot encoded (``pandas.get_dummies``) over the whole file, so every split shares the same
columns. Missing values are an error, not silently imputed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "SKLEARN_DATASETS",
    "TABLE_READERS",
    "Table",
    "encode_labels",
    "load_sklearn_table",
    "read_table",
    "table_from_frame",
]


class Table(NamedTuple):
    """Tabular classification data: float64 features (N×F), labels 0..K−1 and their names."""

    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]


TABLE_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": pd.read_csv,
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
}
"""File suffix → reader; ``.csv`` may carry a compression suffix (``data.csv.gz``)."""

_COMPRESSION_SUFFIXES = frozenset({".gz", ".bz2", ".xz", ".zip", ".zst"})


def read_table(path: str | Path, label: str = "label") -> Table:
    """Read a CSV or Parquet file (chosen by suffix) whose column ``label`` holds the class.

    Example:
        >>> table = read_table("patients.csv", label="outcome")  # doctest: +SKIP
        >>> table.features.shape, table.class_names  # doctest: +SKIP
        ((1200, 14), ('died', 'survived'))
    """
    path = Path(path).expanduser()
    suffix = _format_suffix(path)
    if suffix not in TABLE_READERS:
        raise ValueError(
            f"'path' must end in one of {sorted(TABLE_READERS)} (CSV may add a compression "
            f"suffix such as .gz); got '{path.name}'."
        )
    if not path.is_file():
        raise FileNotFoundError(f"'path' must be an existing file; got '{path}'.")
    return table_from_frame(TABLE_READERS[suffix](path), label)


def table_from_frame(frame: pd.DataFrame, label: str = "label") -> Table:
    """Split a DataFrame into one-hot-encoded float features and integer-coded labels.

    Example:
        >>> frame = pd.DataFrame({"size": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"],
        ...                       "label": ["cat", "dog", "cat"]})
        >>> table = table_from_frame(frame)
        >>> table.feature_names, table.labels.tolist(), table.class_names
        (('size', 'colour_blue', 'colour_red'), [0, 1, 0], ('cat', 'dog'))
    """
    if label not in frame.columns:
        raise ValueError(
            f"The label column {label!r} (set by 'label') is not in the table; its columns are "
            f"{[str(c) for c in frame.columns]}."
        )
    features = frame.drop(columns=[label])
    if features.shape[1] == 0:
        raise ValueError(f"The table has no feature columns besides the label column {label!r}.")
    _reject_missing(frame)
    labels, class_names = encode_labels(frame[label].to_numpy())
    encoded = _one_hot(features)
    return Table(
        features=encoded.to_numpy(dtype=np.float64),
        labels=labels,
        class_names=class_names,
        feature_names=tuple(str(c) for c in encoded.columns),
    )


def encode_labels(values: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map arbitrary class values to ``0..K−1`` in sorted order, keeping their names.

    Numeric labels sort numerically, anything else by its text.

    Example:
        >>> codes, names = encode_labels(np.array(["b", "a", "b"], dtype=object))
        >>> codes.tolist(), names
        ([1, 0, 1], ('a', 'b'))
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
        values = values.astype(str)
    classes, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), tuple(str(c) for c in classes)


def _sklearn_loader(loader_name: str) -> Callable[[], Table]:
    def load() -> Table:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        return Table(
            features=np.asarray(bunch.data, dtype=np.float64),
            labels=np.asarray(bunch.target, dtype=np.int64),
            class_names=tuple(str(name) for name in bunch.target_names),
            feature_names=tuple(str(name) for name in bunch.feature_names),
        )

    load.__doc__ = f"scikit-learn's bundled ``{loader_name}()`` as a :class:`Table`."
    return load


SKLEARN_DATASETS: dict[str, Callable[[], Table]] = {
    "iris": _sklearn_loader("load_iris"),
    "wine": _sklearn_loader("load_wine"),
    "breast_cancer": _sklearn_loader("load_breast_cancer"),
    "digits": _sklearn_loader("load_digits"),
}
"""scikit-learn classification sets that ship with the package (never downloaded)."""


def load_sklearn_table(name: str) -> Table:
    """One of scikit-learn's bundled classification sets (iris, wine, breast_cancer, digits).

    Example:
        >>> table = load_sklearn_table("wine")
        >>> table.features.shape, len(table.class_names)
        ((178, 13), 3)
    """
    if name not in SKLEARN_DATASETS:
        raise ValueError(
            f"The scikit-learn dataset name must be one of {sorted(SKLEARN_DATASETS)}; "
            f"got {name!r}."
        )
    return SKLEARN_DATASETS[name]()


def _format_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSION_SUFFIXES:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def _reject_missing(frame: pd.DataFrame) -> None:
    missing = frame.isna().sum()
    missing = missing[missing > 0]
    if len(missing):
        counts = ", ".join(f"{column!s}: {count}" for column, count in missing.items())
        raise ValueError(
            "The table has missing values (rows with missing values per column: "
            f"{counts}); rayprune does not impute, so fill or drop them first."
        )


def _one_hot(features: pd.DataFrame) -> pd.DataFrame:
    """Booleans become 0/1; other non-numeric columns become one 0/1 column per value."""
    booleans = [c for c in features.columns if pd.api.types.is_bool_dtype(features[c])]
    features = features.astype({c: np.float64 for c in booleans})
    categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if not categorical:
        return features
    return pd.get_dummies(features, columns=categorical, dtype=np.float64)
