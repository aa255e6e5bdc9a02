"""An `evaluate` metric for learning with noisy labels: how well noise scores find mislabelled training samples,
plus (optionally) clean test accuracy.

Load it offline with `hf_lnl.metrics.load_noisy_label_metric()` or `evaluate.load("<path to this folder>")`.
The module is self-contained on purpose: `evaluate` copies it into `$HF_HOME/modules`, where relative imports break
and `hf_lnl` may not be importable, so it computes with scikit-learn the same numbers as
`hf_lnl.metrics.noise_detection_metrics` (a test checks that they agree).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

IGNORE_INDEX = -100  # PyTorch's CrossEntropyLoss ignore_index: such rows are left out

_DESCRIPTION = """Noise-detection metrics: a training sample is flagged as mislabelled when its noise score is above
the threshold (strict) and is truly mislabelled when its label differs from its clean label. Rows whose label or
clean label is -100 are left out. Returns precision, recall and F1 of the flags (0 when undefined), the AUROC of the
scores (NaN when every sample is clean or every sample is noisy), the flagged fraction (estimated_noise_rate), the
true noise rate, num_flagged and num_samples; and test_accuracy when test predictions and references are given."""

_KWARGS_DESCRIPTION = """
Args:
    noise_scores (list of float): per-sample noise scores, higher = more likely mislabelled.
    labels (list of int): the (noisy) training labels.
    clean_labels (list of int): the true labels.
    threshold (float, default 0.5): a sample is flagged when its score is strictly above it.
    test_predictions (list of int, optional): predicted classes on a clean test set.
    test_references (list of int, optional): the test labels.
Returns:
    dict with precision, recall, f1, auroc, estimated_noise_rate, true_noise_rate, num_flagged, num_samples
    and, with test predictions, test_accuracy.
Example:
    >>> metric = evaluate.load("hf_lnl/evaluate_modules/noisy_label_metrics")
    >>> metric.compute(noise_scores=[0.9, 0.2], labels=[1, 0], clean_labels=[0, 0])["precision"]
    1.0
"""

_CITATION = """@article{song2023survey,
  title={Learning From Noisy Labels With Deep Neural Networks: A Survey},
  author={Song, Hwanjun and Kim, Minseok and Park, Dongmin and Shin, Yooju and Lee, Jae-Gil},
  journal={IEEE Transactions on Neural Networks and Learning Systems},
  year={2023}
}"""


class NoisyLabelMetrics(evaluate.Metric):
    """Precision / recall / F1 / AUROC of noise detection, and optional test accuracy."""

    def _info(self) -> evaluate.MetricInfo:
        # float64 scores: float32 storage would move scores that sit next to the threshold across it.
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "noise_scores": datasets.Value("float64"),
                    "labels": datasets.Value("int64"),
                    "clean_labels": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(
        self,
        noise_scores,
        labels,
        clean_labels,
        threshold: float = 0.5,
        test_predictions=None,
        test_references=None,
    ) -> dict:
        scores = np.asarray(list(noise_scores), dtype=np.float64)
        noisy, clean = np.asarray(list(labels), dtype=np.int64), np.asarray(list(clean_labels), dtype=np.int64)
        keep = (noisy != IGNORE_INDEX) & (clean != IGNORE_INDEX)
        scores, truth = scores[keep], (noisy != clean)[keep]
        if scores.size == 0:
            raise ValueError("No sample to score (empty input, or every label is -100).")
        flagged = scores > threshold
        both_classes = 0 < truth.sum() < truth.size
        result = {
            "precision": float(precision_score(truth, flagged, zero_division=0)),
            "recall": float(recall_score(truth, flagged, zero_division=0)),
            "f1": float(f1_score(truth, flagged, zero_division=0)),
            "auroc": float(roc_auc_score(truth, scores)) if both_classes else float("nan"),
            "estimated_noise_rate": float(flagged.mean()),
            "true_noise_rate": float(truth.mean()),
            "num_flagged": int(flagged.sum()),
            "num_samples": int(truth.size),
        }
        if (test_predictions is None) != (test_references is None):
            raise ValueError("Give both test_predictions and test_references, or neither.")
        if test_predictions is not None:
            predictions, references = np.asarray(test_predictions), np.asarray(test_references)
            if predictions.ndim == 2:  # logits
                predictions = predictions.argmax(axis=-1)
            if predictions.shape != references.shape:
                raise ValueError(f"test_predictions {predictions.shape} and test_references {references.shape} differ")
            valid = references != IGNORE_INDEX
            result["test_accuracy"] = float(np.mean(predictions[valid] == references[valid]))
        return result
