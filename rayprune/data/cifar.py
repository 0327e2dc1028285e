"""Reader for CIFAR-10/100 in the original "python version" pickle batches, from a local directory.

rayprune never downloads: point ``root`` at the extracted ``cifar-10-batches-py`` /
``cifar-100-python`` folder or at the folder that contains it. Each batch is a pickled dict with
bytes keys: ``b'data'`` (N×3072 uint8 rows, channel-major 3×32×32) and ``b'labels'`` (CIFAR-10) or
``b'fine_labels'`` (CIFAR-100). The pickles are read with an unpickler that only rebuilds numpy
arrays, so a tampered file cannot run code. A file that is not such a pickle (truncated, corrupt,
or something else) is a ``ValueError`` naming the file and the expected format.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError

__all__ = ["CIFAR_LAYOUTS", "CifarArrays", "CifarLayout", "find_cifar_dir", "read_cifar"]


@dataclass(frozen=True)
class CifarLayout:
    """File names and keys of one CIFAR variant's python-pickle release."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes
    num_classes: int

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


CIFAR_LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
        num_classes=10,
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        num_classes=100,
    ),
}


class CifarArrays(NamedTuple):
    """A CIFAR release as arrays: images uint8 N×3×32×32, labels int64, and the class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def find_cifar_dir(root: str | Path | None, variant: str) -> Path:
    """The directory holding ``variant``'s files: ``root`` itself or ``root/<release folder>``.

    Raises ``FileNotFoundError`` listing the expected files and every directory searched.

    Example:
        >>> find_cifar_dir("/nonexistent", "cifar10")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        FileNotFoundError: No CIFAR-10 files found...
    """
    layout = _layout(variant)
    label = variant.replace("cifar", "CIFAR-")
    expected = ", ".join(layout.files)
    if root is None:
        raise FileNotFoundError(
            f"No {label} files: 'root' is not set, so no directory was searched. rayprune never "
            f"downloads data; extract the python version of {label} and pass as 'root' the "
            f"'{layout.folder}' folder holding {expected}, or its parent."
        )
    root = Path(root).expanduser()
    candidates = (root, root / layout.folder)
    for directory in candidates:
        if all((directory / name).is_file() for name in layout.files):
            return directory
    found = "; ".join(_what_is_missing(directory, layout.files) for directory in candidates)
    raise FileNotFoundError(
        f"No {label} files found: expected {expected} in '{candidates[0]}' or "
        f"'{candidates[1]}' ({found}). rayprune never downloads data; extract the python "
        f"version of {label} there first."
    )


def read_cifar(root: str | Path | None, variant: str = "cifar10") -> CifarArrays:
    """Read the official train and test splits of CIFAR-10 (``'cifar10'``) or CIFAR-100.

    Example:
        >>> arrays = read_cifar("~/data", "cifar10")  # doctest: +SKIP
        >>> arrays.x_train.shape, arrays.x_test.shape, arrays.class_names[:2]  # doctest: +SKIP
        ((50000, 3, 32, 32), (10000, 3, 32, 32), ('airplane', 'automobile'))
    """
    layout = _layout(variant)
    directory = find_cifar_dir(root, variant)
    x_train, y_train = _read_batches(directory, layout.train_files, layout)
    x_test, y_test = _read_batches(directory, layout.test_files, layout)
    meta = _load_pickle(directory / layout.meta_file)
    names = tuple(_text(name) for name in _require_key(meta, layout.names_key, layout.meta_file))
    if len(names) != layout.num_classes:
        raise UserError(
            f"'{layout.meta_file}' must list {layout.num_classes} class names under "
            f"{layout.names_key!r}; got {len(names)}."
        )
    return CifarArrays(x_train, y_train, x_test, y_test, names)


def _layout(variant: str) -> CifarLayout:
    if variant not in CIFAR_LAYOUTS:
        raise UserError(f"'variant' must be one of {sorted(CIFAR_LAYOUTS)}; got {variant!r}.")
    return CIFAR_LAYOUTS[variant]


def _what_is_missing(directory: Path, names: tuple[str, ...]) -> str:
    if not directory.is_dir():
        return f"'{directory}' is not a directory"
    missing = [name for name in names if not (directory / name).is_file()]
    return f"'{directory}' lacks {', '.join(missing)}"


def _read_batches(
    directory: Path, names: tuple[str, ...], layout: CifarLayout
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*(_read_batch(directory / name, layout) for name in names))
    return np.concatenate(images), np.concatenate(labels)


def _read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_pickle(path)
    data = _array(batch, b"data", path, None, "a uint8 array of shape (N, 3072)")
    labels = _array(batch, layout.label_key, path, np.int64, "a list of integer class indices")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(
            f"b'data' in '{path}' must be a uint8 array of shape (N, 3072); "
            f"got {data.dtype} {data.shape}."
        )
    if labels.ndim != 1:
        raise UserError(
            f"{layout.label_key!r} in '{path}' must be a list of integer class indices; "
            f"got an array of shape {labels.shape}."
        )
    if len(labels) != len(data):
        raise UserError(
            f"'{path}' has {len(data)} images but {len(labels)} labels under {layout.label_key!r}."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise UserError(
            f"Labels in '{path}' must be in [0, {layout.num_classes}); "
            f"got values from {labels.min()} to {labels.max()}."
        )
    return data.reshape(-1, 3, 32, 32), labels


# The only globals a CIFAR batch needs: numpy's array reconstruction (under its numpy 1 and 2 module
# names) and, for files written by Python 3 with protocol 2, the bytes codec helper.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses any other global (no code execution)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"Refusing to load '{module}.{name}' from a CIFAR batch: only numpy arrays, "
                "lists and dicts are expected there."
            )
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    data = path.read_bytes()
    try:
        loaded = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - corrupt bytes fail in many ways; all mean "not a batch"
        raise UserError(
            f"Cannot read '{path}' ({len(data)} bytes) as a CIFAR batch: "
            f"{type(err).__name__}: {str(err).rstrip('.')}. Expected a pickled dict as in the "
            f"'python version' release of CIFAR-10/100 (b'data': N×3072 uint8 rows, plus the "
            f"labels); the file may be truncated or corrupt, so extract the archive again."
        ) from err
    if not isinstance(loaded, dict):
        raise UserError(f"'{path}' must hold a pickled dict; got {type(loaded).__name__}.")
    return loaded


def _array(batch: dict, key: bytes, path: Path, dtype: type | None, expected: str) -> np.ndarray:
    value = _require_key(batch, key, path.name)
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as err:
        raise UserError(f"{key!r} in '{path}' must be {expected}; reading it failed: {err}") from err


def _require_key(mapping: dict, key: bytes, source: str):
    if key not in mapping:
        raise UserError(f"'{source}' has no {key!r} entry; its keys are {sorted(mapping)}.")
    return mapping[key]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
