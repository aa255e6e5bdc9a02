"""Synthetic label noise for `datasets.Dataset`: symmetric, asymmetric (pair flip), instance-dependent and matrix.

The noisy labels replace the label column and the original ones are kept beside them in a clean-label column, so
that noise detection can be scored later. Every kind is reproducible from its seed (`numpy.random.default_rng`) and
vectorised with numpy: a loop runs over classes, never over samples. The definitions follow the LNL literature:

- symmetric: with probability `rate` a label is redrawn uniformly from the *other* C-1 classes (some papers draw
  from all C classes, so that the true flip rate is rate*(C-1)/C: `include_true_class=True`).
- asymmetric (pair flip): each sample of a mapped class moves to the class's fixed target with probability `rate`;
  classes the map leaves out are untouched, so the overall flip share is `rate` times the mapped classes' share.
- instance: Xia et al., "Part-dependent Label Noise: Towards Instance-dependent Label Noise", NeurIPS 2020.
- matrix: the new label of a class-i sample is drawn from row i of a given transition matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import truncnorm

from .data import IGNORE_INDEX

__all__ = ["NAMED_CLASS_MAPS", "NoiseSummary", "add_label_noise", "noise_summary", "text_embeddings"]

logger = logging.getLogger(__name__)

NOISE_KINDS = ("symmetric", "asymmetric", "instance", "matrix")
INSTANCE_RATE_STD = 0.1  # Xia et al. (NeurIPS 2020): per-sample flip rate q_i ~ N(rate, 0.1^2) truncated to [0, 1]
ARGUMENT_KIND = {
    "class_map": "asymmetric",
    "transition_matrix": "matrix",
    "features": "instance",
    "image_column": "instance",
    "include_true_class": "symmetric",
}
ROW_SUM_TOLERANCE = 1e-6
MAX_PRINTED_CLASSES = 20  # NoiseSummary.__str__ prints the transition matrix only up to this many classes
IMAGE_BATCH_SIZE = 1000
# Classic class-dependent maps (Patrini et al., CVPR 2017 for CIFAR-10; the look-alike pairs for Fashion-MNIST).
NAMED_CLASS_MAPS: dict[str, dict[int, int]] = {
    # truck->automobile, bird->airplane, deer->horse, cat<->dog
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # T-shirt/top<->Shirt, Pullover<->Coat, Sneaker<->Ankle boot
    "fashion_mnist": {0: 6, 6: 0, 2: 4, 4: 2, 7: 9, 9: 7},
}


@dataclass(frozen=True)
class NoiseSummary:
    """What a noise process did (or what two label columns show).

    Attributes:
        kind: the noise kind, or "observed" for `noise_summary`.
        requested_rate: the `rate` asked for (None for "matrix" and "observed").
        realized_rate: the fraction of changed labels among the samples whose label is not -100.
        mapped_rate: asymmetric noise only: the changed fraction among the samples of mapped classes.
        transition_matrix: the realised C x C matrix, rows = clean class, columns = noisy class, row-normalised.
            The row of a class with no sample is the identity row, so that the matrix stays row-stochastic.
        num_classes: C.
        seed: the seed of the random generator.
        note: how the noise was drawn, in words.

    Example:
        >>> summary = noise_summary(noisy_dataset)  # doctest: +SKIP
        >>> print(summary.realized_rate, summary.transition_matrix[3, 5])  # doctest: +SKIP
    """

    kind: str
    requested_rate: float | None
    realized_rate: float
    mapped_rate: float | None
    transition_matrix: np.ndarray = field(repr=False, compare=False)
    num_classes: int
    seed: int | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the matrix as nested lists)."""
        return {
            "kind": self.kind,
            "requested_rate": None if self.requested_rate is None else float(self.requested_rate),
            "realized_rate": float(self.realized_rate),
            "mapped_rate": None if self.mapped_rate is None else float(self.mapped_rate),
            "transition_matrix": np.asarray(self.transition_matrix, dtype=float).tolist(),
            "num_classes": int(self.num_classes),
            "seed": None if self.seed is None else int(self.seed),
            "note": self.note,
        }

    def __str__(self) -> str:
        requested = "" if self.requested_rate is None else f"requested rate {self.requested_rate:.3f}, "
        mapped = "" if self.mapped_rate is None else f" ({self.mapped_rate:.4f} on the mapped classes)"
        lines = [
            f"Label noise: {self.kind}, {self.num_classes} classes, seed {self.seed}",
            f"  {requested}realised rate {self.realized_rate:.4f}{mapped}",
        ]
        if self.note:
            lines.append(f"  {self.note}")
        if self.num_classes <= MAX_PRINTED_CLASSES:
            matrix = np.array2string(np.asarray(self.transition_matrix), precision=3, suppress_small=True)
            lines += ["  transition matrix (rows: clean class, columns: noisy class):"]
            lines += ["    " + line for line in matrix.splitlines()]
        return "\n".join(lines)


def add_label_noise(
    dataset: datasets.Dataset,
    kind: str,
    rate: float | None = None,
    *,
    seed: int,
    label_column: str = "label",
    clean_label_column: str = "clean_label",
    num_classes: int | None = None,
    class_map: str | Mapping[int | str, int | str] | None = None,
    transition_matrix: ArrayLike | None = None,
    features: ArrayLike | None = None,
    image_column: str | None = None,
    include_true_class: bool = False,
    return_summary: bool = False,
) -> datasets.Dataset | tuple[datasets.Dataset, NoiseSummary]:
    """Return a copy of `dataset` with noisy labels in `label_column` and the original ones in `clean_label_column`.

    If `dataset` already has `clean_label_column`, the noise is applied to the *current* labels and the existing
    clean column is kept as it is (so noise can be stacked); the returned summary then describes this call only
    (current -> new labels), while `noise_summary(result)` compares with the kept clean column. Labels equal to
    -100 are left untouched. The label feature type is kept (a `ClassLabel` stays one) and given to the clean
    column. A summary is logged at INFO level.

    Args:
        dataset: the dataset to noise; it is not modified.
        kind: "symmetric", "asymmetric", "instance" or "matrix" (see the module docstring).
        rate: the noise rate in [0, 1]; must be None for "matrix".
        seed: seed of `numpy.random.default_rng`; the same seed gives the same labels.
        label_column: the column with integer class ids.
        clean_label_column: where the original labels go.
        num_classes: C; by default from the `ClassLabel` feature, else the largest label + 1.
        class_map: asymmetric only: {source: target} of class ids or `ClassLabel` names, a named map
            ("cifar10", "fashion_mnist", see `NAMED_CLASS_MAPS`), or None for i -> (i + 1) mod C.
        transition_matrix: matrix only: a C x C row-stochastic matrix, row i = distribution of a class-i label.
        features: instance only: an (N, d) array of per-sample features (e.g. `text_embeddings(...)`).
        image_column: instance only: a column of images (PIL or arrays), flattened as features instead.
        include_true_class: symmetric only: draw the new label from all C classes (it may stay the same).
        return_summary: also return the `NoiseSummary`.

    Returns:
        The noisy dataset, or `(dataset, summary)` when `return_summary` is True.

    Raises:
        ValueError: on a bad rate, kind, map, matrix, feature array, label column or label values.

    Example:
        >>> ds = datasets.Dataset.from_dict({"label": [0, 1, 2, 3] * 250})
        >>> noisy, summary = add_label_noise(ds, "symmetric", 0.4, seed=0, return_summary=True)
        >>> round(summary.realized_rate, 1)
        0.4
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"Unknown noise kind {kind!r}; use one of {', '.join(map(repr, NOISE_KINDS))}.")
    rate = _check_rate(kind, rate)
    _check_arguments_apply(
        kind,
        class_map=class_map,
        transition_matrix=transition_matrix,
        features=features,
        image_column=image_column,
        include_true_class=include_true_class or None,
    )
    labels = _read_labels(dataset, label_column)
    num_classes = _resolve_num_classes(dataset, label_column, labels, num_classes)
    valid = labels != IGNORE_INDEX
    rng = np.random.default_rng(seed)
    clean = labels[valid]
    mapped_rate = None
    if kind == "symmetric":
        noisy, note = _symmetric(clean, rate, num_classes, include_true_class, rng)
    elif kind == "asymmetric":
        source_to_target = _resolve_class_map(class_map, num_classes, dataset.features[label_column])
        noisy, note = _asymmetric(clean, rate, source_to_target, num_classes, rng)
        is_mapped = np.isin(clean, list(source_to_target))
        mapped_rate = float(np.mean(noisy[is_mapped] != clean[is_mapped])) if is_mapped.any() else 0.0
    elif kind == "instance":
        x = _instance_features(dataset, features, image_column)[valid]
        noisy, note = _instance(clean, x, rate, num_classes, rng)
    else:
        matrix = _check_transition_matrix(transition_matrix, num_classes)
        noisy, note = _from_matrix(clean, matrix, rng)
    new_labels = labels.copy()
    new_labels[valid] = noisy
    if clean_label_column in dataset.column_names:
        note += f" Existing column {clean_label_column!r} kept; this noise was applied to the current labels."
    summary = _summarize(labels, new_labels, num_classes, kind, rate, mapped_rate, seed, note)
    logger.info("%s", summary)
    result = _replace_labels(dataset, new_labels, labels, label_column, clean_label_column)
    return (result, summary) if return_summary else result


def noise_summary(
    dataset: datasets.Dataset,
    label_column: str = "label",
    clean_label_column: str = "clean_label",
    num_classes: int | None = None,
) -> NoiseSummary:
    """Compare a dataset's noisy and clean label columns (kind "observed").

    Rows where either label is -100 are left out; the matrix convention is that of `NoiseSummary`.

    Args:
        dataset: a dataset with both columns (e.g. from `add_label_noise` or `attach_human_noise`).
        label_column: the noisy labels.
        clean_label_column: the clean labels.
        num_classes: C; by default from the `ClassLabel` feature, else the largest label + 1.

    Example:
        >>> summary = noise_summary(noisy_dataset)  # doctest: +SKIP
        >>> summary.to_dict()["realized_rate"]  # doctest: +SKIP
    """
    noisy = _read_labels(dataset, label_column)
    clean = _read_labels(dataset, clean_label_column)
    num_classes = _resolve_num_classes(dataset, label_column, np.concatenate([clean, noisy]), num_classes)
    note = f"Observed from columns {label_column!r} (noisy) and {clean_label_column!r} (clean)."
    return _summarize(clean, noisy, num_classes, "observed", None, None, None, note)


def text_embeddings(
    texts: Sequence[str],
    model_name_or_path: str,
    *,
    batch_size: int = 32,
    max_length: int = 64,
    device: str | None = None,
) -> np.ndarray:
    """Mean-pooled last-hidden-state embeddings of a frozen encoder, the features for text instance noise.

    Padding is excluded from the mean (attention-mask-weighted), so a text's embedding does not depend on its batch.

    Args:
        texts: the texts.
        model_name_or_path: any `AutoModel` checkpoint with a tokenizer, e.g. the model before fine-tuning.
        batch_size: texts per forward pass.
        max_length: tokens kept per text.
        device: "cpu", "cuda", ...; by default CUDA when available.

    Returns:
        A float32 array of shape (len(texts), hidden_size).

    Example:
        >>> x = text_embeddings(ds["text"], "sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> noisy = add_label_noise(ds, "instance", 0.4, seed=0, features=x)  # doctest: +SKIP
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    model = AutoModel.from_pretrained(model_name_or_path).to(device).eval()
    texts = list(texts)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            chunks.append(pooled.float().cpu().numpy())
    hidden_size = model.config.hidden_size
    return np.concatenate(chunks) if chunks else np.zeros((0, hidden_size), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- the kinds


def _symmetric(
    y: np.ndarray, rate: float, num_classes: int, include_true_class: bool, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    flip = rng.random(y.size) < rate
    noisy = y.copy()
    if include_true_class:
        noisy[flip] = rng.integers(0, num_classes, size=int(flip.sum()))
        expected = rate * (num_classes - 1) / num_classes
        note = (
            f"New labels drawn from all {num_classes} classes (include_true_class=True): the expected flip rate "
            f"is rate*(C-1)/C = {expected:.4f}."
        )
    else:  # an offset in [1, C-1] reaches every other class with equal probability and never the true one
        noisy[flip] = (y[flip] + rng.integers(1, num_classes, size=int(flip.sum()))) % num_classes
        note = f"Flipped labels drawn uniformly from the other {num_classes - 1} classes."
    return noisy, note


def _asymmetric(
    y: np.ndarray, rate: float, source_to_target: dict[int, int], num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    target = np.arange(num_classes)
    target[list(source_to_target)] = list(source_to_target.values())
    is_mapped = np.isin(y, list(source_to_target))
    flip = is_mapped & (rng.random(y.size) < rate)
    noisy = np.where(flip, target[y], y)
    share = float(is_mapped.mean()) if y.size else 0.0
    note = (
        f"Map {source_to_target}; mapped classes hold {share:.4f} of the samples, so the expected overall flip "
        f"share is rate * {share:.4f} = {rate * share:.4f}."
    )
    return noisy, note


def _instance(
    y: np.ndarray, x: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    low, high = (0.0 - rate) / INSTANCE_RATE_STD, (1.0 - rate) / INSTANCE_RATE_STD
    flip_rate = truncnorm.rvs(low, high, loc=rate, scale=INSTANCE_RATE_STD, size=y.size, random_state=rng)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    uniform = rng.random(y.size)
    noisy = y.copy()
    for c in range(num_classes):  # W[c] (d x C) drawn class by class: the same stream as one (C, d, C) draw
        projection = rng.standard_normal((x.shape[1], num_classes), dtype=np.float32)
        rows = np.flatnonzero(y == c)
        if rows.size == 0:
            continue
        scores = (x[rows] @ projection).astype(np.float64)
        scores[:, c] = -np.inf
        probs = _softmax(scores) * flip_rate[rows, None]
        probs[:, c] = 1.0 - flip_rate[rows]
        noisy[rows] = _draw(np.cumsum(probs, axis=1), uniform[rows])
    note = (
        f"Instance-dependent (Xia et al., NeurIPS 2020): q_i ~ N({rate}, {INSTANCE_RATE_STD}^2) truncated to [0, 1], "
        f"mean q = {float(flip_rate.mean()) if y.size else 0.0:.4f}; unit-norm features of dimension {x.shape[1]}."
    )
    return noisy, note


def _from_matrix(y: np.ndarray, matrix: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    cumulative = np.cumsum(matrix / matrix.sum(axis=1, keepdims=True), axis=1)
    uniform = rng.random(y.size)
    noisy = y.copy()
    for c in range(matrix.shape[0]):
        rows = np.flatnonzero(y == c)
        noisy[rows] = _draw(cumulative[c][None, :], uniform[rows])
    counts = np.bincount(y, minlength=matrix.shape[0]) / max(y.size, 1)
    expected = float(counts @ (1.0 - np.diag(matrix)))
    return noisy, f"Labels drawn from the given transition matrix; expected flip rate {expected:.4f}."


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _draw(cumulative: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Inverse-CDF categorical draw: the first class whose cumulative probability exceeds u (rows broadcast)."""
    return np.minimum((uniform[:, None] >= cumulative).sum(axis=1), cumulative.shape[1] - 1)


# ---------------------------------------------------------------------------------------------------- validation


def _check_rate(kind: str, rate: float | None) -> float:
    if kind == "matrix":
        if rate is not None:
            raise ValueError(
                f"rate must be None for kind='matrix' (got {rate!r}): the transition matrix sets the rates. "
                "Drop the rate argument."
            )
        return float("nan")
    if rate is None:
        raise ValueError(f"kind={kind!r} needs a noise rate; pass rate=<float in [0, 1]>, e.g. rate=0.4.")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)) or not 0 <= rate <= 1:
        raise ValueError(f"rate must be a number in [0, 1], got {rate!r}; e.g. rate=0.4 for 40% noise.")
    return float(rate)


def _check_arguments_apply(kind: str, **arguments: Any) -> None:
    misplaced = [name for name, value in arguments.items() if value is not None and ARGUMENT_KIND[name] != kind]
    if misplaced:
        name = misplaced[0]
        raise ValueError(
            f"{name}= only applies to kind={ARGUMENT_KIND[name]!r}, not {kind!r}; drop it or change kind."
        )


def _read_labels(dataset: datasets.Dataset, column: str) -> np.ndarray:
    if column not in dataset.column_names:
        raise ValueError(
            f"Column {column!r} not found (columns: {dataset.column_names}); pass label_column=<name> or "
            "clean_label_column=<name>."
        )
    values = dataset.with_format("arrow", columns=[column])[:][column]
    if values.null_count:
        raise ValueError(f"Column {column!r} has {values.null_count} missing labels; fill or filter them first.")
    labels = values.to_numpy(zero_copy_only=False)
    is_integral_float = np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0)
    if not (np.issubdtype(labels.dtype, np.integer) or is_integral_float) or labels.ndim != 1:
        raise ValueError(
            f"Column {column!r} must hold one integer class id per sample, got dtype {labels.dtype} "
            f"(e.g. {labels[:3].tolist()}); encode string labels with dataset.class_encode_column({column!r})."
        )
    return labels.astype(np.int64)


def _resolve_num_classes(
    dataset: datasets.Dataset,
    column: str,
    labels: np.ndarray,
    num_classes: int | None,
) -> int:
    feature = dataset.features[column]
    from_feature = feature.num_classes if isinstance(feature, datasets.ClassLabel) else None
    if num_classes is not None and from_feature is not None and num_classes != from_feature:
        raise ValueError(
            f"num_classes={num_classes} disagrees with the ClassLabel of {column!r} ({from_feature} classes); "
            f"drop num_classes or pass num_classes={from_feature}."
        )
    valid = labels[labels != IGNORE_INDEX]
    if valid.size and valid.min() < 0:
        raise ValueError(f"Column {column!r} holds the negative label {int(valid.min())}; use -100 to ignore samples.")
    num_classes = num_classes or from_feature or (int(valid.max()) + 1 if valid.size else 0)
    if valid.size and valid.max() >= num_classes:
        raise ValueError(
            f"Column {column!r} holds the label {int(valid.max())}, outside [0, num_classes={num_classes}); pass "
            f"num_classes={int(valid.max()) + 1} or fix the labels."
        )
    if num_classes < 2:
        raise ValueError(f"Label noise needs at least 2 classes, got num_classes={num_classes}; check {column!r}.")
    return int(num_classes)


def _resolve_class_map(
    class_map: str | Mapping[int | str, int | str] | None, num_classes: int, feature: Any
) -> dict[int, int]:
    if class_map is None:
        return {i: (i + 1) % num_classes for i in range(num_classes)}
    if isinstance(class_map, str):
        if class_map not in NAMED_CLASS_MAPS:
            raise ValueError(
                f"Unknown class map {class_map!r}; use one of {sorted(NAMED_CLASS_MAPS)}, a dict {{source: target}} "
                "or None for i -> (i + 1) mod C."
            )
        if num_classes != 10:
            raise ValueError(f"The {class_map!r} map needs 10 classes, got {num_classes}; pass a dict instead.")
        return dict(NAMED_CLASS_MAPS[class_map])
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else []

    def class_id(value: int | str) -> int:
        if isinstance(value, str):
            if value not in names:
                raise ValueError(
                    f"class_map names the unknown class {value!r}; known names: {names or 'none (not a ClassLabel)'}. "
                    "Use class ids or the ClassLabel's names."
                )
            return names.index(value)
        if isinstance(value, bool) or int(value) != value or not 0 <= int(value) < num_classes:
            raise ValueError(f"class_map names the unknown class {value!r}; class ids are 0..{num_classes - 1}.")
        return int(value)

    resolved: dict[int, int] = {}
    for source, target in dict(class_map).items():
        source_id, target_id = class_id(source), class_id(target)
        if source_id == target_id:
            raise ValueError(f"class_map maps class {source!r} to itself; remove that entry (unmapped = untouched).")
        if source_id in resolved:
            raise ValueError(f"class_map gives class {source!r} two targets; keep one entry per source class.")
        resolved[source_id] = target_id
    if not resolved:
        raise ValueError("class_map is empty; give at least one {source: target} pair or None for i -> (i + 1) mod C.")
    return resolved


def _check_transition_matrix(transition_matrix: ArrayLike | None, num_classes: int) -> np.ndarray:
    if transition_matrix is None:
        raise ValueError("kind='matrix' needs transition_matrix=<C x C row-stochastic array>.")
    matrix = np.asarray(transition_matrix, dtype=np.float64)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(
            f"transition_matrix must have shape ({num_classes}, {num_classes}) for {num_classes} classes, got "
            f"{matrix.shape}; pass num_classes= if the labels do not show every class."
        )
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise ValueError("transition_matrix has negative or non-finite entries; entries are probabilities >= 0.")
    row_sums = matrix.sum(axis=1)
    bad = np.flatnonzero(np.abs(row_sums - 1.0) > ROW_SUM_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"transition_matrix rows must sum to 1 (row {int(bad[0])} sums to {row_sums[bad[0]]:.6g}); normalise "
            "with matrix / matrix.sum(axis=1, keepdims=True)."
        )
    return matrix


def _instance_features(dataset: datasets.Dataset, features: ArrayLike | None, image_column: str | None) -> np.ndarray:
    if features is None and image_column is None:
        raise ValueError(
            "kind='instance' needs per-sample features: pass features=<(N, d) array> (e.g. from text_embeddings) "
            "or image_column=<name of an image column>."
        )
    if features is not None:
        x = np.asarray(features, dtype=np.float32)  # float32 halves the memory of image-sized features
        x = x.reshape(len(x), -1) if x.ndim > 1 else x
        if x.ndim != 2 or x.shape[0] != len(dataset):
            raise ValueError(
                f"features must have one row per sample: shape ({len(dataset)}, d) expected, got {np.shape(features)}."
            )
        return x
    if image_column not in dataset.column_names:
        raise ValueError(f"image_column {image_column!r} not found (columns: {dataset.column_names}).")
    images = dataset.select_columns([image_column]).with_format("numpy")
    rows = []
    for batch in images.iter(batch_size=IMAGE_BATCH_SIZE):
        rows += [np.asarray(image, dtype=np.float32).ravel() for image in batch[image_column]]
    if len({row.size for row in rows}) > 1:
        raise ValueError(f"Images in {image_column!r} differ in size; resize them or pass features= instead.")
    return np.stack(rows) if rows else np.zeros((0, 1), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- outputs


def _summarize(
    clean: np.ndarray,
    noisy: np.ndarray,
    num_classes: int,
    kind: str,
    rate: float | None,
    mapped_rate: float | None,
    seed: int | None,
    note: str,
) -> NoiseSummary:
    valid = (clean != IGNORE_INDEX) & (noisy != IGNORE_INDEX)
    clean, noisy = clean[valid], noisy[valid]
    counts = np.bincount(clean * num_classes + noisy, minlength=num_classes**2).reshape(num_classes, num_classes)
    totals = counts.sum(axis=1, keepdims=True)
    matrix = np.where(totals > 0, counts / np.maximum(totals, 1), np.eye(num_classes))
    realized = float(np.mean(clean != noisy)) if clean.size else 0.0
    requested = None if rate is None or np.isnan(rate) else rate
    return NoiseSummary(kind, requested, realized, mapped_rate, matrix, num_classes, seed, note.strip())


def _replace_labels(
    dataset: datasets.Dataset,
    new_labels: np.ndarray,
    current_labels: np.ndarray,
    label_column: str,
    clean_label_column: str,
) -> datasets.Dataset:
    """Put `new_labels` in `label_column`, moving the current labels to `clean_label_column` unless it exists."""
    feature = dataset.features[label_column]
    order = dataset.column_names
    result = dataset
    if clean_label_column not in order:
        result = result.add_column(clean_label_column, current_labels, feature=feature)
        order = order + [clean_label_column]
    result = result.remove_columns(label_column).add_column(label_column, new_labels, feature=feature)
    return result.select_columns(order)
