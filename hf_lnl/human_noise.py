"""Real human label noise: the CIFAR-10N / CIFAR-100N label files (Wei et al., "Learning with Noisy Labels
Revisited: A Study Using Real-World Human Annotations", ICLR 2022, https://github.com/UCSC-REAL/cifar-10-100n).

The files (`CIFAR-10_human.pt`, `CIFAR-100_human.pt`) are `torch.save`d dicts of numpy integer arrays, one label per
CIFAR training image in the original order: CIFAR-10N has `aggre_label` (about 9% noise), `worse_label` (about 40%),
`random_label1..3` (about 17%) and `clean_label`; CIFAR-100N has `noisy_label` (about 40%) and `clean_label`. They
are read with `torch.load(weights_only=True)` and an allow-list of numpy's array-rebuilding globals, so a file that
holds any other object is refused instead of executed.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from typing import Any

import datasets
import numpy as np

from hf_lnl.noise import _read_labels, _replace_labels, _resolve_num_classes, noise_summary

__all__ = ["attach_human_noise", "load_cifar_n_labels"]

logger = logging.getLogger(__name__)

CLEAN_KEY = "clean_label"


def _numpy_allow_list() -> list[Any]:
    """The globals a pickled numpy array needs: the rebuild function (under its numpy 2 name and, for files written
    with numpy 1.x such as the published CIFAR-N files, its old `numpy.core` name), `ndarray`, `dtype` and the
    numpy 2 dtype classes."""
    reconstruct = np._core.multiarray._reconstruct
    dtype_classes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdg"}
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype, *dtype_classes]


def _load_label_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_allow_list()):
            content = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(
            f"Refusing to load {os.fspath(path)!r}: it holds objects other than numpy/torch arrays, which could run "
            f"code when unpickled. Use the official CIFAR-N files. ({str(error).splitlines()[-1][:300]})"
        ) from error
    if not isinstance(content, dict):
        raise ValueError(f"{os.fspath(path)!r} holds a {type(content).__name__}, not a dict of label arrays.")
    return content


def _pick(content: dict[str, Any], key: str, path: str | os.PathLike[str]) -> np.ndarray:
    if key not in content:
        raise ValueError(f"Key {key!r} not in {os.fspath(path)!r}; available keys: {sorted(content)}.")
    labels = np.asarray(content[key].numpy() if hasattr(content[key], "numpy") else content[key])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{key!r} in {os.fspath(path)!r} is not a 1-D integer array (shape {labels.shape}, dtype {labels.dtype})."
        )
    return labels.astype(np.int64)


def load_cifar_n_labels(path: str | os.PathLike[str], key: str) -> np.ndarray:
    """Load one label array from a CIFAR-10N / CIFAR-100N `.pt` file without unpickling arbitrary objects.

    Args:
        path: the `.pt` file (e.g. `CIFAR-10_human.pt`).
        key: the array to read, e.g. "aggre_label", "worse_label", "random_label1" or "noisy_label".

    Returns:
        A 1-D int64 array.

    Raises:
        ValueError: the key is not in the file (the message lists the keys), or the value is not 1-D integer.
        pickle.UnpicklingError: the file holds objects other than numpy arrays (it is refused, nothing is executed).

    Example:
        >>> worst = load_cifar_n_labels("CIFAR-10_human.pt", "worse_label")  # doctest: +SKIP
    """
    return _pick(_load_label_file(path), key, path)


def attach_human_noise(
    dataset: datasets.Dataset,
    path: str | os.PathLike[str],
    key: str = "aggre_label",
    *,
    label_column: str = "label",
    clean_label_column: str = "clean_label",
) -> datasets.Dataset:
    """Replace the labels of the CIFAR-10/100 *training* split with human noisy labels, keeping the clean ones.

    The dataset must be in the original CIFAR order (unshuffled). When `clean_label_column` is absent it is created
    from the dataset's current labels; if the file also holds `clean_label`, the two are compared and a warning
    reports disagreements (a sign of a different sample order). An existing clean column is kept.

    Args:
        dataset: the CIFAR training split with integer labels in `label_column`.
        path: the CIFAR-N `.pt` file.
        key: which annotation to use (see the module docstring).
        label_column: receives the human labels (its feature type is kept).
        clean_label_column: receives the current labels unless it exists.

    Returns:
        A new dataset; the realised noise rate is logged at INFO level.

    Example:
        >>> train = attach_human_noise(cifar10["train"], "CIFAR-10_human.pt", "worse_label")  # doctest: +SKIP
    """
    content = _load_label_file(path)
    human = _pick(content, key, path)
    current = _read_labels(dataset, label_column)
    if human.size != current.size:
        raise ValueError(
            f"{os.fspath(path)!r} has {human.size} labels for {key!r} but the dataset has {current.size} rows; "
            "CIFAR-N labels cover the full CIFAR training split (50,000 images) in its original order."
        )
    _resolve_num_classes(dataset, label_column, np.concatenate([current, human]), None)
    if clean_label_column not in dataset.column_names and CLEAN_KEY in content:
        file_clean = _pick(content, CLEAN_KEY, path)
        if file_clean.size == current.size and (file_clean != current).any():
            mismatches = int((file_clean != current).sum())
            warnings.warn(
                f"{mismatches} of {current.size} labels of column {label_column!r} differ from the file's "
                f"{CLEAN_KEY!r}; the dataset may not be in the original CIFAR order. The clean column is taken from "
                f"the dataset's labels.",
                stacklevel=2,
            )
    result = _replace_labels(dataset, human, current, label_column, clean_label_column)
    logger.info("CIFAR-N %r labels attached:\n%s", key, noise_summary(result, label_column, clean_label_column))
    return result
