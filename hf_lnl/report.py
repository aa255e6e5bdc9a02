"""The per-sample noise report as an artefact: Parquet, plots, model card, cleaned datasets, cleanlab export."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

if TYPE_CHECKING:
    from .trainer import NoisyLabelTrainer

logger = logging.getLogger(__name__)

REPORT_FILE = "noise_report.parquet"
HISTOGRAM_FILE = "wrong_events_histogram.png"
NOISE_RATE_FILE = "noise_rate_per_epoch.png"
CARD_TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
METHOD_TITLES = {
    "none": "plain cross-entropy with wrong-event tracking",
    "ido": "IDO (instance-level difficulty modelling and dynamic optimisation)",
    "clid_mu": "CLID-MU (cross-layer information divergence meta update)",
    "gce": "generalized cross-entropy (GCE)",
    "sce": "symmetric cross-entropy (SCE)",
}
METHOD_DESCRIPTIONS = {
    "none": "Ordinary cross-entropy fine-tuning; hf_lnl counted each sample's wrong events (training forwards whose "
    "prediction disagreed with the given label). `noise_score` = wrong events / the most possible.",
    "ido": "Stage 1 fine-tunes with cross-entropy while counting wrong events and picks a base model by prediction "
    "change; stage 2 restarts from it and trains on a weak and a strong view with a per-sample loss weighted by a "
    "beta mixture fitted on the counts. `noise_score` = the mixture's p_noisy.",
    "clid_mu": "A meta-weight network weights each sample's loss; it is trained without clean data by minimising "
    "the cross-layer information divergence between the classifier's features and its predictions after a look-ahead "
    "step. `noise_score` is derived from the sample's meta weight.",
    "gce": "Generalized cross-entropy `(1 - p_y^q) / q`, a loss that bounds each sample's influence.",
    "sce": "Symmetric cross-entropy `alpha CE + beta RCE`, cross-entropy plus its reverse.",
}
CITATIONS = {
    "ido": """@inproceedings{zhang2025ido,
  title     = {Handling Label Noise via Instance-Level Difficulty Modeling and Dynamic Optimization},
  author    = {Zhang and others},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2025},
  eprint    = {2505.00812},
  archivePrefix = {arXiv}
}""",
    "clid_mu": """@inproceedings{hu2025clidmu,
  title     = {Cross-Layer Information Divergence Based Meta Update Strategy for Learning with Noisy Labels},
  author    = {Hu and others},
  booktitle = {Proceedings of the ACM SIGKDD Conference on Knowledge Discovery and Data Mining (KDD)},
  year      = {2025},
  eprint    = {2507.11807},
  archivePrefix = {arXiv}
}""",
}
FRAMEWORKS = ("hf_lnl", "transformers", "torch", "datasets", "accelerate")


def estimated_noise_rate(noise_scores: np.ndarray, threshold: float = 0.5) -> float:
    """Share of samples whose `noise_score` is above `threshold`."""
    scores = np.asarray(noise_scores, dtype=np.float64)
    return float((scores > threshold).mean()) if scores.size else 0.0


# ------------------------------------------------------------------------------------------------ plots
def plot_wrong_event_histogram(report: datasets.Dataset, path: str, mixture: Any = None, max_count: int | None = None):
    """Histogram of wrong-event counts, with the fitted beta mixture's component densities when given.

    Example:
        >>> plot_wrong_event_histogram(trainer.noise_report(), "hist.png", mixture=trainer.method.mixture)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(report["wrong_events"][:])
    top = int(max_count if max_count is not None else max(int(counts.max(initial=0)), 1))
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    axis.hist(counts, bins=np.arange(top + 2) - 0.5, color="#4c72b0", alpha=0.8, label="samples")
    axis.set_xlabel("wrong events")
    axis.set_ylabel("samples")
    global_mixture = getattr(mixture, "global_", mixture)
    if global_mixture is not None and getattr(global_mixture, "fitted_", False) and global_mixture.max_ is not None:
        from scipy.stats import beta

        low, high = global_mixture.min_, global_mixture.max_
        grid = np.linspace(low, high, 200)
        x = np.clip((grid - low) / max(high - low, 1e-9), 1e-3, 1 - 1e-3)
        twin = axis.twinx()
        for k, (name, colour) in enumerate([("clean component", "#55a868"), ("noisy component", "#c44e52")]):
            density = global_mixture.weights_[k] * beta.pdf(x, global_mixture.alphas_[k], global_mixture.betas_[k])
            twin.plot(grid, density, color=colour, label=name)
        twin.set_ylabel("mixture density")
        twin.legend(loc="upper center")
    axis.legend(loc="upper left")
    axis.set_title("Wrong events per training sample")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_noise_rate(history: list[float], path: str, threshold: float = 0.5) -> str:
    """Per-epoch estimate of the noise rate (share of samples with `noise_score > threshold`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    axis.plot(np.arange(1, len(history) + 1), history, marker="o")
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"share with noise_score > {threshold}")
    axis.set_ylim(0, 1)
    axis.set_title("Estimated noise rate per epoch")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def save_report_artifacts(trainer: NoisyLabelTrainer, folder: str | None = None) -> list[str]:
    """Write the noise report (Parquet) and its plots into `folder` (default: `output_dir`); returns the paths."""
    folder = folder or trainer.args.output_dir
    os.makedirs(folder, exist_ok=True)
    report = trainer.noise_report()
    paths = [os.path.join(folder, REPORT_FILE)]
    report.to_parquet(paths[0])
    try:
        method = trainer.method
        mixture = getattr(method, "mixture", None) if getattr(method, "stage", 1) == 2 else None
        top = getattr(method, "max_count", None)
        paths.append(plot_wrong_event_histogram(report, os.path.join(folder, HISTOGRAM_FILE), mixture, top))
        paths.append(
            plot_noise_rate(
                trainer.noise_rate_history, os.path.join(folder, NOISE_RATE_FILE), trainer.args.noise_score_threshold
            )
        )
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'hf_lnl[plots]'): the report is saved without plots.")
    return paths


# ------------------------------------------------------------------------------------------- model card
def build_model_card(
    trainer: NoisyLabelTrainer,
    model_name: str | None = None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    noise_setting: str | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
) -> ModelCard:
    """A model card from the package's template: `model-index` results, tags, noise setting, method, citations."""
    args = trainer.args
    method = trainer.method.name
    model_name = model_name or Path(args.output_dir).name
    base_model = base_model or _base_model(trainer)
    results = _results(trainer)
    task = "image-classification" if "pixel_values" in _input_names(trainer) else "text-classification"
    eval_results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset_name or "custom",
            dataset_name=dataset_name or "custom",
            metric_type=key,
            metric_name=name,
            metric_value=value,
        )
        for key, name, value in results
    ]
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model,
        license=license,
        library_name="transformers",
        pipeline_tag=task,
        tags=sorted({"hf-lnl", "noisy-labels", method.replace("_", "-"), *(tags or [])}),
        datasets=[dataset_name] if dataset_name else None,
        eval_results=eval_results or None,
    )
    noise_rate = "n/a"
    num_samples = "n/a"
    if trainer.tracker is not None:
        scores = trainer.method.noise_scores()
        noise_rate = f"{estimated_noise_rate(scores, args.noise_score_threshold):.1%}"
        num_samples = str(trainer.tracker.num_samples)
    settings = {k: v for k, v in args.to_dict().items() if k.startswith((method.split("_")[0], "lnl_"))}
    settings.update(
        {k: getattr(args, k) for k in ("learning_rate", "num_train_epochs", "per_device_train_batch_size")}
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(CARD_TEMPLATE),
        model_name=model_name,
        base_model=base_model,
        dataset_name=dataset_name,
        method_title=METHOD_TITLES[method],
        method_description=METHOD_DESCRIPTIONS[method],
        method_settings=yaml.safe_dump(settings, sort_keys=True).strip(),
        results=[(name, f"{value:.4f}") for _, name, value in results],
        noise_setting=noise_setting or _noise_setting(trainer),
        threshold=args.noise_score_threshold,
        estimated_noise_rate=noise_rate,
        num_samples=num_samples,
        histogram=HISTOGRAM_FILE if os.path.isfile(os.path.join(args.output_dir, HISTOGRAM_FILE)) else None,
        pipeline_task=task,
        repo_id=args.hub_model_id or model_name,
        citations="\n\n".join(CITATIONS.values()),
        versions=[(name, _version(name)) for name in FRAMEWORKS] + [("python", platform.python_version())],
    )


def _results(trainer: NoisyLabelTrainer) -> list[tuple[str, str, float]]:
    results: list[tuple[str, str, float]] = []
    evaluations = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    if evaluations:
        results.append(("accuracy", "accuracy (evaluation set)", float(evaluations[-1]["eval_accuracy"])))
    if trainer.tracker is not None and trainer.label_info.clean_labels is not None:
        from .metrics import noise_detection_metrics

        detection = noise_detection_metrics(trainer.noise_report(), threshold=trainer.args.noise_score_threshold)
        for key in ("f1", "auroc"):
            if np.isfinite(detection[key]):
                results.append((key, f"noise-detection {key.upper() if key == 'auroc' else key}", detection[key]))
    return results


def _noise_setting(trainer: NoisyLabelTrainer) -> str:
    info = trainer.label_info
    if info is None or info.clean_labels is None or info.labels is None:
        return "unknown (the training set has no clean labels)"
    keep = info.labels != -100
    rate = float((info.labels[keep] != info.clean_labels[keep]).mean())
    return f"{rate:.1%} of the training labels differ from the clean labels"


def _base_model(trainer: NoisyLabelTrainer) -> str | None:
    name = getattr(getattr(trainer.model, "config", None), "_name_or_path", None)
    return name if name and not os.path.isdir(name) else None


def _input_names(trainer: NoisyLabelTrainer) -> list[str]:
    dataset = trainer.train_dataset
    return list(getattr(dataset, "column_names", None) or [])


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------------------- using a report
def clean_dataset(
    dataset: datasets.Dataset,
    report: datasets.Dataset,
    threshold: float = 0.5,
    action: str = "drop",
    *,
    index_column: str = "sample_index",
    label_column: str = "label",
) -> datasets.Dataset:
    """Drop (or relabel to the predicted label) the samples whose `noise_score` is above `threshold`.

    The result is renumbered: `sample_index` runs over 0..M-1 again and `source_index` keeps the original id, so it
    trains again with `NoisyLabelTrainer`.

    Example:
        >>> cleaned = clean_dataset(train, trainer.noise_report(), threshold=0.5, action="relabel")
    """
    if action not in ("drop", "relabel"):
        raise ValueError(f"action={action!r} is not supported; choose 'drop' or 'relabel'.")
    if report.num_rows != dataset.num_rows:
        raise ValueError(
            f"The report has {report.num_rows} rows but the dataset {dataset.num_rows}: pass the training set the "
            "report was made from."
        )
    scores = np.asarray(report["noise_score"][:], dtype=np.float64)
    predicted = np.asarray(report["predicted_label"][:])
    report_ids = np.asarray(report[index_column][:])
    flagged = np.zeros(len(scores), dtype=bool)
    flagged[report_ids] = scores > threshold
    new_label = np.empty_like(predicted)
    new_label[report_ids] = predicted
    source = np.asarray(dataset[index_column][:]) if index_column in dataset.column_names else np.arange(len(dataset))
    if index_column in dataset.column_names:
        dataset = dataset.remove_columns(index_column)
    dataset = dataset.add_column("source_index", source)
    if action == "drop":
        dataset = dataset.select(np.flatnonzero(~flagged[source]))
    else:
        labels = np.asarray(dataset.with_format("numpy")[label_column])
        relabelled = np.where(flagged[source] & (new_label[source] >= 0), new_label[source], labels)
        feature = dataset.features[label_column]
        dataset = dataset.remove_columns(label_column).add_column(label_column, relabelled.tolist(), feature=feature)
    return dataset.add_column(index_column, np.arange(len(dataset)))


def cleanlab_inputs(trainer: NoisyLabelTrainer, dataset: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """`(labels, pred_probs)` for `cleanlab.filter.find_label_issues(labels=..., pred_probs=...)`.

    Predicted probabilities come from one eval-mode pass over the training set (in-sample; cleanlab prefers
    out-of-sample probabilities from cross-validation), in `sample_index` order.

    Example:
        >>> labels, pred_probs = cleanlab_inputs(trainer)
        >>> issues = cleanlab.filter.find_label_issues(labels=labels, pred_probs=pred_probs)
    """
    dataset = dataset if dataset is not None else trainer.train_dataset
    logits = trainer.predict(dataset).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    column = trainer.args.sample_index_column
    if isinstance(dataset, datasets.Dataset) and column in dataset.column_names:
        ordered = np.empty_like(probabilities)
        ordered[np.asarray(dataset[column][:])] = probabilities
        probabilities = ordered
    return np.asarray(trainer.label_info.labels), probabilities.astype(np.float32)
