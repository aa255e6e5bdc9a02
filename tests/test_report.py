"""The noise report as an artefact: Parquet + plots, the model card, Hub pushes (mocked), cleaning, cleanlab."""

import os

import numpy as np
import pytest
from conftest import text_dataset, tiny_bert
from huggingface_hub import HfApi, ModelCard, RepoUrl
from PIL import Image

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer
from hf_lnl.report import HISTOGRAM_FILE, NOISE_RATE_FILE, REPORT_FILE, clean_dataset, cleanlab_inputs


def _noisy_text(n=48):
    data = text_dataset(n, seed=2)
    clean = np.asarray(data["label"][:])
    noisy = clean.copy()
    noisy[: n // 4] = (noisy[: n // 4] + 1) % 4
    return data.remove_columns("label").add_column("label", noisy.tolist()).add_column("clean_label", clean.tolist())


def _trained(tmp_path, method="none", **kwargs):
    args = NoisyLabelConfig(
        str(tmp_path / "run"), lnl_method=method, num_train_epochs=2, per_device_train_batch_size=8,
        learning_rate=1e-3, report_to=[], use_cpu=True, disable_tqdm=True, eval_strategy="epoch",
        save_strategy="epoch", hub_model_id="me/noisy-bert", **kwargs,
    )
    data = _noisy_text()
    trainer = NoisyLabelTrainer(
        model=tiny_bert(), args=args, train_dataset=data, eval_dataset=text_dataset(16, seed=7),
        compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())},
    )
    trainer.train()
    return trainer, data


@pytest.fixture
def hub_calls(monkeypatch):
    calls = {"create_repo": [], "upload_folder": []}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"].append((repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = {}
        for root, _, names in os.walk(folder_path):
            for name in names:
                full = os.path.join(root, name)
                files[os.path.relpath(full, folder_path)] = open(full, "rb").read()
        calls["upload_folder"].append({"repo_id": repo_id, "files": files, **kwargs})
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_report_artifacts_are_written_at_the_end_of_training(tmp_path):
    trainer, _ = _trained(tmp_path)
    out = tmp_path / "run"
    for name in (REPORT_FILE, HISTOGRAM_FILE, NOISE_RATE_FILE):
        assert (out / name).is_file(), name
    for name in (HISTOGRAM_FILE, NOISE_RATE_FILE):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] >= 400 and image.size[1] >= 300
    import datasets

    saved = datasets.Dataset.from_parquet(str(out / REPORT_FILE))
    assert saved["wrong_events"][:] == trainer.noise_report()["wrong_events"][:]
    assert len(trainer.noise_rate_history) == 2


def test_push_to_hub_uploads_model_card_report_and_plots(tmp_path, hub_calls):
    trainer, _ = _trained(tmp_path)
    trainer.push_to_hub(dataset_name="synthetic-tokens")
    (upload,) = hub_calls["upload_folder"]
    files = upload["files"]
    assert upload["repo_id"] == "me/noisy-bert"
    for name in ("model.safetensors", "config.json", "README.md", REPORT_FILE, HISTOGRAM_FILE, NOISE_RATE_FILE):
        assert name in files, name
    card = ModelCard(files["README.md"].decode())
    data = card.data.to_dict()
    assert {"hf-lnl", "noisy-labels", "none"} <= set(data["tags"])
    metrics = {m["type"]: m["value"] for result in data["model-index"][0]["results"] for m in result["metrics"]}
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert "f1" in metrics and "auroc" in metrics
    assert "@inproceedings" not in card.text  # plain cross-entropy cites no paper (each method cites its own)
    assert "25.0% of the training labels differ" in card.text


def test_card_is_written_with_every_checkpoint(tmp_path):
    _trained(tmp_path)
    checkpoints = sorted(p for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint-"))
    assert checkpoints and all((c / "README.md").is_file() for c in checkpoints)


def test_push_noise_report_to_hub_as_a_dataset(tmp_path, hub_calls):
    trainer, _ = _trained(tmp_path)
    trainer.push_noise_report_to_hub("me/noise-report")
    assert hub_calls["create_repo"][0][1]["repo_type"] == "dataset"
    (upload,) = hub_calls["upload_folder"]
    assert upload["repo_type"] == "dataset"
    assert {REPORT_FILE, HISTOGRAM_FILE, "README.md"} <= set(upload["files"])


@pytest.mark.parametrize("action", ["drop", "relabel"])
def test_cleaned_dataset_trains_again(tmp_path, action):
    trainer, data = _trained(tmp_path)
    report = trainer.noise_report()
    flagged = int((np.asarray(report["noise_score"][:]) > 0.5).sum())
    assert flagged > 0
    cleaned = clean_dataset(data, report, threshold=0.5, action=action)
    assert cleaned.num_rows == (data.num_rows - flagged if action == "drop" else data.num_rows)
    assert cleaned["sample_index"][:] == list(range(cleaned.num_rows))
    assert "source_index" in cleaned.column_names
    if action == "relabel":
        predicted = np.asarray(report["predicted_label"][:])
        scores = np.asarray(report["noise_score"][:])
        np.testing.assert_array_equal(
            np.asarray(cleaned["label"][:])[scores > 0.5], predicted[scores > 0.5]
        )
    again = NoisyLabelTrainer(
        model=tiny_bert(),
        args=NoisyLabelConfig(str(tmp_path / "again"), num_train_epochs=1, report_to=[], use_cpu=True,
                              save_strategy="no", disable_tqdm=True),
        train_dataset=cleaned,
    )
    again.train()
    assert again.noise_report().num_rows == cleaned.num_rows


def test_cleanlab_export(tmp_path):
    trainer, _ = _trained(tmp_path)
    labels, pred_probs = cleanlab_inputs(trainer)
    assert labels.shape == (48,) and pred_probs.shape == (48, 4)
    np.testing.assert_allclose(pred_probs.sum(axis=1), 1.0, atol=1e-5)
    filters = pytest.importorskip("cleanlab.filter")
    issues = filters.find_label_issues(labels=labels, pred_probs=pred_probs)
    assert issues.shape == (48,)
