"""The per-sample noise report and what is made from it: the report table, Parquet, plots, the model card, the
report's own dataset card, cleaned datasets and the cleanlab export.

`build_noise_report` is the one builder of the report, used by `NoisyLabelTrainer.noise_report()` and
`WrongEventCallback.noise_report()`. The model card is rendered from the package's template (`hf_lnl/templates`)
with the method's own declarations: its title, description, settings and citation.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import logging
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .data import IGNORE_INDEX
from .methods.base import LNLMethod, undeclared_names
from .metrics import estimated_noise_rate, noise_detection_metrics

if TYPE_CHECKING:
    from transformers import Trainer

logger = logging.getLogger(__name__)

REPORT_FILE = "noise_report.parquet"
HISTOGRAM_FILE = "wrong_events_histogram.png"
NOISE_RATE_FILE = "noise_rate_per_epoch.png"
CARD_TEMPLATE = "model_card.md"  # in the package `hf_lnl.templates` (the repository's model_cards/)
FRAMEWORKS = ("hf_lnl", "transformers", "torch", "datasets", "accelerate")


# ------------------------------------------------------------------------------------------- the report
def build_noise_report(
    *,
    index_column: str,
    labels: np.ndarray,
    wrong_events: np.ndarray,
    predicted_labels: np.ndarray,
    noise_scores: np.ndarray,
    clean_labels: np.ndarray | None = None,
    method_columns: Mapping[str, np.ndarray] | None = None,
    declared_columns: tuple[str, ...] = (),
) -> datasets.Dataset:
    """The noise report: one row per training sample, in `sample_index` order.

    Columns: `index_column`, `label`, `wrong_events`, `predicted_label`, `noise_score` (float32, in [0, 1], higher =
    more likely mislabelled), `clean_label` when known, then the method's own columns.

    Raises:
        ValueError: a method column that its method did not declare in `report_columns`.

    Example:
        >>> build_noise_report(index_column="sample_index", labels=np.array([0, 1]), wrong_events=np.array([0, 2]),
        ...                    predicted_labels=np.array([0, 0]), noise_scores=np.array([0.0, 1.0]))["noise_score"]
        [0.0, 1.0]
    """
    method_columns = dict(method_columns or {})
    undeclared = undeclared_names(method_columns, declared_columns)
    if undeclared:
        raise ValueError(
            f"The method returned the report column(s) {undeclared} it does not declare; add them to its "
            "`report_columns`."
        )
    columns: dict[str, Any] = {
        index_column: np.arange(len(labels)),
        "label": labels,
        "wrong_events": wrong_events,
        "predicted_label": predicted_labels,
        "noise_score": np.asarray(noise_scores).astype(np.float32),
    }
    if clean_labels is not None:
        columns["clean_label"] = clean_labels
    columns.update(method_columns)
    return datasets.Dataset.from_dict(columns)


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


def save_report_artifacts(
    report: datasets.Dataset,
    folder: str,
    noise_rate_history: list[float],
    threshold: float = 0.5,
    mixture: Any = None,
    max_wrong_events: int | None = None,
) -> list[str]:
    """Write the noise report (Parquet) and its plots into `folder`; returns the paths written.

    Example:
        >>> save_report_artifacts(trainer.noise_report(), "out", trainer.noise_rate_history)
        ['out/noise_report.parquet', 'out/wrong_events_histogram.png', 'out/noise_rate_per_epoch.png']
    """
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, REPORT_FILE)]
    report.to_parquet(paths[0])
    try:
        paths.append(
            plot_wrong_event_histogram(report, os.path.join(folder, HISTOGRAM_FILE), mixture, max_wrong_events)
        )
        paths.append(plot_noise_rate(noise_rate_history, os.path.join(folder, NOISE_RATE_FILE), threshold))
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'hf_lnl[plots]'): the report is saved without plots.")
    return paths


# ------------------------------------------------------------------------------------------- model card
def build_model_card(
    *,
    method: LNLMethod,
    args: Any,
    report: datasets.Dataset | None,
    log_history: list[dict[str, Any]],
    model: Any = None,
    input_names: list[str] | None = None,
    model_name: str | None = None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    noise_setting: str | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
) -> ModelCard:
    """A model card from the package's template: `model-index` results, tags, the noise setting, the method (its
    title, description, settings) and the method's own citation.

    Args:
        method: The run's method (its declarations fill the card).
        args: The run's `NoisyLabelConfig`.
        report: The noise report, or None when per-sample tracking was off.
        log_history: `trainer.state.log_history` (the last `eval_accuracy` is the card's accuracy).
        model: The trained model (for `base_model` when it came from the Hub).
        input_names: The training set's columns (`pixel_values` makes it an image classifier).
        model_name / base_model / dataset_name / noise_setting / license / tags: Override what is derived.

    Example:
        >>> card = build_model_card(method=trainer.method, args=trainer.args, report=trainer.noise_report(),
        ...                         log_history=trainer.state.log_history, model=trainer.model)
    """
    name = method.name
    model_name = model_name or Path(args.output_dir).name
    base_model = base_model or _hub_model_name(model)
    results = _results(report, log_history, args.noise_score_threshold)
    task = "image-classification" if "pixel_values" in (input_names or []) else "text-classification"
    eval_results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset_name or "custom",
            dataset_name=dataset_name or "custom",
            metric_type=key,
            metric_name=label,
            metric_value=value,
        )
        for key, label, value in results
    ]
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model,
        license=license,
        library_name="transformers",
        pipeline_tag=task,
        tags=sorted({"hf-lnl", "noisy-labels", name.replace("_", "-"), *(tags or [])}),
        datasets=[dataset_name] if dataset_name else None,
        eval_results=eval_results or None,
    )
    noise_rate, num_samples = "n/a", "n/a"
    if report is not None:
        noise_rate = f"{estimated_noise_rate(report['noise_score'][:], args.noise_score_threshold):.1%}"
        num_samples = str(report.num_rows)
    settings = {"lnl_method": name, **method.settings_summary()}
    settings.update(
        {k: getattr(args, k) for k in ("learning_rate", "num_train_epochs", "per_device_train_batch_size")}
    )
    template = importlib.resources.files("hf_lnl.templates").joinpath(CARD_TEMPLATE)
    with importlib.resources.as_file(template) as template_path:
        return ModelCard.from_template(
            card_data,
            template_path=str(template_path),
            model_name=model_name,
            base_model=base_model,
            dataset_name=dataset_name,
            method_title=method.title,
            method_description=method.description,
            method_settings=yaml.safe_dump(settings, sort_keys=True).strip(),
            results=[(label, f"{value:.4f}") for _, label, value in results],
            noise_setting=noise_setting or _noise_setting(report),
            threshold=args.noise_score_threshold,
            estimated_noise_rate=noise_rate,
            num_samples=num_samples,
            histogram=HISTOGRAM_FILE if os.path.isfile(os.path.join(args.output_dir, HISTOGRAM_FILE)) else None,
            pipeline_task=task,
            repo_id=args.hub_model_id or model_name,
            citation=method.citation.bibtex() if method.citation is not None else None,
            citation_short=method.citation.short() if method.citation is not None else None,
            versions=[(framework, _version(framework)) for framework in FRAMEWORKS]
            + [("python", platform.python_version())],
        )


def report_dataset_card(method_name: str) -> str:
    """The card of the noise report pushed alone as a dataset repository (`push_noise_report_to_hub`)."""
    return (
        "---\ntags: [hf-lnl, noisy-labels, noise-report]\n---\n\n# Per-sample noise report\n\n"
        f"Made by hf_lnl's `NoisyLabelTrainer` (lnl_method={method_name!r}): one row per training sample in "
        f"`{REPORT_FILE}` with `sample_index`, `label`, `wrong_events`, `predicted_label` and `noise_score` (higher = "
        "more likely mislabelled).\n\n"
        f"![Wrong events]({HISTOGRAM_FILE})\n"
    )


def _results(
    report: datasets.Dataset | None, log_history: list[dict[str, Any]], threshold: float
) -> list[tuple[str, str, float]]:
    results: list[tuple[str, str, float]] = []
    evaluations = [e for e in log_history if "eval_accuracy" in e]
    if evaluations:
        results.append(("accuracy", "accuracy (evaluation set)", float(evaluations[-1]["eval_accuracy"])))
    if report is not None and "clean_label" in report.column_names:
        detection = noise_detection_metrics(report, threshold=threshold)
        for key in ("f1", "auroc"):
            if np.isfinite(detection[key]):
                results.append((key, f"noise-detection {key.upper() if key == 'auroc' else key}", detection[key]))
    return results


def _noise_setting(report: datasets.Dataset | None) -> str:
    if report is None or "clean_label" not in report.column_names:
        return "unknown (the training set has no clean labels)"
    labels, clean = np.asarray(report["label"][:]), np.asarray(report["clean_label"][:])
    keep = labels != IGNORE_INDEX
    rate = float((labels[keep] != clean[keep]).mean())
    return f"{rate:.1%} of the training labels differ from the clean labels"


def _hub_model_name(model: Any) -> str | None:
    name = getattr(getattr(model, "config", None), "_name_or_path", None)
    return name if name and not os.path.isdir(name) else None


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


def cleanlab_inputs(
    trainer: Trainer, dataset: Any = None, return_index: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(labels, pred_probs)` for `cleanlab.filter.find_label_issues(labels=..., pred_probs=...)`.

    Predicted probabilities come from one eval-mode pass over the training set (in-sample; cleanlab prefers
    out-of-sample probabilities from cross-validation), in `sample_index` order. Samples whose label is -100 (ignored
    in training) are left out, since cleanlab needs a class for every row; `return_index=True` also returns the
    `sample_index` of each row kept.

    Example:
        >>> labels, pred_probs, index = cleanlab_inputs(trainer, return_index=True)
        >>> issues = index[cleanlab.filter.find_label_issues(labels=labels, pred_probs=pred_probs)]
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
    labels = np.asarray(trainer.label_info.labels)
    kept = np.flatnonzero(labels != IGNORE_INDEX)
    result = (labels[kept], probabilities[kept].astype(np.float32))
    return (*result, kept) if return_index else result
