"""An image folder (``data.name: imagefolder``, ``data.root``): one sub-folder of images per class.

:func:`load_image_folder` reads the images with Pillow (imported when called), skipping and listing
the files it cannot read, and normalises them like the built-in sets (see :mod:`rayprune.data.convert`).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .convert import _from_splits
from .datasets import Dataset, _split_spec, _SplitSpec
from .user_splits import _SHOWN, SPLITS

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
"""File suffixes :func:`load_image_folder` reads as images; other files in a class folder are
counted as skipped."""

_GRAY_MODES = frozenset({"1", "L", "LA"})


def load_image_folder(
    root: str | Path,
    *,
    image_size: int | None = None,
    spec: _SplitSpec | None = None,
) -> Dataset:
    """Images under ``root/<class>/`` (class names sorted), read with Pillow; ``data.name: imagefolder``.

    With ``root/train/<class>/`` and ``root/test/<class>/`` (and optionally ``root/val/<class>/``)
    those are the splits; otherwise val and test are split off by the config's fractions. Images are
    converted to RGB, or to grayscale (L) when every image is 1-channel, and resized to
    ``image_size`` × ``image_size`` (bilinear, not cropped) when given; without it every image must
    have the same size. Files Pillow cannot read are skipped with a warning and listed in
    :attr:`Dataset.skipped_files`. Pixels are normalised per channel with train statistics, like the
    built-in sets, and fine-tuned with the ``crop`` augmentation (no mirroring).

    Example::

        flowers/daisy/001.jpg, flowers/daisy/002.jpg, ..., flowers/tulip/001.jpg, ...
        data = load_image_folder("flowers", image_size=64)   # data.class_names == ('daisy', 'tulip')
    """
    from PIL import Image

    spec = spec or _split_spec(0.1, 0.2, 0, None)
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1
    ):
        raise UserError(f"'image_size' must be a positive integer or None; got {image_size!r}.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise NotADirectoryError(
            f"'root' of dataset 'imagefolder' must be a directory of class folders; got '{root}'."
        )
    layout = _folder_layout(root)
    class_names = tuple(sorted({d.name for folder in layout.values() for d in _class_dirs(folder)}))
    files = {
        split: [(p, class_names.index(d.name)) for d in _class_dirs(folder) for p in _files(d)]
        for split, folder in layout.items()
    }
    headers, skipped = {}, []
    for split, entries in files.items():
        headers[split] = []
        for path, label in entries:
            header = _image_header(Image, path)
            if header is None:
                skipped.append(path)
            else:
                headers[split].append((path, label, *header))
    readable = [h for entries in headers.values() for h in entries]
    empty = [name for i, name in enumerate(class_names) if not any(h[1] == i for h in headers.get("train", []))]
    if readable and empty:  # a class with no training image: an output the model can never learn
        raise UserError(
            f"Class folder(s) {', '.join(repr(n) for n in empty)} under '{root}' hold no readable image"
            + (" in the train split" if len(layout) > 1 else "") + f" (of {len(class_names)} classes): every class "
            "needs images to learn from. Remove the folder or add images."
        )
    if not readable:
        raise UserError(
            f"No readable image under '{root}': {len(skipped)} file(s) in {len(class_names)} class "
            f"folder(s), none of which Pillow could open."
        )
    mode = "L" if all(m in _GRAY_MODES for _, _, m, _ in readable) else "RGB"
    size = _common_size(root, {s for _, _, _, s in readable}, image_size)
    arrays = {}
    for split, entries in headers.items():
        if not entries and split == "train":
            raise UserError(f"No readable image in the train split under '{root}'.")
        arrays[split], failed = _read_images(Image, entries, mode, size)
        skipped += failed
    skipped_names = tuple(sorted(str(p.relative_to(root)) for p in skipped))
    if skipped_names:
        shown = ", ".join(skipped_names[:_SHOWN]) + (" ..." if len(skipped_names) > _SHOWN else "")
        warnings.warn(
            f"Skipped {len(skipped_names)} file(s) under '{root}' that Pillow could not read as "
            f"images: {shown}",
            UserWarning,
            stacklevel=2,
        )
    data = _from_splits(
        arrays, spec, name="imagefolder", kind="image", num_classes=len(class_names),
        class_names=class_names, normalise=True, augment="crop", skipped_files=skipped_names,
    )  # fmt: skip
    read = f"each image read with Pillow and converted to {mode}" + (
        f", resized to {size[0]}x{size[1]} (bilinear)" if image_size else "")
    # the splits carved from the folder's own images, which a model trained elsewhere on them may have seen
    carved = tuple(s for s in ("val", "test") if s not in layout)
    return dataclasses.replace(data, source_steps=(read, "laid out as (N, C, H, W)"), carved=carved)


def _folder_layout(root: Path) -> dict[str, Path]:
    """``{"train": root}``, or the ``train``/``val``/``test`` sub-folders when root is split so."""
    subdirs = {d.name: d for d in _class_dirs(root)}
    if not subdirs:
        raise UserError(
            f"'root' of dataset 'imagefolder' must hold one sub-folder per class; '{root}' has "
            f"no sub-folders."
        )
    if "train" in subdirs and set(subdirs) <= set(SPLITS) and _class_dirs(subdirs["train"]):
        layout = {split: subdirs[split] for split in SPLITS if split in subdirs}
        for split, folder in layout.items():
            if not _class_dirs(folder):
                raise UserError(
                    f"'{folder}' must hold one sub-folder per class (the {split} split); it has none."
                )
        return layout
    return {"train": root}


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _image_header(image_module: Any, path: Path) -> tuple[str, tuple[int, int]] | None:
    """(mode, (width, height)) of an image file, or None if Pillow cannot identify it."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    try:
        with image_module.open(path) as image:
            return image.mode, image.size
    except (OSError, ValueError, SyntaxError):  # UnidentifiedImageError is an OSError
        return None


def _common_size(root: Path, sizes: set[tuple[int, int]], image_size: int | None) -> tuple[int, int]:
    if image_size is not None:
        return int(image_size), int(image_size)
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:_SHOWN])
        raise UserError(
            f"The images under '{root}' have {len(sizes)} different sizes ({shown}"
            f"{' ...' if len(sizes) > _SHOWN else ''}); set 'image_size' (data.image_size) to "
            f"resize them all to one square size."
        )
    return next(iter(sizes))


def _read_images(
    image_module: Any, entries: list[tuple[Path, int, str, tuple[int, int]]], mode: str,
    size: tuple[int, int],
) -> tuple[tuple[np.ndarray, np.ndarray], list[Path]]:
    """uint8 N×C×H×W pixels and labels of the readable entries, and the paths that failed to decode."""
    channels = 1 if mode == "L" else 3
    pixels = np.empty((len(entries), channels, size[1], size[0]), dtype=np.uint8)
    labels, failed = [], []
    for path, label, _, own_size in entries:
        try:
            with image_module.open(path) as image:
                image = image.convert(mode)
                if own_size != size:
                    image = image.resize(size, image_module.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError):  # truncated or corrupt after a valid header
            failed.append(path)
            continue
        pixels[len(labels)] = array.reshape(size[1], size[0], channels).transpose(2, 0, 1)
        labels.append(label)
    return (pixels[: len(labels)], np.asarray(labels, dtype=np.int64)), failed
