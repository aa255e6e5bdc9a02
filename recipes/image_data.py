"""Offline image datasets for the image recipe and the benchmarks: Fashion-MNIST (Debian package) and digits.

Both come as a `train` / `test` DatasetDict with a uint8 `image` array column (H, W) and a ClassLabel `label`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import datasets
import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
IDX_IMAGE_OFFSET, IDX_LABEL_OFFSET = 16, 8  # header bytes of the idx format
IDX_IMAGE_MAGIC, IDX_LABEL_MAGIC = 2051, 2049  # big-endian int32 at the start of idx files


def fashion_mnist_available(folder: str | Path = FASHION_MNIST_DIR) -> bool:
    """Whether the Fashion-MNIST idx files are installed."""
    return (Path(folder) / "train-images-idx3-ubyte.gz").is_file()


def read_idx_images(path: Path) -> np.ndarray:
    """The images of a gzipped idx3 file as uint8 (N, rows, cols).

    Example:
        >>> read_idx_images(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").shape
        (10000, 28, 28)
    """
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic != IDX_IMAGE_MAGIC or len(raw) < IDX_IMAGE_OFFSET:
        raise ValueError(f"{path} is not an idx3 image file (magic {magic}, expected {IDX_IMAGE_MAGIC}).")
    count, rows, cols = np.frombuffer(raw[4:IDX_IMAGE_OFFSET], dtype=">i4")
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=IDX_IMAGE_OFFSET)
    if pixels.size != count * rows * cols:
        raise ValueError(f"{path} declares {count} images of {rows}x{cols} but holds {pixels.size} pixels.")
    return pixels.reshape(count, rows, cols)


def read_idx_labels(path: Path) -> np.ndarray:
    """The labels of a gzipped idx1 file as int64 (N,)."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic != IDX_LABEL_MAGIC or len(raw) < IDX_LABEL_OFFSET:
        raise ValueError(f"{path} is not an idx1 label file (magic {magic}, expected {IDX_LABEL_MAGIC}).")
    count = int.from_bytes(raw[4:IDX_LABEL_OFFSET], "big")
    labels = np.frombuffer(raw, dtype=np.uint8, offset=IDX_LABEL_OFFSET).astype(np.int64)
    if labels.size != count:
        raise ValueError(f"{path} declares {count} labels but holds {labels.size}.")
    return labels


def read_fashion_mnist(folder: str | Path = FASHION_MNIST_DIR) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{"train": (images, labels), "test": (images, labels)}` from Debian's `dataset-fashion-mnist` idx files."""
    folder = Path(folder)
    if not fashion_mnist_available(folder):
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {folder}: `apt-get install dataset-fashion-mnist` (Debian), or use "
            "--dataset_name digits."
        )
    return {
        split: (
            read_idx_images(folder / f"{prefix}-images-idx3-ubyte.gz"),
            read_idx_labels(folder / f"{prefix}-labels-idx1-ubyte.gz"),
        )
        for split, prefix in (("train", "train"), ("test", "t10k"))
    }


def load_fashion_mnist(folder: str | Path = FASHION_MNIST_DIR) -> datasets.DatasetDict:
    """Fashion-MNIST (60,000 + 10,000 28×28 grey images, 10 classes, MIT licence) as a DatasetDict.

    Example:
        >>> data = load_fashion_mnist()
        >>> data["train"][0]["image"].shape
        (28, 28)
    """
    arrays = read_fashion_mnist(folder)
    return datasets.DatasetDict(
        {split: _as_dataset(images, labels, FASHION_MNIST_CLASSES) for split, (images, labels) in arrays.items()}
    )


def load_digits(test_size: int = 360, seed: int = 0) -> datasets.DatasetDict:
    """scikit-learn's digits (1,797 8×8 images scaled to 0–255), split at random into train and test.

    Example:
        >>> load_digits()["test"].num_rows
        360
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.round(bunch.images / 16.0 * 255).astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(images))
    names = [str(i) for i in range(10)]
    return datasets.DatasetDict(
        {
            "train": _as_dataset(images[order[test_size:]], bunch.target[order[test_size:]], names),
            "test": _as_dataset(images[order[:test_size]], bunch.target[order[:test_size]], names),
        }
    )


def to_pixel_values(images: np.ndarray, size: int = 32) -> np.ndarray:
    """uint8 (N, H, W) grey images → float32 (N, 1, size, size) in [-1, 1]: smaller images are upsampled by an
    integer factor when it fits (digits 8 → 32), then zero-padded to `size` (Fashion-MNIST 28 → 32)."""
    images = np.asarray(images)
    factor = max(1, size // images.shape[-1])
    if factor > 1:
        images = np.kron(images, np.ones((1, factor, factor), dtype=images.dtype))
    pad_h, pad_w = size - images.shape[-2], size - images.shape[-1]
    images = np.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))
    return (images.astype(np.float32) / 127.5 - 1.0)[:, None]


def _as_dataset(images: np.ndarray, labels: np.ndarray, names: list[str]) -> datasets.Dataset:
    features = datasets.Features(
        {"image": datasets.Array2D(shape=images.shape[1:], dtype="uint8"), "label": datasets.ClassLabel(names=names)}
    )
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
