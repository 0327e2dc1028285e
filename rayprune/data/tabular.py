"""Readers for tabular data: a user's CSV/Parquet file (classes, or a real-valued target) or a scikit-learn bundled set.

Both return a :class:`Table` of raw features and integer labels; scaling happens later, on train
statistics only, when the :class:`~rayprune.data.Dataset` is built. Non-numeric feature columns are
one-hot encoded (``pandas.get_dummies``) over the whole file, so every split shares the same
columns.

Nothing is silently repaired, because a repaired table trains a model on something other than what
the user meant. These are errors that name the column (and the file, when read from one): missing
or infinite values, a column that is numeric except for a few values (a typo would otherwise be
one-hot encoded into one feature per distinct number), a label with fewer than two classes, and a
file that is empty or holds only a header. A categorical column whose one-hot encoding adds more
than :data:`WIDE_ONE_HOT` features is encoded, with a :class:`UserWarning` naming it.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..errors import UserError

__all__ = [
    "SKLEARN_DATASETS",
    "SKLEARN_REGRESSION",
    "SPLIT_NAMES",
    "TABLE_READERS",
    "WIDE_ONE_HOT",
    "Table",
    "encode_labels",
    "ordered_labels",
    "load_sklearn_table",
    "read_table",
    "table_from_frame",
]


class Table(NamedTuple):
    """Tabular data: float64 features (N×F), labels 0..K−1 and their names (a regression: float64 targets and
    no names), and (from a ``split_column``) each row's split, ``train``/``val``/``test``."""

    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] | None
    feature_names: tuple[str, ...]
    splits: np.ndarray | None = None
    #: a regression's label columns, in the order of ``labels``' columns (output j predicts target_names[j])
    target_names: tuple[str, ...] | None = None
    #: the features one-hot encoded from a text column: ``(feature name, column, value)``, 1.0 where the row's
    #: ``column`` holds ``value``
    one_hot: tuple[tuple[str, str, str], ...] = ()


#: the values a ``split_column`` may hold
SPLIT_NAMES = ("train", "val", "test")


TABLE_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": pd.read_csv,
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
}
"""File suffix → reader; ``.csv`` may carry a compression suffix (``data.csv.gz``)."""

_COMPRESSION_SUFFIXES = frozenset({".gz", ".bz2", ".xz", ".zip", ".zst"})

WIDE_ONE_HOT = 50
"""A categorical column whose one-hot encoding adds more features than this is named in a warning."""

# A text column whose non-numbers are at most this share of its rows is taken for a numeric column
# with typos, not for a category: one-hot encoding it would make one feature per distinct number.
_STRAY_SHARE = 0.1
_SHOWN = 5


def read_table(path: str | Path, label: str | Sequence[str] = "label", *, split_column: str | None = None,
               classes: Sequence[str] | None = None, task: str = "classification",
               drop: Sequence[str] | None = None) -> Table:
    """Read a CSV or Parquet file (chosen by suffix) whose column ``label`` holds the class, or the target
    (``split_column``, ``classes``, ``task``, ``drop``: as in :func:`table_from_frame`).

    Example:
        >>> table = read_table("patients.csv", label="outcome")  # doctest: +SKIP
        >>> table.features.shape, table.class_names  # doctest: +SKIP
        ((1200, 14), ('died', 'survived'))
    """
    path = Path(path).expanduser()
    suffix = _format_suffix(path)
    if suffix not in TABLE_READERS:
        raise UserError(
            f"'path' must end in one of {sorted(TABLE_READERS)} (CSV may add a compression "
            f"suffix such as .gz); got '{path.name}'."
        )
    if not path.is_file():
        raise FileNotFoundError(f"data.path must be an existing file; got '{path}'.")
    kind = "CSV" if suffix == ".csv" else "Parquet"
    try:
        frame = TABLE_READERS[suffix](path)
    except pd.errors.EmptyDataError as err:
        raise UserError(
            f"The table file '{path}' is empty; a {kind} file needs a header naming its columns "
            f"(including the label column {label!r}) and at least one row."
        ) from err
    except (ValueError, OSError) as err:  # ParserError, UnicodeDecodeError, ArrowInvalid, gzip
        raise UserError(
            f"Cannot read '{path}' as a {kind} file (chosen by its suffix): "
            f"{type(err).__name__}: {err}"
        ) from err
    return table_from_frame(frame, label, source=str(path), split_column=split_column, classes=classes, task=task,
                            drop=drop)


def table_from_frame(
    frame: pd.DataFrame, label: str | Sequence[str] = "label", *, source: str | None = None,
    split_column: str | None = None,
    classes: Sequence[str] | None = None, task: str = "classification", drop: Sequence[str] | None = None,
) -> Table:
    """Split a DataFrame into one-hot-encoded float features and integer-coded labels.

    ``source`` (a file name) is only used to say where a problem is in error messages. ``split_column``: a
    column whose values (``train``, ``val``, ``test``) say which split each row belongs to — the user's own
    held-out rows, taken as given and not used as a feature. ``classes``: the labels' order (class ``i`` is
    ``classes[i]``, as the model was trained); by default numeric labels sort numerically and text ones
    alphabetically. ``task="regression"``: the label column is a real-valued target (float64 ``labels``,
    ``class_names`` None); a list of label columns is a regression's several targets (``labels`` N×T, in the list's
    order). ``drop``: columns left out of the features (an id, a timestamp, another target: every
    column but the label and the split column is a feature otherwise).

    Example:
        >>> frame = pd.DataFrame({"size": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"],
        ...                       "label": ["cat", "dog", "cat"]})
        >>> table = table_from_frame(frame)
        >>> table.feature_names, table.labels.tolist(), table.class_names
        (('size', 'colour_blue', 'colour_red'), [0, 1, 0], ('cat', 'dog'))
    """
    where = f"the table '{source}'" if source else "the table"
    labels_named = _label_columns(label, task)
    for name in labels_named:
        if name not in frame.columns:
            raise UserError(
                f"The label column {name!r} (set by 'label') is not in {where}; its columns are "
                f"{[str(c) for c in frame.columns]}."
            )
    if len(labels_named) > 1:
        label = labels_named  # type: ignore[assignment]
    else:
        label = labels_named[0]
    if len(frame) == 0:
        raise UserError(
            f"{_sentence(where)} has a header ({[str(c) for c in frame.columns]}) but no rows."
        )
    missing = [str(c) for c in (drop or ()) if c not in frame.columns]
    if missing:
        raise UserError(f"data.drop names {missing}, not in {where}; its columns are {[str(c) for c in frame.columns]}.")
    dropped_label = set(labels_named) & set(drop or ())
    if dropped_label or (split_column is not None and split_column in (drop or ())):
        raise UserError(f"data.drop names the {'label' if dropped_label else 'split'} column; drop lists the columns "
                        "left out of the features, and the label and split columns never are features.")
    frame = frame.drop(columns=list(drop or ()))
    splits = None
    if split_column is not None:
        splits = _split_values(frame, split_column, labels_named, where)
        frame = frame.drop(columns=[split_column])
    features = frame.drop(columns=labels_named)
    if features.shape[1] == 0:
        raise UserError(
            f"{_sentence(where)} has no feature columns besides the label column"
            f"{'s' if len(labels_named) > 1 else ''} {label!r}."
        )
    _reject_missing(frame, where)
    if task == "regression":
        return _regression_table(frame, features, label, where, classes, splits)
    _reject_continuous_labels(frame[label], label, where)
    labels, class_names = (encode_labels(frame[label].to_numpy()) if classes is None else
                           ordered_labels(frame[label].to_numpy(), classes, label, where))
    counts = np.bincount(labels, minlength=len(class_names))
    if len(class_names) > 20 and (counts == 1).sum() > len(class_names) / 2:  # not a few rare labels among many rows
        raise UserError(
            f"The label column {label!r} of {where} has {len(class_names)} classes in {len(frame)} rows, "
            f"{int((counts == 1).sum())} of them with a single row: that is an identifier or a measurement, not a "
            f"class. Set 'label' to the column that holds the class."
        )
    if len(class_names) < 2:
        raise UserError(
            f"The label column {label!r} of {where} must hold at least 2 classes to classify; "
            f"all {len(frame)} rows are {class_names[0]!r}."
        )
    _reject_stray_text(features, where)
    encoded = _one_hot(features, where)
    _reject_infinite(encoded, where)
    return Table(
        features=encoded.to_numpy(dtype=np.float64),
        labels=labels,
        class_names=class_names,
        feature_names=tuple(str(c) for c in encoded.columns),
        splits=splits,
        one_hot=_one_hot_sources(features, encoded),
    )


def _regression_table(frame: pd.DataFrame, features: pd.DataFrame, label: str | list[str], where: str,
                      classes: Sequence[str] | None, splits: np.ndarray | None) -> Table:
    """A table whose label column is a real-valued target (``data.task: regression``); a list of label columns,
    several targets (``labels`` N×T)."""
    if classes is not None:
        raise UserError("data.classes names class labels; with data.task: regression the label column is a "
                        "real-valued target. Remove data.classes.")
    columns = []
    for name in ([label] if isinstance(label, str) else list(label)):
        column = frame[name]
        target = pd.to_numeric(column, errors="coerce")
        bad = column[target.isna()]
        if len(bad):
            shown = ", ".join(f"{v!r} at row {i}" for i, v in list(bad.items())[:_SHOWN])
            raise UserError(f"The label column {name!r} of {where} must hold numbers for a regression (data.task: "
                            f"regression); {len(bad)} of its {len(column)} values are not: {shown} (rows numbered from "
                            f"0 after the header). Class names need data.task: classification.")
        target = target.to_numpy(dtype=np.float64)
        if not np.isfinite(target).all():
            raise UserError(f"The label column {name!r} of {where} holds infinite values; a regression target must be "
                            "finite.")
        columns.append(target)
    target = columns[0] if isinstance(label, str) else np.stack(columns, axis=1)
    _reject_stray_text(features, where)
    encoded = _one_hot(features, where)
    _reject_infinite(encoded, where)
    return Table(features=encoded.to_numpy(dtype=np.float64), labels=target, class_names=None,  # type: ignore[arg-type]
                 feature_names=tuple(str(c) for c in encoded.columns), splits=splits,
                 target_names=(str(label),) if isinstance(label, str) else tuple(map(str, label)),
                 one_hot=_one_hot_sources(features, encoded))


def _label_columns(label: str | Sequence[str], task: str) -> list[str]:
    """``data.label`` as a list of column names: one for a class or a target, several for a regression's targets.

    >>> _label_columns("price", "regression"), _label_columns(["x", "y"], "regression")
    (['price'], ['x', 'y'])
    >>> _label_columns(["x", "y"], "classification")
    Traceback (most recent call last):
    ...
    rayprune.errors.UserError: data.label names 2 columns (['x', 'y']); several label columns are a regression's targets (data.task: regression); a classification has one label column.
    """
    names = [label] if isinstance(label, str) else [str(c) for c in label]
    if not names:
        raise UserError("data.label is an empty list; name the label column (or, for a regression with several "
                        "targets, its columns).")
    if len(set(names)) != len(names):
        raise UserError(f"data.label names a column more than once: {names}.")
    if len(names) > 1 and task != "regression":
        raise UserError(f"data.label names {len(names)} columns ({names}); several label columns are a regression's "
                        "targets (data.task: regression); a classification has one label column.")
    return names


def _split_values(frame: pd.DataFrame, column: str, label: Sequence[str], where: str) -> np.ndarray:
    """The ``split_column``'s values, checked: each ``train``, ``val`` or ``test``, with some ``train`` rows."""
    if column not in frame.columns:
        raise UserError(f"The split column {column!r} (set by 'split_column') is not in {where}; its columns are "
                        f"{[str(c) for c in frame.columns]}.")
    if column in label:
        raise UserError(f"data.split_column and data.label both name the column {column!r}; the split column says "
                        f"which rows are train/val/test, the label column holds the class.")
    values = frame[column].astype(str).str.strip().str.lower().to_numpy()
    unknown = sorted(set(values) - set(SPLIT_NAMES))
    if unknown:
        rows = [int(i) for i in np.flatnonzero(~np.isin(values, SPLIT_NAMES))[:_SHOWN]]
        raise UserError(f"The split column {column!r} of {where} must hold {', '.join(SPLIT_NAMES)} in every row; got "
                        f"{unknown[:_SHOWN]} (rows {rows}, numbered from 0 after the header).")
    if not (values == "train").any():
        raise UserError(f"The split column {column!r} of {where} has no 'train' rows; the base model's data and "
                        f"every fine-tune need some.")
    return values


def ordered_labels(values: np.ndarray, classes: Sequence[str], label: str, where: str
                   ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices in the order ``classes`` gives (``data.classes``: the order the model was trained with).

    >>> codes, names = ordered_labels(np.array(["low", "high", "mid"], dtype=object), ["low", "mid", "high"], "y", "t")
    >>> codes.tolist(), names
    ([0, 2, 1], ('low', 'mid', 'high'))
    """
    names = tuple(str(c) for c in classes)
    if len(set(names)) != len(names):
        raise UserError(f"data.classes names a class twice: {list(names)}.")
    index = {name: i for i, name in enumerate(names)}
    # a float label 1.0 is named '1.0' where rayprune names classes (spec.json) and '1' as written: either matches
    text = np.array([_label_text(v) if _label_text(v) in index else str(v) for v in values], dtype=object)
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise UserError(f"The label column {label!r} of {where} holds {unknown[:_SHOWN]}"
                        f"{' and more' if len(unknown) > _SHOWN else ''}, which data.classes {list(names)} does not "
                        f"list; list every class, in the order the model was trained with.")
    return np.array([index[t] for t in text], dtype=np.int64), names


def _label_text(value: object) -> str:
    """A label as ``data.classes`` names it: integral numbers without a decimal point (2.0 -> '2')."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _reject_continuous_labels(column: pd.Series, label: str, where: str) -> None:
    """A label column of non-integer numbers is a feature or a real-valued target, not a class."""
    values = column.to_numpy()
    if not np.issubdtype(values.dtype, np.floating):
        return
    fractional = values[np.abs(values - np.round(values)) > 1e-9]
    if len(fractional):
        raise UserError(
            f"The label column {label!r} of {where} holds non-integer numbers ({column.nunique()} distinct values "
            f"in {len(column)} rows, e.g. {fractional[0]:g}): a class label names one of a few classes. Set "
            f"'label' to the column that holds the class, or, for a real-valued target (regression), set "
            f"data.task: regression."
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


def _sklearn_loader(loader_name: str, *, regression: bool = False) -> Callable[[], Table]:
    def load() -> Table:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        return Table(
            features=np.asarray(bunch.data, dtype=np.float64),
            labels=np.asarray(bunch.target, dtype=np.float64 if regression else np.int64),
            class_names=None if regression else tuple(str(name) for name in bunch.target_names),
            feature_names=tuple(str(name) for name in bunch.feature_names),
        )

    load.__doc__ = (f"scikit-learn's bundled ``{loader_name}()``{' (real-valued targets)' if regression else ''} as a "
                    ":class:`Table`.")
    return load


SKLEARN_REGRESSION: dict[str, Callable[[], Table]] = {"diabetes": _sklearn_loader("load_diabetes", regression=True)}
"""scikit-learn regression sets that ship with the package (never downloaded): ``data.task: regression``."""

SKLEARN_DATASETS: dict[str, Callable[[], Table]] = {
    "iris": _sklearn_loader("load_iris"),
    "wine": _sklearn_loader("load_wine"),
    "breast_cancer": _sklearn_loader("load_breast_cancer"),
    "digits": _sklearn_loader("load_digits"),
}
"""scikit-learn classification sets that ship with the package (never downloaded)."""


def load_sklearn_table(name: str) -> Table:
    """One of scikit-learn's bundled classification sets (iris, wine, breast_cancer, digits), or regression set
    (diabetes).

    Example:
        >>> table = load_sklearn_table("wine")
        >>> table.features.shape, len(table.class_names)
        ((178, 13), 3)
    """
    loaders = {**SKLEARN_DATASETS, **SKLEARN_REGRESSION}
    if name not in loaders:
        raise UserError(
            f"The scikit-learn dataset name must be one of {sorted(loaders)}; "
            f"got {name!r}."
        )
    return loaders[name]()


def _format_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSION_SUFFIXES:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def _reject_missing(frame: pd.DataFrame, where: str) -> None:
    missing = frame.isna().sum()
    missing = missing[missing > 0]
    if len(missing):
        counts = ", ".join(f"{column!s}: {count}" for column, count in missing.items())
        raise UserError(
            f"{_sentence(where)} has missing values (rows with missing values per column: "
            f"{counts}); rayprune does not impute, so fill or drop them first."
        )


def _sentence(text: str) -> str:
    """``text`` with its first letter capitalised (``str.capitalize`` would lower a path's case)."""
    return text[:1].upper() + text[1:]


def _text_columns(features: pd.DataFrame) -> list:
    """Columns pandas did not read as numbers (or booleans, which count as numbers)."""
    return [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]


def _reject_stray_text(features: pd.DataFrame, where: str) -> None:
    """Refuse a column of numbers with a few non-numbers in it (a typo, a unit, a 'n/a' marker).

    Example:
        >>> frame = pd.DataFrame({"age": ["31", "42", "4O"] + ["50"] * 27})
        >>> _reject_stray_text(frame, "the table")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        rayprune.errors.UserError: Column 'age' of the table is numeric except for 1 of its 30 values: '4O' at row 2...
    """
    for column in _text_columns(features):
        values = features[column]
        stray = pd.to_numeric(values, errors="coerce").isna()
        n_stray = int(stray.sum())
        if 0 < n_stray <= _STRAY_SHARE * len(values):
            shown = ", ".join(
                f"{value!r} at row {row}" for row, value in values[stray].head(_SHOWN).items()
            )
            more = f" and {n_stray - _SHOWN} more" if n_stray > _SHOWN else ""
            raise UserError(
                f"Column {str(column)!r} of {where} is numeric except for {n_stray} of its "
                f"{len(values)} values: {shown}{more} (rows numbered from 0 after the header). "
                f"rayprune would otherwise one-hot encode it into one feature per distinct "
                f"value; fix or drop those rows, or, if the column is categorical, write its "
                f"values as text that is not a number."
            )


def _one_hot(features: pd.DataFrame, where: str) -> pd.DataFrame:
    """Booleans become 0/1; other non-numeric columns become one 0/1 column per value."""
    booleans = [c for c in features.columns if pd.api.types.is_bool_dtype(features[c])]
    features = features.astype({c: np.float64 for c in booleans})
    categorical = _text_columns(features)
    if not categorical:
        return features
    _warn_wide(features, categorical, where)
    encoded = pd.get_dummies(features, columns=categorical, dtype=np.float64)
    counts = collections.Counter(str(c) for c in encoded.columns)  # (list.count per name: quadratic in a wide table)
    twice = sorted(n for n, k in counts.items() if k > 1)
    if twice:  # column `zone` = "type_x" and column `zone_type` = "x" both become `zone_type_x`
        sources = {n: [f"{c!r} = {v!r}" for c in categorical for v in pd.unique(features[c].dropna())
                       if f"{c}_{v}" == n] + ([f"the column {n!r}"] if n in features.columns else []) for n in twice}
        raise UserError(f"{_sentence(where)}: one-hot encoding its text columns gives the feature name "
                        + "; ".join(f"{n!r} to {' and '.join(src)}" for n, src in sources.items())
                        + " — a raw row could not be told apart in spec.json's feature_names. Rename a column (or a "
                        "value) so that every '<column>_<value>' name is unique.")
    return encoded


def _one_hot_sources(features: pd.DataFrame, encoded: pd.DataFrame) -> tuple[tuple[str, str, str], ...]:
    """``(feature name, column, value)`` of every feature :func:`_one_hot` made from a text column, in the order of
    ``encoded``'s columns: what a raw row needs to be encoded on a device (``spec.json``'s ``one_hot``).

    >>> frame = pd.DataFrame({"size": [1.0, 2.0], "town": ["north", "south"]})
    >>> _one_hot_sources(frame, _one_hot(frame, "t"))
    (('town_north', 'town', 'north'), ('town_south', 'town', 'south'))
    """
    made = {f"{column}_{value}": (str(column), str(value)) for column in _text_columns(features)
            for value in pd.unique(features[column].dropna())}
    kept = set(map(str, features.columns))  # (once: a set per encoded column was quadratic in a wide table)
    return tuple((str(name), *made[str(name)]) for name in encoded.columns if str(name) in made
                 and str(name) not in kept)


def _warn_wide(features: pd.DataFrame, categorical: list, where: str) -> None:
    distinct = {c: int(features[c].nunique()) for c in categorical}
    wide = {c: n for c, n in distinct.items() if n > WIDE_ONE_HOT}
    if not wide:
        return
    described = "; ".join(
        f"{str(column)!r}: {n} distinct values"
        + (", one per row (an identifier?)" if n == len(features) else "")
        for column, n in wide.items()
    )
    n_before = features.shape[1]
    n_after = n_before - len(categorical) + sum(distinct.values())
    warnings.warn(
        f"One-hot encoding {where} turns its {n_before} feature columns into {n_after} features; "
        f"the widest: {described}. Drop such columns, or bin their values, if they are not "
        f"meant as categories.",
        UserWarning,
        stacklevel=4,
    )


def _reject_infinite(encoded: pd.DataFrame, where: str) -> None:
    values = encoded.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    problems = []
    for j in np.flatnonzero(bad.any(axis=0)):
        rows = encoded.index[bad[:, j]]
        shown = ", ".join(str(r) for r in rows[:_SHOWN])
        more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
        problems.append(f"{str(encoded.columns[j])!r} (rows {shown}{more})")
    raise UserError(
        f"{_sentence(where)} has infinite values in {'; '.join(problems)}; features are scaled "
        f"by their range, so replace or drop those rows first."
    )
