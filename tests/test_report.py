"""The noise report as an artefact: Parquet + plots, the model card, Hub pushes (mocked), cleaning, cleanlab."""

import os

import numpy as np
import pytest
from conftest import text_dataset, tiny_bert
from huggingface_hub import HfApi, ModelCard, RepoUrl
from huggingface_hub.repocard_data import model_index_to_eval_results
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
    assert {"hf-lnl", "noisy-labels", "none", "generated_from_trainer"} <= set(data["tags"])
    assert data["datasets"] == ["synthetic-tokens"]
    (result,) = data["model-index"][0]["results"]
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"] == {"name": "synthetic-tokens", "type": "synthetic-tokens", "split": "validation"}
    assert [m["type"] for m in result["metrics"]] == ["accuracy"]  # detection scores the labels, not the classifier
    assert "| noise detection on the training set | value |" in card.text and "| AUROC |" in card.text
    assert "@inproceedings" not in card.text  # plain cross-entropy cites no paper (each method cites its own)
    assert "25.0% of the training labels differ" in card.text
    assert "- learning_rate: 0.001" in card.text and "- num_epochs: 2" in card.text  # Trainer's hyper-parameters
    assert "| Training Loss | Epoch | Step | Estimated Noise Rate | Validation Loss | Accuracy |" in card.text
    assert 'pipeline("text-classification", model="me/noisy-bert")' in card.text
    assert f"({REPORT_FILE}: " not in card.text and f"(`{REPORT_FILE}`: `sample_index`" in card.text


def test_card_is_written_with_every_checkpoint(tmp_path):
    _trained(tmp_path)
    checkpoints = sorted(p for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint-"))
    assert checkpoints and all((c / "README.md").is_file() for c in checkpoints)
    for checkpoint in checkpoints:  # the report and plots are saved at the end of training, not in checkpoints
        text = (checkpoint / "README.md").read_text()
        assert "is in this repository" not in text and "it is not in this folder" in text
        assert HISTOGRAM_FILE not in text


def test_card_files_the_test_accuracy_alone_with_its_split(tmp_path):
    trainer, _ = _trained(tmp_path, method="gce")
    test = trainer.evaluate(text_dataset(16, seed=8), metric_key_prefix="test")
    trainer.create_model_card(dataset="synthetic-tokens")
    card = ModelCard.load(str(tmp_path / "run" / "README.md"))
    (result,) = model_index_to_eval_results(card.data.to_dict()["model-index"])[1]
    assert (result.dataset_split, result.metric_type, result.dataset_name) == ("test", "accuracy", "synthetic-tokens")
    assert result.metric_value == test["test_accuracy"]
    assert "| accuracy | test |" in card.text and "| accuracy | validation |" in card.text
    assert card.text.count("@inproceedings") == 1 and "zhang2018" in card.text  # GCE's paper, alone


def test_report_keeps_class_names_and_the_source_row_id(tmp_path):
    import datasets

    data = _noisy_text()
    names = datasets.ClassLabel(names=["w", "x", "y", "z"])
    data = data.cast_column("label", names).add_column("source_index", list(range(500, 548)))
    args = NoisyLabelConfig(
        str(tmp_path / "run"), num_train_epochs=1, report_to=[], use_cpu=True, disable_tqdm=True, save_strategy="no"
    )
    order = np.random.default_rng(1).permutation(48)  # the rows' sample_index: the report follows it, not row order
    data = data.add_column("sample_index", order)
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=data)
    trainer.train()
    saved = datasets.Dataset.from_parquet(str(tmp_path / "run" / REPORT_FILE))
    for column in ("label", "predicted_label", "clean_label"):
        assert saved.features[column] == names, column
    rows = np.argsort(order)  # report row i is the dataset row whose sample_index is i
    assert saved["source_index"][:] == (500 + rows).tolist()
    assert saved["label"][:] == np.asarray(data["label"][:])[rows].tolist()


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


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures the report's plots save, kept for inspection."""
    import matplotlib.figure

    figures, savefig = [], matplotlib.figure.Figure.savefig

    def keep(figure, *args, **kwargs):
        figures.append(figure)
        return savefig(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures


def test_plots_split_clean_from_flipped_and_mark_the_threshold_and_true_rate(tmp_path, saved_figures):
    trainer, _ = _trained(tmp_path)  # 2 epochs: noise_score = wrong events / 2, flagged above 0.5, i.e. from 2 on
    histogram, noise_rate = saved_figures[-2:]
    axis = histogram.axes[0]
    names = [text.get_text() for text in axis.get_legend().get_texts()]
    assert names == ["clean label", "flipped label", "flagged from here: noise_score > 0.5"]
    (line,) = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
    assert line.get_xdata()[0] == pytest.approx(1.5)  # between the bars of 1 and 2 wrong events
    report = trainer.noise_report()
    flipped = np.asarray(report["label"][:]) != np.asarray(report["clean_label"][:])
    heights = [sum(bar.get_height() for bar in container) for container in axis.containers]
    assert heights == [(~flipped).sum(), (flipped).sum()]  # stacked: clean samples, then flipped ones
    axis = noise_rate.axes[0]
    low, high = axis.get_xlim()
    assert all(float(tick).is_integer() for tick in axis.get_xticks() if low <= tick <= high)
    true_line = [line for line in axis.get_lines() if line.get_label().startswith("true:")]
    assert len(true_line) == 1 and true_line[0].get_ydata()[0] == pytest.approx(0.25)
    assert true_line[0].get_label() == "true: 25.0% flipped"


def test_histogram_marks_the_mixture_boundary(tmp_path, saved_figures):
    from hf_lnl.mixture import BetaMixture
    from hf_lnl.report import plot_wrong_event_histogram

    counts = np.array([0] * 30 + [1] * 10 + [5] * 8 + [6] * 12)
    mixture = BetaMixture().fit(counts)
    report = _report_of(counts, mixture.predict_proba(counts)[:, 1])
    plot_wrong_event_histogram(report, str(tmp_path / "hist.png"), mixture=mixture, max_count=6)
    axis = saved_figures[-1].axes[0]
    (line,) = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
    first = int(line.get_xdata()[0] + 0.5)
    p_noisy = mixture.predict_proba(np.arange(7))[:, 1]
    assert p_noisy[first] > 0.5 >= p_noisy[first - 1]
    assert "flagged from here: p_noisy > 0.5 (global mixture)" in [t.get_text() for t in axis.get_legend().get_texts()]


def _report_of(counts, scores):
    import datasets

    return datasets.Dataset.from_dict(
        {"label": np.zeros(len(counts), dtype=int), "wrong_events": counts, "noise_score": scores.astype(np.float32)}
    )
