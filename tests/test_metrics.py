from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from hf_lnl.metrics import (
    METRIC_MODULE_PATH,
    accuracy,
    compute_accuracy_metrics,
    load_noisy_label_metric,
    noise_detection_metrics,
)


def _random_report(seed: int, n: int = 500) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 5, n)
    noisy = np.where(rng.random(n) < 0.3, rng.integers(0, 5, n), clean)
    noisy[rng.random(n) < 0.05] = -100
    clean[rng.random(n) < 0.05] = -100
    score = np.clip(0.5 * (noisy != clean) + rng.normal(0.25, 0.25, n), 0, 1).round(2)  # ties at the threshold
    return {"noise_score": score, "label": noisy, "clean_label": clean}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.75])
def test_agrees_with_sklearn(seed, threshold):
    report = _random_report(seed)
    keep = (report["label"] != -100) & (report["clean_label"] != -100)
    truth = (report["label"] != report["clean_label"])[keep]
    flagged = report["noise_score"][keep] > threshold
    result = noise_detection_metrics(
        scores=report["noise_score"],
        noisy_labels=report["label"],
        clean_labels=report["clean_label"],
        threshold=threshold,
    )
    assert result["num_samples"] == keep.sum() < len(keep)
    assert result["precision"] == pytest.approx(precision_score(truth, flagged, zero_division=0))
    assert result["recall"] == pytest.approx(recall_score(truth, flagged, zero_division=0))
    assert result["f1"] == pytest.approx(f1_score(truth, flagged, zero_division=0))
    assert result["auroc"] == pytest.approx(roc_auc_score(truth, report["noise_score"][keep]))
    assert result["estimated_noise_rate"] == pytest.approx(flagged.mean())
    assert result["true_noise_rate"] == pytest.approx(truth.mean())
    assert result["num_flagged"] == flagged.sum()


def test_threshold_is_strict_and_single_class_auroc_is_nan():
    result = noise_detection_metrics(scores=[0.5, 0.5, 0.9], is_noisy=[True, False, False])
    assert result["num_flagged"] == 1 and result["precision"] == 0.0 and result["recall"] == 0.0
    clean_only = noise_detection_metrics(scores=[0.1, 0.9], noisy_labels=[1, 2], clean_labels=[1, 2])
    assert math.isnan(clean_only["auroc"]) and clean_only["precision"] == 0.0 and clean_only["true_noise_rate"] == 0.0


def test_report_as_dataset_dict_and_dataframe():
    report = _random_report(7)
    expected = noise_detection_metrics(report)
    as_dataset = datasets.Dataset.from_dict(report)
    assert noise_detection_metrics(as_dataset) == expected
    assert noise_detection_metrics(as_dataset.to_pandas()) == expected
    shuffled = as_dataset.shuffle(seed=0)
    assert noise_detection_metrics(shuffled)["auroc"] == pytest.approx(expected["auroc"])


def test_input_errors():
    with pytest.raises(ValueError, match="either a report or scores="):
        noise_detection_metrics(_random_report(0), scores=[0.1])
    with pytest.raises(ValueError, match="no 'noise_score' column"):
        noise_detection_metrics({"label": [0], "clean_label": [0]})
    with pytest.raises(ValueError, match="Need scores= and either is_noisy="):
        noise_detection_metrics(scores=[0.1], noisy_labels=[0])
    with pytest.raises(ValueError, match="every label is -100"):
        noise_detection_metrics(scores=[0.1], noisy_labels=[-100], clean_labels=[0])


def test_accuracy_and_trainer_compute_metrics():
    assert accuracy([0, 1, 1, 2], [0, 1, 0, 2]) == 0.75
    assert accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), [1, 1]) == 0.5
    assert accuracy([0, 1, 1], [0, -100, 0]) == 0.5
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0]])
    eval_pred = SimpleNamespace(predictions=logits, label_ids=np.array([0, 2, 0]))
    assert compute_accuracy_metrics(eval_pred) == {"accuracy": pytest.approx(2 / 3)}
    eval_pred = SimpleNamespace(predictions=(logits, np.zeros((3, 4))), label_ids=np.array([0, 2, 1]))
    assert compute_accuracy_metrics(eval_pred) == {"accuracy": 1.0}


def test_evaluate_module_offline_matches(tmp_path, monkeypatch):
    """`evaluate.load` copies the module into its modules cache: isolate that cache (and the import system) in
    tmp_path so the check neither reads nor writes the user's $HF_HOME."""
    import evaluate.config

    modules = tmp_path / "modules"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", modules)
    monkeypatch.setattr(evaluate.config, "HF_METRICS_CACHE", tmp_path / "metrics")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_CACHE", tmp_path / "evaluate")
    monkeypatch.setattr(sys, "path", [str(modules), *sys.path])  # found before any other modules cache
    for name in [name for name in sys.modules if name.split(".")[0] == "evaluate_modules"]:
        monkeypatch.delitem(sys.modules, name)

    metric = load_noisy_label_metric()
    assert any(modules.rglob(f"{METRIC_MODULE_PATH.name}.py"))
    for seed in range(3):
        report = _random_report(seed)
        result = metric.compute(
            noise_scores=report["noise_score"],
            labels=report["label"],
            clean_labels=report["clean_label"],
            threshold=0.4,
            test_predictions=[1, 2, 3, 0],
            test_references=[1, 2, 0, -100],
        )
        expected = noise_detection_metrics(report, threshold=0.4)
        assert result.pop("test_accuracy") == pytest.approx(2 / 3)
        assert result == pytest.approx(expected)
