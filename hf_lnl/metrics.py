"""Metrics: noise detection (precision / recall / F1 / AUROC of flagged samples), accuracy, and an offline
`evaluate` module (`load_noisy_label_metric`) computing the same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from .data import IGNORE_INDEX

__all__ = [
    "accuracy",
    "compute_accuracy_metrics",
    "estimated_noise_rate",
    "label_correction_metrics",
    "load_noisy_label_metric",
    "noise_detection_metrics",
]

REPORT_COLUMNS = ("noise_score", "label", "clean_label")
METRIC_MODULE_PATH = Path(__file__).resolve().parent / "evaluate_modules" / "noisy_label_metrics"


def estimated_noise_rate(noise_scores: ArrayLike, threshold: float = 0.5) -> float:
    """The share of samples flagged as mislabelled: `noise_score > threshold` (0 for no samples).

    Example:
        >>> estimated_noise_rate([0.9, 0.2, 0.6, 0.1])
        0.5
    """
    scores = np.asarray(noise_scores, dtype=np.float64)
    return float((scores > threshold).mean()) if scores.size else 0.0


def noise_detection_metrics(
    report: Any = None,
    *,
    scores: ArrayLike | None = None,
    noisy_labels: ArrayLike | None = None,
    clean_labels: ArrayLike | None = None,
    is_noisy: ArrayLike | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """How well per-sample noise scores find the mislabelled samples.

    A sample is *flagged* when `noise_score > threshold` (strict) and *noisy* when its label differs from its clean
    label (or `is_noisy` says so). Rows whose noisy or clean label is -100 are left out.

    Args:
        report: a noise report with columns `noise_score`, `label` and `clean_label`: a `datasets.Dataset`, a pandas
            DataFrame or a dict of arrays. Give either `report` or the arrays.
        scores: per-sample noise scores (higher = more likely noisy).
        noisy_labels: the training labels.
        clean_labels: the true labels.
        is_noisy: the truth directly, instead of the two label arrays.
        threshold: the flagging threshold.

    Returns:
        `precision`, `recall`, `f1` of the flags (0 when undefined, as scikit-learn's `zero_division=0`), `auroc`
        of the scores (NaN when all samples are clean or all noisy: it is undefined), `estimated_noise_rate` (the
        flagged fraction), `true_noise_rate`, `num_flagged` and `num_samples`.

    Example:
        >>> noise_detection_metrics(scores=[0.9, 0.1, 0.7], noisy_labels=[1, 0, 2], clean_labels=[0, 0, 2])["recall"]
        1.0
    """
    scores, truth = _detection_inputs(report, scores, noisy_labels, clean_labels, is_noisy)
    flagged = scores > threshold
    both_classes = 0 < truth.sum() < truth.size
    return {
        "precision": float(precision_score(truth, flagged, zero_division=0)),
        "recall": float(recall_score(truth, flagged, zero_division=0)),
        "f1": float(f1_score(truth, flagged, zero_division=0)),
        "auroc": float(roc_auc_score(truth, scores)) if both_classes else float("nan"),
        "estimated_noise_rate": estimated_noise_rate(scores, threshold),
        "true_noise_rate": float(truth.mean()),
        "num_flagged": int(flagged.sum()),
        "num_samples": int(truth.size),
    }


def label_correction_metrics(report: Any) -> dict[str, float]:
    """How often a method's label corrections are right: needs the report columns `label`, `corrected_label` and
    `clean_label` (a method that corrects labels writes `corrected_label`; the clean labels come from the user).

    Returns:
        `num_corrected` (samples whose corrected label differs from the given one), `rate` (their share), `accuracy`
        (share of those corrections that equal the clean label; NaN when none was made), `label_accuracy_before` /
        `label_accuracy_after` (share of all training labels equal to the clean label, given vs corrected). Rows
        whose given or clean label is -100 are left out.

    Example:
        >>> report = {"label": [1, 0, 2], "corrected_label": [0, 0, 1], "clean_label": [0, 0, 2]}
        >>> label_correction_metrics(report)["accuracy"]
        0.5
    """
    given, corrected, clean = (_report_column(report, c) for c in ("label", "corrected_label", "clean_label"))
    if not given.shape == corrected.shape == clean.shape:
        raise ValueError(f"label, corrected_label and clean_label differ in length: {given.shape}, {corrected.shape}, "
                         f"{clean.shape}.")  # fmt: skip
    keep = (given != IGNORE_INDEX) & (clean != IGNORE_INDEX)
    given, corrected, clean = given[keep], corrected[keep], clean[keep]
    changed = corrected != given
    return {
        "num_corrected": int(changed.sum()),
        "rate": float(changed.mean()) if given.size else 0.0,
        "accuracy": float((corrected[changed] == clean[changed]).mean()) if changed.any() else float("nan"),
        "label_accuracy_before": float((given == clean).mean()) if given.size else float("nan"),
        "label_accuracy_after": float((corrected == clean).mean()) if given.size else float("nan"),
    }


def accuracy(predictions: ArrayLike, references: ArrayLike) -> float:
    """Fraction of correct predictions; 2-D predictions are logits (argmax taken); references of -100 are skipped.

    Example:
        >>> accuracy([0, 1, 1], [0, 1, 0])
        0.6666666666666666
    """
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    if predictions.shape != references.shape:
        raise ValueError(f"predictions {predictions.shape} and references {references.shape} differ in shape.")
    keep = references != IGNORE_INDEX
    if not keep.any():
        raise ValueError("No reference to score (empty, or all -100).")
    return float(np.mean(predictions[keep] == references[keep]))


def compute_accuracy_metrics(eval_pred: Any) -> dict[str, float]:
    """A `Trainer(compute_metrics=...)` function: argmax of the logits against the labels.

    Example:
        >>> trainer = Trainer(model, args, compute_metrics=compute_accuracy_metrics)  # doctest: +SKIP
    """
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits  # models may also return hidden states
    return {"accuracy": accuracy(np.asarray(logits).argmax(axis=-1), labels)}


def load_noisy_label_metric(**kwargs: Any) -> Any:
    """`evaluate.load` of the package's `noisy_label_metrics` module (works offline).

    `evaluate` copies the module into `$HF_HOME/modules`. Its `compute(noise_scores=, labels=, clean_labels=,
    threshold=0.5, test_predictions=None, test_references=None)` returns `noise_detection_metrics`'s numbers, plus
    `test_accuracy` when test predictions are given.

    Example:
        >>> metric = load_noisy_label_metric()
        >>> metric.compute(noise_scores=[0.9, 0.2], labels=[1, 0], clean_labels=[0, 0])["f1"]
        1.0
    """
    import evaluate

    return evaluate.load(str(METRIC_MODULE_PATH), **kwargs)


def _detection_inputs(
    report: Any,
    scores: ArrayLike | None,
    noisy_labels: ArrayLike | None,
    clean_labels: ArrayLike | None,
    is_noisy: ArrayLike | None,
) -> tuple[np.ndarray, np.ndarray]:
    if report is not None:
        if scores is not None or noisy_labels is not None or clean_labels is not None:
            raise ValueError("Give either a report or scores= / noisy_labels= / clean_labels=, not both.")
        scores, noisy_labels, clean_labels = (_report_column(report, c) for c in REPORT_COLUMNS)
    if scores is None or (is_noisy is None and (noisy_labels is None or clean_labels is None)):
        raise ValueError("Need scores= and either is_noisy= or both noisy_labels= and clean_labels= (or a report).")
    scores = np.asarray(scores, dtype=np.float64).ravel()
    keep = np.ones(scores.size, dtype=bool)
    if noisy_labels is not None and clean_labels is not None:
        noisy, clean = np.asarray(noisy_labels).ravel(), np.asarray(clean_labels).ravel()
        if noisy.shape != clean.shape:
            raise ValueError(f"noisy_labels {noisy.shape} and clean_labels {clean.shape} differ in length.")
        keep = (noisy != IGNORE_INDEX) & (clean != IGNORE_INDEX)
        truth = noisy != clean
    if is_noisy is not None:
        truth = np.asarray(is_noisy).astype(bool).ravel()
    if truth.shape != scores.shape or keep.shape != scores.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({max(truth.size, keep.size)}) differ in length.")
    scores, truth = scores[keep], truth[keep]
    if scores.size == 0:
        raise ValueError("No sample to score (empty input, or every label is -100).")
    if not np.isfinite(scores).all():
        raise ValueError("Noise scores must be finite; found NaN or inf.")
    return scores, truth


def _report_column(report: Any, name: str) -> np.ndarray:
    columns = report.column_names if hasattr(report, "column_names") else list(report.keys())
    if name not in columns:
        raise ValueError(f"The report has no {name!r} column (columns: {list(columns)}).")
    if hasattr(report, "with_format"):  # datasets.Dataset: read through Arrow, honouring any indices mapping
        return report.with_format("arrow", columns=[name])[:][name].to_numpy(zero_copy_only=False)
    values = report[name]
    return values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
