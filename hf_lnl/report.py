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
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .data import IGNORE_INDEX, in_index_order, read_column
from .methods.base import LNLMethod, undeclared_names
from .metrics import estimated_noise_rate, label_correction_metrics, noise_detection_metrics
from .tracking import wrong_event_scores

if TYPE_CHECKING:
    from transformers import Trainer

logger = logging.getLogger(__name__)

REPORT_FILE = "noise_report.parquet"
HISTOGRAM_FILE = "wrong_events_histogram.png"
NOISE_RATE_FILE = "noise_rate_per_epoch.png"
CARD_TEMPLATE = "model_card.md"  # in the package `hf_lnl.templates` (the repository's model_cards/)
FRAMEWORKS = ("hf_lnl", "transformers", "torch", "datasets", "accelerate")
SOURCE_INDEX_COLUMN = "source_index"  # a row's id in the data it was drawn from (a recipe's subset, clean_dataset)
LABEL_COLUMNS = ("label", "predicted_label", "clean_label", "corrected_label")  # the report's class-id columns


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
    dataset: Any = None,
    label_column: str | None = None,
) -> datasets.Dataset:
    """The noise report: one row per training sample, in `sample_index` order.

    Columns: `index_column`, `source_index` when the training set has it (the row's id in the data a subset was drawn
    from), `label`, `wrong_events`, `predicted_label`, `noise_score` (float32, in [0, 1], higher = more likely
    mislabelled), `clean_label` when known, then the method's own columns. When the training set's `label_column` is
    a `ClassLabel`, the label columns take that feature, so the class names travel with the report (and its Parquet).

    Args:
        dataset / label_column: The training set (a `datasets.Dataset` numbered by `index_column`) and its label
            column; optional, for `source_index` and the class names.

    Raises:
        ValueError: a method column that its method did not declare in `report_columns`.

    Example:
        >>> report = build_noise_report(index_column="sample_index", labels=np.array([0, 1]),
        ...                             wrong_events=np.array([0, 2]), predicted_labels=np.array([0, 0]),
        ...                             noise_scores=np.array([0.0, 1.0]))
        >>> list(report["noise_score"])
        [0.0, 1.0]
    """
    method_columns = dict(method_columns or {})
    undeclared = undeclared_names(method_columns, declared_columns)
    if undeclared:
        raise ValueError(
            f"The method returned the report column(s) {undeclared} it does not declare; add them to its "
            "`report_columns`."
        )
    columns: dict[str, Any] = {index_column: np.arange(len(labels))}
    is_table = isinstance(dataset, datasets.Dataset)
    if is_table and {index_column, SOURCE_INDEX_COLUMN} <= set(dataset.column_names):
        order = read_column(dataset, index_column)
        columns[SOURCE_INDEX_COLUMN] = in_index_order(read_column(dataset, SOURCE_INDEX_COLUMN), order)
    columns.update(
        label=labels,
        wrong_events=wrong_events,
        predicted_label=predicted_labels,
        noise_score=np.asarray(noise_scores).astype(np.float32),
    )
    if clean_labels is not None:
        columns["clean_label"] = clean_labels
    columns.update(method_columns)
    report = datasets.Dataset.from_dict(columns)
    class_label = dataset.features.get(label_column) if is_table else None
    if not isinstance(class_label, datasets.ClassLabel):
        return report
    features = report.features.copy()
    for name in LABEL_COLUMNS:
        values = np.asarray(columns.get(name, []))
        if name in columns and ((values >= -1) & (values < class_label.num_classes)).all():  # -1: no label
            features[name] = class_label  # (an ignored label, -100, has no name: that column stays plain)
    return datasets.Dataset.from_dict(columns, features=features)


# ------------------------------------------------------------------------------------------------ plots
CLEAN_COLOUR, FLIPPED_COLOUR = "#4c72b0", "#dd8452"  # the samples whose label is the true one / was flipped
COMPONENT_COLOURS = (("clean component", "#55a868"), ("noisy component", "#c44e52"))
LEGEND_HEADROOM = 1.4  # the y-axes reach 40% above the data, so the legend sits above the bars


def plot_wrong_event_histogram(
    report: datasets.Dataset,
    path: str,
    mixture: Any = None,
    max_count: int | None = None,
    threshold: float = 0.5,
) -> str:
    """Histogram of wrong-event counts: clean and flipped labels stacked when `clean_label` is known, a dashed line
    where samples start to be flagged (`threshold` on the fitted mixture's `p_noisy`, or on `noise_score` when the
    score is wrong events / `max_count`), and the fitted beta mixture's component densities when given.

    Example:
        >>> plot_wrong_event_histogram(trainer.noise_report(), "hist.png", mixture=trainer.method.fitted_mixture(),
        ...                            max_count=trainer.method.max_wrong_events())  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    counts, labels = np.asarray(report["wrong_events"][:]), np.asarray(report["label"][:])
    kept = labels != IGNORE_INDEX
    top = int(max_count if max_count is not None else max(int(counts.max(initial=0)), 1))
    bins = np.arange(top + 2) - 0.5
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=100)
    if "clean_label" in report.column_names:
        flipped = labels != np.asarray(report["clean_label"][:])
        axis.hist(
            [counts[kept & ~flipped], counts[kept & flipped]], bins=bins, stacked=True,
            color=[CLEAN_COLOUR, FLIPPED_COLOUR], label=["clean label", "flipped label"],
        )  # fmt: skip
    else:
        axis.hist(counts[kept], bins=bins, color=CLEAN_COLOUR, label="samples")
    global_mixture = getattr(mixture, "global_", mixture)
    if not (getattr(global_mixture, "fitted_", False) and global_mixture.max_ is not None):
        global_mixture = None
    first_flagged = _first_flagged_count(report, global_mixture, max_count, threshold)
    if first_flagged is not None:  # between the bars: every bar to its right is flagged
        axis.axvline(first_flagged[0] - 0.5, color="black", linestyle="--", linewidth=1.2, label=first_flagged[1])
    axis.set_xlabel("wrong events")
    axis.set_ylabel("samples")
    axis.set_xlim(bins[0], bins[-1])
    axis.set_ylim(0, axis.get_ylim()[1] * LEGEND_HEADROOM)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, names = axis.get_legend_handles_labels()
    if global_mixture is not None:
        from scipy.stats import beta

        low, high = global_mixture.min_, global_mixture.max_
        grid = np.linspace(low, high, 200)
        x = np.clip((grid - low) / max(high - low, 1e-9), 1e-3, 1 - 1e-3)
        twin = axis.twinx()
        for k, (name, colour) in enumerate(COMPONENT_COLOURS):
            density = global_mixture.weights_[k] * beta.pdf(x, global_mixture.alphas_[k], global_mixture.betas_[k])
            twin.plot(grid, density, color=colour, label=name)
        twin.set_ylabel("mixture density")
        twin.set_ylim(0, twin.get_ylim()[1] * LEGEND_HEADROOM)
        more_handles, more_names = twin.get_legend_handles_labels()
        handles, names = handles + more_handles, names + more_names
    axis.legend(handles, names, loc="upper center", ncol=2, fontsize="small", framealpha=0.9)
    axis.set_title("Wrong events per training sample")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _first_flagged_count(
    report: datasets.Dataset, mixture: Any, max_count: int | None, threshold: float
) -> tuple[int, str] | None:
    """The smallest wrong-event count that is flagged, with a legend label; None when there is none or when
    `noise_score` does not come from the counts (CLID-MU's comes from its meta weights)."""
    counts, scores = np.asarray(report["wrong_events"][:]), np.asarray(report["noise_score"][:])
    if mixture is not None and not mixture.is_degenerate_:
        grid = np.arange(int(np.floor(mixture.min_)), int(np.ceil(mixture.max_)) + 1)
        flagged = mixture.predict_proba(grid)[:, 1] > threshold
        label = f"flagged from here: p_noisy > {threshold:g} (global mixture)"
    elif max_count and np.allclose(scores, wrong_event_scores(counts, max_count), atol=1e-6):
        grid = np.arange(int(max_count) + 1)
        flagged = wrong_event_scores(grid, max_count) > threshold
        label = f"flagged from here: noise_score > {threshold:g}"
    else:
        return None
    return (int(grid[np.argmax(flagged)]), label) if flagged.any() else None


def plot_noise_rate(
    history: list[float], path: str, threshold: float = 0.5, true_rate: float | None = None
) -> str:
    """Per-epoch estimate of the noise rate (share of samples with `noise_score > threshold`), against the true rate
    when it is known.

    Example:
        >>> plot_noise_rate(trainer.noise_rate_history, "rate.png", true_rate=0.4)  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=100)
    axis.plot(np.arange(1, len(history) + 1), history, marker="o", label=f"estimated: noise_score > {threshold:g}")
    if true_rate is not None:
        axis.axhline(true_rate, color=FLIPPED_COLOUR, linestyle="--", label=f"true: {true_rate:.1%} flipped")
    axis.set_xlabel("epoch")
    axis.set_ylabel("share of training samples")
    axis.set_xlim(0.5, max(len(history), 1) + 0.5)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylim(0, 1)
    axis.legend(loc="upper right")
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
        >>> save_report_artifacts(trainer.noise_report(), "out", trainer.noise_rate_history)  # doctest: +SKIP
        ['out/noise_report.parquet', 'out/wrong_events_histogram.png', 'out/noise_rate_per_epoch.png']
    """
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, REPORT_FILE)]
    report.to_parquet(paths[0])
    try:
        histogram = os.path.join(folder, HISTOGRAM_FILE)
        paths.append(plot_wrong_event_histogram(report, histogram, mixture, max_wrong_events, threshold))
        true_rate = _true_noise_rate(report)
        paths.append(plot_noise_rate(noise_rate_history, os.path.join(folder, NOISE_RATE_FILE), threshold, true_rate))
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'hf_lnl[plots]'): the report is saved without plots.")
    return paths


# ------------------------------------------------------------------------------------------- model card
CLASSIFICATION_METRICS = ("accuracy", "f1", "precision", "recall", "matthews_correlation")  # for `model-index`
EVALUATION_SPLITS = (("test", "test"), ("eval", "validation"))  # metric prefix -> split, the first found is filed
UNTIMED_KEYS = ("runtime", "per_second", "total_flos", "epoch", "step")
CARD_KEYWORDS = ("model_name", "base_model", "dataset_name", "noise_setting", "license", "tags")


def build_model_card(
    *,
    method: LNLMethod,
    args: Any,
    report: datasets.Dataset | None,
    log_history: list[dict[str, Any]],
    model: Any = None,
    input_names: list[str] | None = None,
    folder: str | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    noise_setting: str | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
) -> ModelCard:
    """A model card from the package's template: what `Trainer`'s card holds (hyper-parameters, the per-epoch
    table, the `generated_from_trainer` tag) plus the noise section, the method and the method's own citation.

    `model-index` files the classification metrics of the last test evaluation (`test_*` in `log_history`), else of
    the last validation one (`eval_*`), with their split. Noise-detection metrics score the *training* labels, not a
    classifier: they go in the card's body, never in `model-index`.

    Args:
        method: The run's method (its declarations fill the card).
        args: The run's `NoisyLabelConfig`.
        report: The noise report, or None when per-sample tracking was off.
        log_history: `trainer.state.log_history`.
        model: The trained model (for `base_model` when it came from the Hub).
        input_names: The training set's columns (`pixel_values` makes it an image classifier).
        folder: Where the card goes (default `args.output_dir`): it names the report and plots found there.
        repo_id: The Hub repository for the usage snippet (default `args.hub_model_id`, else the output folder).
        model_name / base_model / dataset_name / noise_setting / license / tags: Override what is derived.

    Example:
        >>> card = build_model_card(method=trainer.method, args=trainer.args, report=trainer.noise_report(),
        ...                         log_history=trainer.state.log_history, model=trainer.model)  # doctest: +SKIP
    """
    from transformers.modelcard import extract_hyperparameters_from_trainer, make_markdown_table

    folder = folder or args.output_dir
    model_name = model_name or Path(args.output_dir).name
    base_model = base_model or _hub_model_name(model)
    task = "image-classification" if "pixel_values" in (input_names or []) else "text-classification"
    evaluations = _evaluation_results(log_history)
    filed = [result for result in evaluations if result[0] == evaluations[0][0]] if evaluations else []
    eval_results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset_name or "custom",
            dataset_name=dataset_name or "custom",
            dataset_split=split,
            metric_type=key,
            metric_name=key.replace("_", " "),
            metric_value=value,
        )
        for split, key, value in filed
    ]
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model,
        license=license,
        library_name="transformers",
        pipeline_tag=task,
        tags=sorted({"hf-lnl", "noisy-labels", name_tag(method.name), "generated_from_trainer", *(tags or [])}),
        datasets=[dataset_name] if dataset_name else None,
        eval_results=eval_results or None,
    )
    detection: list[tuple[str, float]] = []
    if report is not None and "clean_label" in report.column_names:
        scores = noise_detection_metrics(report, threshold=args.noise_score_threshold)
        detection = [(key, scores[key]) for key in ("precision", "recall", "f1", "auroc") if np.isfinite(scores[key])]
    correction: list[tuple[str, str]] = []
    if report is not None and {"clean_label", "corrected_label"} <= set(report.column_names):
        corrections = label_correction_metrics(report)
        correction = [
            ("labels corrected", f"{corrections['num_corrected']} ({corrections['rate']:.1%})"),
            ("corrections equal to the clean label",
             f"{corrections['accuracy']:.1%}" if np.isfinite(corrections["accuracy"]) else "n/a (none made)"),
            ("training labels right, given → corrected",
             f"{corrections['label_accuracy_before']:.1%} → {corrections['label_accuracy_after']:.1%}"),
        ]  # fmt: skip
    noise_rate, num_samples = "n/a", "n/a"
    if report is not None:
        noise_rate = f"{estimated_noise_rate(report['noise_score'][:], args.noise_score_threshold):.1%}"
        num_samples = str(report.num_rows)
    settings = {"lnl_method": method.name, **method.settings_summary()}
    hyperparameters = extract_hyperparameters_from_trainer(_ArgsOnly(args))
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
            method_notes=method.card_notes(),
            method_settings=yaml.safe_dump(settings, sort_keys=True).strip(),
            results=[(key.replace("_", " "), split, f"{value:.4f}") for split, key, value in evaluations],
            detection=[(key.upper() if key == "auroc" else key, f"{value:.4f}") for key, value in detection],
            correction=correction,
            noise_setting=noise_setting or _noise_setting(report),
            threshold=args.noise_score_threshold,
            estimated_noise_rate=noise_rate,
            num_samples=num_samples,
            report_file=REPORT_FILE if os.path.isfile(os.path.join(folder, REPORT_FILE)) else None,
            histogram=HISTOGRAM_FILE if os.path.isfile(os.path.join(folder, HISTOGRAM_FILE)) else None,
            noise_rate_plot=NOISE_RATE_FILE if os.path.isfile(os.path.join(folder, NOISE_RATE_FILE)) else None,
            hyperparameters=list(hyperparameters.items()),
            training_results=make_markdown_table(_epoch_table(log_history)).strip(),
            pipeline_task=task,
            repo_id=repo_id or args.hub_model_id or args.output_dir,
            citation=method.citation.bibtex() if method.citation is not None else None,
            citation_short=method.citation.short() if method.citation is not None else None,
            versions=[(framework, _version(framework)) for framework in FRAMEWORKS]
            + [("python", platform.python_version())],
        )


def push_noise_report(
    save_report: Callable[[str], Any], method_name: str, repo_id: str, private: bool | None = None,
    token: str | None = None,
) -> Any:
    """Push a noise report to the Hub as a dataset repository: `save_report(folder)` writes the Parquet file and the
    plots into a temporary folder, which gets a short card (`report_dataset_card`) and is uploaded.

    Example:
        >>> push_noise_report(trainer.save_noise_report, "ido", "me/my-run-noise-report")  # doctest: +SKIP
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save_report(folder)
        with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(report_dataset_card(method_name))
        return api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset")


def write_model_card(trainer: Trainer, output_dir: str | None = None, **kwargs: Any) -> str | None:
    """Write `trainer`'s model card (`README.md`) into `output_dir` (default: `args.output_dir`), on the main process;
    returns the path written. `NoisyLabelTrainer.create_model_card` calls it.

    Keyword arguments: those of `build_model_card` (`model_name`, `base_model`, `dataset_name`, `noise_setting`,
    `license`, `tags`), plus `Trainer.create_model_card`'s names `finetuned_from` (for `base_model`) and `dataset`
    (for `dataset_name`); others are ignored, as `Trainer`'s card-only keywords (`language`, `tasks`, ...) are.

    Example:
        >>> write_model_card(trainer, dataset_name="ag_news")  # doctest: +SKIP
        'out/README.md'
    """
    if not trainer.is_world_process_zero():
        return None
    kwargs.setdefault("base_model", kwargs.pop("finetuned_from", None))
    dataset = kwargs.pop("dataset", None)
    kwargs.setdefault("dataset_name", dataset if isinstance(dataset, str) else None)
    folder = output_dir or trainer.args.output_dir
    card = build_model_card(
        method=trainer.method,
        args=trainer.args,
        report=trainer.noise_report() if trainer.tracker is not None else None,
        log_history=trainer.state.log_history,
        model=trainer.model,
        input_names=list(getattr(trainer.train_dataset, "column_names", None) or []),
        folder=folder,
        repo_id=getattr(trainer, "hub_model_id", None),
        **{k: v for k, v in kwargs.items() if k in CARD_KEYWORDS},
    )
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "README.md")
    card.save(path)
    return path


def name_tag(method_name: str) -> str:
    """A method's Hub tag: `clid_mu` -> `clid-mu`."""
    return method_name.replace("_", "-")


class _ArgsOnly:
    """What transformers' `extract_hyperparameters_from_trainer` reads of a trainer: its `args`."""

    def __init__(self, args: Any):
        self.args = args


def report_dataset_card(method_name: str) -> str:
    """The card of the noise report pushed alone as a dataset repository (`push_noise_report_to_hub`)."""
    return (
        "---\ntags: [hf-lnl, noisy-labels, noise-report]\n---\n\n# Per-sample noise report\n\n"
        f"Made by hf_lnl's `NoisyLabelTrainer` (lnl_method={method_name!r}): one row per training sample in "
        f"`{REPORT_FILE}` with `sample_index`, `label`, `wrong_events`, `predicted_label` and `noise_score` (higher = "
        "more likely mislabelled).\n\n"
        f"![Wrong events]({HISTOGRAM_FILE})\n"
    )


def _evaluation_results(log_history: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """`(split, metric, value)` of the classification metrics of the last test, then the last validation evaluation."""
    results = []
    for prefix, split in EVALUATION_SPLITS:
        entries = [e for e in log_history if any(f"{prefix}_{m}" in e for m in CLASSIFICATION_METRICS)]
        if entries:
            last = {key[len(prefix) + 1 :]: value for key, value in entries[-1].items() if key.startswith(prefix)}
            results += [(split, metric, float(last[metric])) for metric in CLASSIFICATION_METRICS if metric in last]
    return results


def _epoch_table(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`Trainer`'s table of training results (one row per evaluation during training: the last training loss, epoch,
    step, validation loss and metrics) with the estimated noise rate of the epoch ending at that step; one row per
    epoch when nothing was evaluated."""
    rows: dict[int, dict[str, Any]] = {}
    training_loss: Any = "No log"
    for entry in log_history:
        if "train_runtime" in entry:  # the closing summary: later evaluations (the final test) are not per epoch
            break
        training_loss = entry.get("loss", training_loss)
        if "eval_loss" not in entry and "estimated_noise_rate" not in entry:
            continue
        row = rows.setdefault(entry["step"], {"Training Loss": training_loss})
        row.update({"Epoch": entry.get("epoch"), "Step": entry["step"]})
        if "estimated_noise_rate" in entry:
            row["Estimated Noise Rate"] = entry["estimated_noise_rate"]
        for key, value in entry.items():
            if key.startswith("eval_") and not any(t in key for t in UNTIMED_KEYS):
                name = "Validation Loss" if key == "eval_loss" else key[len("eval_") :].replace("_", " ").title()
                row[name] = value
    evaluated = [row for row in rows.values() if "Validation Loss" in row]
    lines = evaluated or list(rows.values())
    columns = list(dict.fromkeys(key for line in lines for key in line))
    return [{key: line.get(key, "-") for key in columns} for line in lines]


def _noise_setting(report: datasets.Dataset | None) -> str:
    rate = _true_noise_rate(report)
    if rate is None:
        return "unknown (the training set has no clean labels)"
    return f"{rate:.1%} of the training labels differ from the clean labels"


def _true_noise_rate(report: datasets.Dataset | None) -> float | None:
    """The share of (not ignored) training labels that differ from `clean_label`, or None when it is unknown."""
    if report is None or "clean_label" not in report.column_names:
        return None
    labels, clean = np.asarray(report["label"][:]), np.asarray(report["clean_label"][:])
    keep = labels != IGNORE_INDEX
    return float((labels[keep] != clean[keep]).mean()) if keep.any() else None


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
    """Drop (or relabel) the samples whose `noise_score` is above `threshold`.

    `action="relabel"` gives a flagged sample the report's `corrected_label` when the method corrected labels (IDO with
    `ido_correction="pseudo_label"`), else its `predicted_label`.

    The result is renumbered: `sample_index` runs over 0..M-1 again and `source_index` keeps the original id, so it
    trains again with `NoisyLabelTrainer`.

    Example:
        >>> cleaned = clean_dataset(train, trainer.noise_report(), threshold=0.5, action="relabel")  # doctest: +SKIP
    """
    if action not in ("drop", "relabel"):
        raise ValueError(f"action={action!r} is not supported; choose 'drop' or 'relabel'.")
    if report.num_rows != dataset.num_rows:
        raise ValueError(
            f"The report has {report.num_rows} rows but the dataset {dataset.num_rows}: pass the training set the "
            "report was made from."
        )
    scores = np.asarray(report["noise_score"][:], dtype=np.float64)
    new_label_column = "corrected_label" if "corrected_label" in report.column_names else "predicted_label"
    predicted = np.asarray(report[new_label_column][:])
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
        >>> labels, pred_probs, index = cleanlab_inputs(trainer, return_index=True)  # doctest: +SKIP
        >>> issues = index[cleanlab.filter.find_label_issues(labels=labels, pred_probs=pred_probs)]  # doctest: +SKIP
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
