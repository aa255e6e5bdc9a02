"""Training-set preparation: the `sample_index` column, label validation and an index-preserving collator."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # PyTorch's CrossEntropyLoss ignore_index: a sample with this label is never trained or counted
LABEL_COLUMN_CANDIDATES = ("label", "labels")
LABEL_KEYS = ("labels", "label")  # batch keys that must not reach a label-free forward
SINGLE_LABEL, MULTI_LABEL, REGRESSION = "single_label_classification", "multi_label_classification", "regression"


def model_task(model: Any) -> str | None:
    """What the model's head does, read from its config, never from the labels: `"regression"` (`num_labels == 1` or
    `problem_type="regression"`), `"multi_label_classification"` or `"single_label_classification"` (its
    `problem_type`, else `num_labels > 1`); None for a model without a config (e.g. one built by `model_init`).

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> model_task(BertForSequenceClassification(BertConfig(num_labels=1)))
        'regression'
    """
    config = getattr(model, "config", None)
    problem_type = getattr(config, "problem_type", None)
    num_labels = getattr(config, "num_labels", None)
    if problem_type in (SINGLE_LABEL, MULTI_LABEL, REGRESSION):
        return problem_type
    if not isinstance(num_labels, int):
        return None
    return REGRESSION if num_labels == 1 else SINGLE_LABEL


def add_sample_index(dataset: datasets.Dataset, column: str = "sample_index") -> datasets.Dataset:
    """Return `dataset` with `column` = row position (0..N-1), the stable per-sample id hf_lnl tracks.

    An existing column is checked instead (it must be a permutation of 0..N-1).

    Example:
        >>> ds = add_sample_index(datasets.Dataset.from_dict({"x": [5, 6, 7]}))
        >>> ds["sample_index"][:]
        [0, 1, 2]
    """
    if column in dataset.column_names:
        check_sample_index(read_column(dataset, column), column)
        return dataset
    return dataset.add_column(column, np.arange(len(dataset), dtype=np.int64))


def check_sample_index(values: np.ndarray, column: str = "sample_index") -> None:
    """Raise `ValueError` unless `values` is a permutation of 0..N-1."""
    values = np.asarray(values)
    n = len(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"Column {column!r} must hold one integer per sample, got dtype {values.dtype}.")
    bad = (values < 0) | (values >= n)
    if bad.any():
        raise ValueError(
            f"Column {column!r} must be a permutation of 0..{n - 1}, but holds {int(values[bad][0])}. "
            f"Drop the column to let hf_lnl number the rows, or renumber it."
        )
    if len(np.unique(values)) != n:
        raise ValueError(
            f"Column {column!r} must be a permutation of 0..{n - 1}, but some ids repeat. "
            "Drop the column to let hf_lnl number the rows, or renumber it."
        )


@dataclass
class LabelInfo:
    """What hf_lnl learned about the training labels before training."""

    column: str
    labels: np.ndarray | None  # given labels in sample_index order; None when they are not single-label ints
    clean_labels: np.ndarray | None  # true labels in sample_index order, when the dataset has them
    reason_untracked: str | None = None  # why per-sample tracking is impossible, if it is


def find_label_column(column_names: list[str], label_column: str | None) -> str:
    """Pick the label column (`label_column`, else `label`, else `labels`) or raise a clear `ValueError`."""
    if label_column is not None:
        if label_column not in column_names:
            raise ValueError(
                f"The training set has no label column {label_column!r} (columns: {column_names}). "
                "Set `label_column` to the column that holds the (noisy) labels."
            )
        return label_column
    for candidate in LABEL_COLUMN_CANDIDATES:
        if candidate in column_names:
            return candidate
    raise ValueError(
        f"The training set has no label column (looked for {LABEL_COLUMN_CANDIDATES}; columns: {column_names}). "
        "Add the labels as a `label` column or set `label_column`."
    )


def read_label_info(
    dataset: datasets.Dataset,
    *,
    label_column: str | None,
    index_column: str,
    clean_label_column: str,
    num_labels: int | None,
    require_integer: bool,
    task: str | None = None,
) -> LabelInfo:
    """Read and validate the labels of a `datasets.Dataset`, ordered by `index_column`.

    `task` (`model_task`) decides what the labels are: a single-label classifier's labels are class ids (whole-number
    floats included); a regression or multi-label model's labels are not tracked. Without a task (no model config),
    one integer per sample counts as class ids.

    Raises `ValueError` naming the column and value for labels outside `[0, num_labels)` (other than -100), a
    `ClassLabel` feature that disagrees with `num_labels`, a classifier's 1-D labels that are not whole numbers, and
    (when `require_integer`) anything but a single-label classifier with class ids.
    """
    column = find_label_column(dataset.column_names, label_column)
    if task in (REGRESSION, MULTI_LABEL):
        what = "num_labels=1" if task == REGRESSION and num_labels == 1 else f"problem_type={task!r}"
        reason = f"the model is a {task.replace('_', ' ')} model ({what})"
        if require_integer:
            raise ValueError(
                f"Noise-robust methods need a single-label classifier, but {reason}. Load the model with "
                "num_labels=<number of classes>, or use lnl_method='none' to train it without per-sample tracking."
            )
        return LabelInfo(column, None, None, reason)
    if label_column is None and set(LABEL_COLUMN_CANDIDATES) <= set(dataset.column_names):
        _warn_if_labels_differ(dataset)
    feature = dataset.features.get(column)
    if isinstance(feature, datasets.ClassLabel) and num_labels is not None and feature.num_classes != num_labels:
        raise ValueError(
            f"Column {column!r} is a ClassLabel with {feature.num_classes} classes but the model has "
            f"num_labels={num_labels}. Load the model with num_labels={feature.num_classes}."
        )
    order = read_column(dataset, index_column)
    labels = read_column(dataset, column)
    reason = _untracked_reason(labels)
    if reason is not None and task == SINGLE_LABEL and labels.ndim == 1 and np.issubdtype(labels.dtype, np.floating):
        raise ValueError(
            f"Column {column!r} holds {reason}, but the model is a single-label classifier (num_labels={num_labels}) "
            "whose labels are class ids. Fix the labels, or load a regression model (num_labels=1) for real targets."
        )
    if reason is not None:
        if require_integer:
            raise ValueError(
                f"Column {column!r} holds {reason}; noise-robust methods need one integer class id per sample. "
                "Use lnl_method='none' for other label types."
            )
        return LabelInfo(column, None, None, f"column {column!r} holds {reason}")
    labels = in_index_order(labels.astype(np.int64), order)
    check_labels(labels, num_labels, column)
    clean = None
    if clean_label_column in dataset.column_names and clean_label_column != column:
        clean = in_index_order(read_column(dataset, clean_label_column).astype(np.int64), order)
        check_labels(clean, num_labels, clean_label_column)
    return LabelInfo(column, labels, clean)


def check_labels(labels: np.ndarray, num_labels: int | None, column: str) -> None:
    """Raise `ValueError` if a label lies outside `[0, num_labels)` and is not -100."""
    valid = labels[labels != IGNORE_INDEX]
    if valid.size == 0:
        raise ValueError(f"Column {column!r} has no usable label (all are -100).")
    if valid.min() < 0:
        raise ValueError(
            f"Column {column!r} holds the negative label {int(valid.min())}; labels must be class ids in "
            "[0, num_labels), or -100 for samples to ignore."
        )
    if num_labels is not None and valid.max() >= num_labels:
        count = int((valid >= num_labels).sum())
        raise ValueError(
            f"Column {column!r} holds the label {int(valid.max())} ({count} samples at or above "
            f"num_labels={num_labels}); the model has {num_labels} classes. Load the model with "
            f"num_labels={int(valid.max()) + 1} or fix the labels."
        )


def _warn_if_labels_differ(dataset: datasets.Dataset) -> None:
    label, labels = (read_column(dataset, name) for name in LABEL_COLUMN_CANDIDATES)
    if label.shape != labels.shape or not np.array_equal(label, labels):
        logger.warning(
            "The training set has both a 'label' and a 'labels' column, with different values: hf_lnl trains, counts "
            "and reports on 'label' (label_column=None picks it). Set label_column='labels' to use the other one."
        )


def _untracked_reason(labels: np.ndarray) -> str | None:
    if labels.ndim != 1:
        return f"{labels.ndim}-D labels (multi-label or token labels)"
    if not np.issubdtype(labels.dtype, np.integer) and not np.issubdtype(labels.dtype, np.bool_):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0) and labels.size:
            return None  # integral floats (e.g. from pandas) are class ids
        return f"non-integer labels (dtype {labels.dtype}, e.g. regression targets)"
    return None


def read_column(dataset: datasets.Dataset, column: str) -> np.ndarray:
    """One column of a dataset as a numpy array (an object array for ragged values), without running its transform.

    Example:
        >>> read_column(datasets.Dataset.from_dict({"label": [1, 0]}), "label")
        array([1, 0])
    """
    # with_format drops any on-the-fly transform (e.g. image decoding) that a plain dataset[column] would apply.
    values = dataset.select_columns([column]).with_format("numpy")[column]
    try:
        return np.asarray(values)
    except ValueError:  # ragged (e.g. token labels of varying length)
        return np.asarray(list(values), dtype=object)


def in_index_order(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`values` given in row order, rearranged so that position `order[i]` holds `values[i]` (sample_index order).

    Example:
        >>> in_index_order(np.array([10, 20, 30]), np.array([2, 0, 1]))
        array([20, 30, 10])
    """
    result = np.empty_like(values)
    result[order] = values
    return result


class IndexedDataset(torch.utils.data.Dataset):
    """Wrap a map-style dataset of dicts so that each item also carries its `sample_index`.

    Example:
        >>> ds = IndexedDataset([{"input_ids": [1, 2], "labels": 0}])
        >>> ds[0]["sample_index"]
        0
    """

    def __init__(self, dataset: Any, column: str = "sample_index"):
        self.dataset = dataset
        self.column = column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        if not isinstance(item, dict):
            raise TypeError(
                f"hf_lnl needs dataset items that are dicts to attach `{self.column}`; got {type(item).__name__}."
            )
        return {**item, self.column: index}


class SampleIndexCollator:
    """Wrap a data collator so the per-sample index survives it, whatever the inner collator keeps.

    The index is taken out of each feature before the inner collator runs and put back as a tensor.
    """

    def __init__(self, data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]], column: str):
        self.data_collator = data_collator
        self.column = column

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features or not isinstance(features[0], dict) or self.column not in features[0]:
            return self.data_collator(features)
        index = torch.tensor([int(f[self.column]) for f in features], dtype=torch.long)
        batch = self.data_collator([{k: v for k, v in f.items() if k != self.column} for f in features])
        batch[self.column] = index
        return batch


def keep_index_through_transform(dataset: datasets.Dataset, column: str = "sample_index") -> datasets.Dataset:
    """Make an on-the-fly transform (`with_transform` / `set_transform`) pass `column` through unchanged.

    Transforms usually return only the model inputs; without this the per-sample index would be lost.
    """
    dataset_format = dataset.format
    if dataset_format.get("type") != "custom":
        return dataset
    transform = dataset_format["format_kwargs"]["transform"]
    if getattr(transform, "keeps_column", None) == column:
        return dataset
    columns = dataset_format.get("columns")
    if columns is not None and column not in columns:
        columns = [*columns, column]
    return dataset.with_transform(
        _IndexKeepingTransform(transform, column),
        columns=columns,
        output_all_columns=dataset_format["output_all_columns"],
    )


class _IndexKeepingTransform:
    def __init__(self, transform: Callable[[dict[str, Any]], dict[str, Any]], column: str):
        self.transform = transform
        self.keeps_column = column

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        output = self.transform(batch)
        if self.keeps_column in batch and self.keeps_column not in output:
            output[self.keeps_column] = batch[self.keeps_column]
        return output


def prepare_train_dataset(
    dataset: Any,
    *,
    index_column: str,
    label_column: str | None,
    clean_label_column: str,
    num_labels: int | None,
    method_name: str,
    require_class_labels: bool,
    task: str | None = None,
    rows_per_batch: int = 1,
) -> tuple[Any, LabelInfo | None, str | None]:
    """Number the training samples and read their labels, before any training starts.

    A `datasets.Dataset` gains `index_column` (kept through any `with_transform`); any other map-style dataset of dicts
    is wrapped in `IndexedDataset`. Labels are validated by `read_label_info` against the model's `task`.
    `rows_per_batch` is the fewest rows one training step needs (a global batch under `dataloader_drop_last`).

    Returns:
        `(dataset, label info, why per-sample tracking is off)`; the last is None when tracking works.

    Raises:
        ValueError: the method needs class labels and the training set cannot give them (iterable dataset, labels
            that are not one class id per sample, a regression model), a label is out of range, or the training set
            has fewer than `rows_per_batch` rows (none at all, or not one whole batch under `dataloader_drop_last`).

    Example:
        >>> train, info, untracked = prepare_train_dataset(
        ...     datasets.Dataset.from_dict({"x": [1, 2], "label": [0, 1]}), index_column="sample_index",
        ...     label_column=None, clean_label_column="clean_label", num_labels=2, method_name="ido",
        ...     require_class_labels=True)
        >>> info.labels
        array([0, 1])
    """
    if dataset is None:
        return None, None, "no training set"
    if isinstance(dataset, (datasets.IterableDataset, torch.utils.data.IterableDataset)):
        if require_class_labels:
            raise ValueError(
                f"lnl_method={method_name!r} keeps per-sample state and needs the dataset size, but the training set "
                "is an iterable dataset of unknown length. Use a map-style `datasets.Dataset` (e.g. load without "
                "streaming=True)."
            )
        logger.warning("The training set is an iterable dataset: per-sample wrong-event tracking is off.")
        return dataset, None, "iterable training set of unknown length"
    _check_size(len(dataset), rows_per_batch)
    options = dict(
        index_column=index_column,
        clean_label_column=clean_label_column,
        num_labels=num_labels,
        require_integer=require_class_labels,
        task=task,
    )
    if isinstance(dataset, datasets.Dataset):
        dataset = keep_index_through_transform(add_sample_index(dataset, index_column), index_column)
        info = read_label_info(dataset, label_column=label_column, **options)
    else:
        dataset = IndexedDataset(dataset, index_column)
        table = _torch_dataset_labels(dataset, label_column, clean_label_column)
        info = read_label_info(table, label_column="label", **options)
    if info.reason_untracked is not None:
        logger.warning(f"Per-sample wrong-event tracking is off: {info.reason_untracked}.")
    return dataset, info, info.reason_untracked


def _check_size(num_rows: int, rows_per_batch: int) -> None:
    if num_rows == 0:
        raise ValueError("The training set is empty (0 rows): pass a training set with at least one sample.")
    if num_rows < rows_per_batch:
        raise ValueError(
            f"The training set has {num_rows} rows, fewer than one batch of {rows_per_batch} "
            "(per_device_train_batch_size x processes), and dataloader_drop_last=True drops that incomplete batch, "
            "so no training step would run. Set dataloader_drop_last=False or lower per_device_train_batch_size."
        )


def _torch_dataset_labels(
    dataset: IndexedDataset, label_column: str | None, clean_label_column: str
) -> datasets.Dataset:
    """The index, label and (when every item has one) clean label of a map-style torch dataset, as a table."""
    labels, clean, column = [], [], None
    for i in range(len(dataset)):
        item = dataset[i]
        column = column or find_label_column(list(item), label_column)
        labels.append(item[column])
        clean.append(item.get(clean_label_column))
    table = {dataset.column: np.arange(len(dataset)), "label": np.asarray(labels)}
    if clean and all(c is not None for c in clean):
        table[clean_label_column] = np.asarray(clean)
    return datasets.Dataset.from_dict(table)


def select_rows(dataset: Any, indices: np.ndarray) -> Any:
    """The rows `indices` of a training set, as a `datasets.Dataset` or a `torch.utils.data.Subset`.

    Example:
        >>> list(select_rows(datasets.Dataset.from_dict({"x": [5, 6, 7]}), np.array([2, 0]))["x"])
        [7, 5]
    """
    if isinstance(dataset, datasets.Dataset):
        return dataset.select(indices)
    return torch.utils.data.Subset(dataset, [int(i) for i in indices])


def strip_labels(batch: dict[str, Any], index_column: str, label_column: str | None = None) -> dict[str, Any]:
    """Drop the labels (`label_column` too) and the per-sample id from a collated batch, leaving model inputs only (in
    place).

    Example:
        >>> strip_labels({"input_ids": [[1]], "labels": [0], "sample_index": [3]}, "sample_index")
        {'input_ids': [[1]]}
    """
    for key in (*LABEL_KEYS, index_column, label_column):
        batch.pop(key, None)
    return batch


def with_given_labels(
    inputs: dict[str, Any], sample_index: torch.Tensor, labels: torch.Tensor, label_column: str | None
) -> dict[str, Any]:
    """Give a training batch the validated labels of its samples as `labels` (in place), whatever the collator made
    of the dataset's label columns: the configured `label_column` is then what the loss, the wrong-event counts and the
    report all use, and whole-number float labels reach the model as class ids.

    Example:
        >>> with_given_labels({"input_ids": ids, "label": noisy}, torch.tensor([2, 0]),
        ...                   torch.tensor([1, 0, 3]), None)  # doctest: +SKIP
        {'input_ids': ids, 'labels': tensor([3, 1])}
    """
    for key in {*LABEL_KEYS, label_column} - {None}:
        inputs.pop(key, None)
    inputs["labels"] = labels[sample_index.to(labels.device)].long()
    return inputs
