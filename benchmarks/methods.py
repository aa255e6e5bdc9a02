"""One runner per benchmark method: train on a task's (noisy) training set and measure accuracy, detection and cost.

Every method gets the task's model, data, epochs, optimiser and schedule (`training_kwargs`); they differ only in
the trainer and its loss:

- `oracle`: plain `transformers.Trainer` on the clean labels (the ceiling).
- `trainer`: plain `transformers.Trainer` on the noisy labels (the baseline every ratio refers to).
- `clean_subset`: plain `transformers.Trainer` on only the samples whose noisy label is right (it reads
  `clean_label`, like the oracle): what perfect detection followed by discarding the flagged samples can reach.
- `none`, `ido`, `clid_mu_head`, `clid_mu_all`, `gce`, `sce`: `hf_lnl.NoisyLabelTrainer` with that `lnl_method`
  (and `clid_scope`); the detection score is the noise report's `noise_score`. These runs also record `eval_clid`
  per epoch (`clid_per_epoch`), the epoch `metric_for_best_model="clid"` keeps (`clid_epoch`, 1-based; the
  trainer's own choice, so IDO's stage 1 is not a candidate) and its test accuracy (`clid_accuracy`, the label-free
  model selection a user without clean labels has).
- `cleanlab_k3`, `cleanlab_k5`: K plain trainings, each on K-1 folds, give out-of-sample predicted probabilities;
  `cleanlab.filter.find_label_issues(labels, pred_probs)` flags samples; a plain Trainer is retrained on the kept
  ones. Its issue mask gives precision / recall / F1; its AUROC uses the self-confidence score
  `1 - pred_probs[i, label_i]` of the same out-of-sample probabilities.

`run_method` returns a JSON-able dict; its `wall_s` covers the whole pipeline of the method (model building, every
training, prediction, cleanlab's filter, the noise report), not the shared data loading and noise injection.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from tasks import AGREEMENT_COLUMN, NoiseCell, TaskData, TaskSpec
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer, compute_accuracy_metrics, noise_detection_metrics
from hf_lnl.metrics import label_correction_metrics

EVAL_BATCH_SIZE = 256  # evaluation only: the same for every method, large enough for a quick pass over the test set
DETECTION_THRESHOLD = 0.5  # a sample is flagged when its noise_score is above this (hf_lnl's default)
# The logged statistics the methods' safeguards decide by, kept in each run's row (the last value logged).
SAFEGUARD_STATISTICS = (
    "clid_clean_component_error_rate", "clid_prediction_change_share", "clid_believed_share",
    "ido_clean_component_error_rate", "ido_believed_share",
)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class MethodSpec:
    """A benchmark method: which trainer runs it and with what settings.

    Attributes:
        name: the method's name in the suites and tables.
        family: "plain" (transformers.Trainer), "hf_lnl" (NoisyLabelTrainer) or "cleanlab".
        description: one line for the report.
        lnl_method / clid_scope: NoisyLabelConfig settings (hf_lnl family).
        folds: K of cleanlab's cross-validation.
        clean_labels: train on the clean labels (the oracle).
        clean_subset: train on only the samples whose label is not flipped (the ceiling of detect-and-discard).
        cost: rough time relative to one plain training, used to order runs cheap-first.
    """

    name: str
    family: str
    description: str
    lnl_method: str | None = None
    clid_scope: str = "head"
    folds: int = 0
    clean_labels: bool = False
    clean_subset: bool = False
    cost: float = 1.0

    @property
    def needs_clean_labels(self) -> bool:
        """Whether the method trains on the clean labels (the oracle, the clean subset): not on real noise."""
        return self.clean_labels or self.clean_subset


_HF = "hf_lnl NoisyLabelTrainer"
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("oracle", "plain", "plain transformers.Trainer on the clean labels", clean_labels=True),
        MethodSpec("trainer", "plain", "plain transformers.Trainer on the noisy labels"),
        MethodSpec("clean_subset", "plain", "plain transformers.Trainer on only the samples whose label is right",
                   clean_subset=True, cost=0.7),
        MethodSpec("none", "hf_lnl", f"{_HF}, cross-entropy + wrong-event tracking", lnl_method="none"),
        MethodSpec("gce", "hf_lnl", f"{_HF}, generalized cross-entropy (q 0.7)", lnl_method="gce", cost=1.02),
        MethodSpec("sce", "hf_lnl", f"{_HF}, symmetric cross-entropy (alpha 0.1, beta 1)", lnl_method="sce",
                   cost=1.02),
        MethodSpec("clid_mu_head", "hf_lnl", f"{_HF}, CLID-MU, look-ahead on the head", lnl_method="clid_mu",
                   cost=1.3),
        MethodSpec("ido", "hf_lnl", f"{_HF}, IDO (stage 1 + stage 2 on weak/strong views)", lnl_method="ido",
                   cost=1.6),
        MethodSpec("clid_mu_all", "hf_lnl", f"{_HF}, CLID-MU, look-ahead on all parameters", lnl_method="clid_mu",
                   clid_scope="all", cost=8.0),  # second-order look-ahead through MiniLM: ~9x a plain step
        MethodSpec("cleanlab_k3", "cleanlab", "3-fold cleanlab find_label_issues, plain retrain on the kept samples",
                   folds=3, cost=3.0),
        MethodSpec("cleanlab_k5", "cleanlab", "5-fold cleanlab find_label_issues, plain retrain on the kept samples",
                   folds=5, cost=5.0),
    )
}  # fmt: skip


@dataclass
class RunContext:
    """What a runner needs: the method, the task and its data, the (noisy) training set, the seed and a folder."""

    spec: MethodSpec
    task: TaskSpec
    data: TaskData
    train: datasets.Dataset
    seed: int
    workdir: str
    progress: Progress
    settings: dict[str, Any] = field(default_factory=dict)
    agreement: np.ndarray | None = None  # real noise: the annotators' agreement per training sample (analysis only)


class EpochProgress(TrainerCallback):
    """Reports each evaluation's accuracy through `progress` (one line per epoch)."""

    def __init__(self, progress: Progress, label: str):
        self.progress, self.label, self.start = progress, label, time.perf_counter()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        accuracy = (metrics or {}).get("eval_accuracy", float("nan"))
        elapsed = time.perf_counter() - self.start
        self.progress(f"{self.label} epoch {state.epoch:.0f}/{args.num_train_epochs:.0f}: test accuracy "
                      f"{100 * accuracy:.1f}% ({elapsed:.0f} s)")  # fmt: skip


def training_kwargs(task: TaskSpec, seed: int, output_dir: str, evaluate: bool = True) -> dict[str, Any]:
    """The `TrainingArguments` every method of `task` shares (epochs, optimiser, schedule, batch, seed)."""
    return dict(
        output_dir=output_dir,
        num_train_epochs=task.epochs,
        learning_rate=task.learning_rate,
        weight_decay=task.weight_decay,
        per_device_train_batch_size=task.batch_size,
        per_device_eval_batch_size=EVAL_BATCH_SIZE,
        optim="adamw_torch",
        lr_scheduler_type="linear",
        warmup_steps=task.warmup,  # a float below 1 is a share of the training steps (transformers 5)
        eval_strategy="epoch" if evaluate else "no",
        logging_strategy="epoch",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=seed,
    )


def run_method(
    method: str,
    task: TaskSpec,
    data: TaskData,
    cell: NoiseCell,
    seed: int,
    progress: Progress = print,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one benchmark run and return its measurements (accuracy per epoch, detection, time, memory).

    Example:
        >>> result = run_method("ido", TASKS["C"], load_task("C", cache), TASKS["C"].cell("sym40"), seed=0)
        >>> result["best_accuracy"], result["detection"]["f1"]
    """
    spec = METHODS[method]
    if spec.needs_clean_labels and not cell.has_clean_labels:
        raise ValueError(f"{method} trains on clean labels, which the {cell.name} cell does not have.")
    train = data.train
    noise: dict[str, Any] = {"realized_rate": 0.0}
    agreement = None
    if AGREEMENT_COLUMN in train.column_names:  # kept for the analysis, never shown to a method
        agreement = _column(train, AGREEMENT_COLUMN)
        train = train.remove_columns(AGREEMENT_COLUMN)
        noise = {"disputed_share": float(np.mean(agreement < 1.0))}
    if not spec.clean_labels and cell.has_clean_labels:
        features = data.instance_features() if cell.kind == "instance" and data.instance_features else None
        train = cell.apply(train, seed, features)
        noisy, clean = _column(train, "label"), _column(train, "clean_label")
        noise = {"realized_rate": float(np.mean(noisy != clean))}
    with tempfile.TemporaryDirectory(prefix=f"bench_{method}_") as workdir:
        start_rss = _current_rss_mb()
        start = time.perf_counter()
        runner = {"plain": _run_plain, "hf_lnl": _run_hf_lnl, "cleanlab": _run_cleanlab}[spec.family]
        result = runner(RunContext(spec, task, data, train, seed, workdir, progress, dict(settings or {}), agreement))
        wall = time.perf_counter() - start
    trainings = result.pop("trainings")
    runtime = sum(t["train_runtime"] for t in trainings)
    steps = sum(t["global_step"] for t in trainings)
    accuracies = result["accuracy_per_epoch"]
    if result.get("clid_epoch") is not None and len(result["clid_per_epoch"]) == len(accuracies):
        result["clid_accuracy"] = accuracies[result["clid_epoch"] - 1]  # the epoch a user without clean labels keeps
    return {
        **result,
        "best_accuracy": max(accuracies) if accuracies else float("nan"),
        "last_accuracy": accuracies[-1] if accuracies else float("nan"),
        "noise": noise,
        "wall_s": wall,
        "train_runtime_s": runtime,
        "eval_runtime_s": sum(t["eval_runtime"] for t in trainings),
        "global_steps": steps,
        "s_per_step": runtime / max(steps, 1),
        "num_trainings": len(trainings),
        "start_rss_mb": start_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "torch_threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------------------ runners
def _run_plain(ctx: RunContext) -> dict[str, Any]:
    train = ctx.train
    if ctx.spec.clean_subset:
        train = train.select(np.flatnonzero(_column(train, "label") == _column(train, "clean_label")))
    trainer = _plain_trainer(ctx, train, evaluate=True, label=ctx.spec.name)
    output = trainer.train()
    return {"accuracy_per_epoch": _epoch_accuracies(trainer), "trainings": [_training_cost(trainer, output)]}


def _run_hf_lnl(ctx: RunContext) -> dict[str, Any]:
    spec = ctx.spec
    # eval_clid every epoch and the trainer's label-free choice among them (it only evaluates; nothing is saved).
    extra: dict[str, Any] = {
        "lnl_method": spec.lnl_method, "noise_score_threshold": DETECTION_THRESHOLD, "metric_for_best_model": "clid",
    }  # fmt: skip
    extra.update(ctx.task.method_settings(spec.lnl_method))
    if spec.lnl_method == "clid_mu":
        extra["clid_scope"] = spec.clid_scope
    extra.update(ctx.settings)  # an ablation's NoisyLabelConfig overrides (`run.py --set`)
    trainer = NoisyLabelTrainer(
        model=ctx.data.make_model(ctx.seed),
        args=NoisyLabelConfig(**{**training_kwargs(ctx.task, ctx.seed, ctx.workdir), **extra}),  # --set may override
        train_dataset=ctx.train,
        eval_dataset=ctx.data.test,
        processing_class=ctx.data.processing_class,
        compute_metrics=compute_accuracy_metrics,
        callbacks=[EpochProgress(ctx.progress, spec.name)],
    )
    output = trainer.train()
    report = trainer.noise_report()
    score = "noise_score"
    if spec.lnl_method == "clid_mu":
        ranked = "" if trainer.args.clid_noise_score == "meta_weight" else ", its flags ranked by wrong events"
        score += f" (low-weight mixture posterior of meta_weight x its contrast{ranked})"
    clid_scores = [float(entry["eval_clid"]) for entry in trainer.state.log_history if "eval_clid" in entry]
    result = {
        "accuracy_per_epoch": _epoch_accuracies(trainer),
        "clid_per_epoch": clid_scores,
        "clid_epoch": _chosen_epoch(clid_scores, trainer.state.best_metric),
        "trainings": [_training_cost(trainer, output)],
        "safeguards": list(trainer.method.safeguards),  # what fired, as the model card names it
    }
    logs = trainer.state.log_history
    decisions = {key: entry[key] for entry in logs for key in SAFEGUARD_STATISTICS if key in entry}
    if decisions:
        result["safeguard_statistics"] = decisions
    if ctx.agreement is not None:  # real noise: do the scores rank the tweets the annotators disputed higher?
        result["noise_score_by_agreement"] = _scores_by_agreement(_column(report, "noise_score"), ctx.agreement)
    if "clean_label" not in report.column_names:
        return result
    result["detection"] = {**noise_detection_metrics(report, threshold=DETECTION_THRESHOLD), "score": score}
    result["detection"]["wrong_event_auroc"] = wrong_event_aurocs(report)
    if "corrected_label" in report.column_names:
        result["label_correction"] = label_correction_metrics(report)
    if "meta_weight" in report.column_names:  # CLID-MU: the mean weight the meta network gives each group
        weights = _column(report, "meta_weight")
        flipped = _column(report, "label") != _column(report, "clean_label")
        result["meta_weight"] = {"clean": float(np.nanmean(weights[~flipped])),
                                 "flipped": float(np.nanmean(weights[flipped]))}  # fmt: skip
    return result


def wrong_event_aurocs(report: datasets.Dataset) -> dict[str, float]:
    """Detection AUROC of scores built from the report's wrong events (which every hf_lnl run counts), beside the
    method's own `noise_score`: the counts themselves, `p_noisy` of the per-class beta mixture fitted to them (IDO's
    stage-1 mixture), and the flags of the mixture or of the method's score, each ranked by wrong events on either
    side of its decision (`flag_ordered_scores`, IDO's noise score), the mean of the method's score and the mixture's
    ranked flags, and for CLID-MU the score of its meta weights alone (`clid_noise_score="meta_weight"`)."""
    from sklearn.metrics import roc_auc_score

    from hf_lnl.methods import clid_mu
    from hf_lnl.mixture import ClassConditionalBetaMixture
    from hf_lnl.tracking import flag_ordered_scores

    labels, clean = _column(report, "label").astype(np.int64), _column(report, "clean_label").astype(np.int64)
    kept = (labels >= 0) & (clean >= 0)
    labels, clean = labels[kept], clean[kept]
    counts, own = _column(report, "wrong_events").astype(np.int64)[kept], _column(report, "noise_score")[kept]
    flipped = labels != clean
    if flipped.all() or not flipped.any():
        return {}
    mixture = ClassConditionalBetaMixture(int(labels.max()) + 1).fit(counts, labels)
    p_noisy = mixture.predict_stats(counts, labels)[:, 1]
    most = int(counts.max())
    scores = {
        "wrong_events": counts.astype(np.float64),
        "wrong_event_mixture": p_noisy,
        "mixture_flags_by_wrong_events": flag_ordered_scores(p_noisy > 0.5, counts, most, 0.5),
        "flags_by_wrong_events": flag_ordered_scores(own > DETECTION_THRESHOLD, counts, most, DETECTION_THRESHOLD),
    }
    scores["mean_with_mixture_flags"] = (own + scores["mixture_flags_by_wrong_events"]) / 2
    if "meta_weight" in report.column_names:  # CLID-MU: its score with clid_noise_score="meta_weight"
        scores["meta_weight"] = clid_mu.meta_weight_noise_scores(_column(report, "meta_weight")[kept])
    return {name: float(roc_auc_score(flipped, score)) for name, score in scores.items()}


def _run_cleanlab(ctx: RunContext) -> dict[str, Any]:
    from cleanlab.filter import find_label_issues
    from sklearn.model_selection import StratifiedKFold

    name, folds = ctx.spec.name, ctx.spec.folds
    labels = _column(ctx.train, "label")
    clean = _column(ctx.train, "clean_label") if "clean_label" in ctx.train.column_names else None
    pred_probs = np.zeros((len(labels), ctx.data.num_labels), dtype=np.float32)
    trainings = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=ctx.seed)
    for fold, (fit_rows, held_rows) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        trainer = _plain_trainer(ctx, ctx.train.select(fit_rows), evaluate=False)
        trainings.append(_training_cost(trainer, trainer.train()))
        logits = trainer.predict(ctx.train.select(held_rows)).predictions
        pred_probs[held_rows] = _softmax(logits[0] if isinstance(logits, tuple) else logits)
        ctx.progress(f"{name} fold {fold + 1}/{folds} trained ({sum(t['train_runtime'] for t in trainings):.0f} s)")
    issues = find_label_issues(labels=labels, pred_probs=pred_probs, n_jobs=1)
    ctx.progress(f"{name}: find_label_issues flagged {int(issues.sum())} of {len(labels)}; retraining on the rest")
    trainer = _plain_trainer(ctx, ctx.train.select(np.flatnonzero(~issues)), evaluate=True, label=f"{name} retrain")
    trainings.append(_training_cost(trainer, trainer.train()))
    self_confidence = 1.0 - pred_probs[np.arange(len(labels)), labels]
    result = {"accuracy_per_epoch": _epoch_accuracies(trainer), "num_removed": int(issues.sum()),
              "trainings": trainings}  # fmt: skip
    if ctx.agreement is not None:
        result["noise_score_by_agreement"] = _scores_by_agreement(self_confidence, ctx.agreement)
    if clean is None:
        return result
    detection = noise_detection_metrics(scores=issues.astype(np.float64), noisy_labels=labels, clean_labels=clean)
    scored = noise_detection_metrics(scores=self_confidence, noisy_labels=labels, clean_labels=clean)
    detection["auroc"] = scored["auroc"]
    detection["score"] = "issue mask (P/R/F1); 1 - out-of-sample p(label) (AUROC)"
    return {**result, "detection": detection}


# ------------------------------------------------------------------------------------------------ helpers
def _plain_trainer(ctx: RunContext, train: datasets.Dataset, evaluate: bool, label: str = "") -> Trainer:
    """A plain `transformers.Trainer` with the task's shared settings, on `train` (evaluating every epoch or not)."""
    return Trainer(
        model=ctx.data.make_model(ctx.seed),
        args=TrainingArguments(**training_kwargs(ctx.task, ctx.seed, ctx.workdir, evaluate=evaluate)),
        train_dataset=train,
        eval_dataset=ctx.data.test if evaluate else None,
        processing_class=ctx.data.processing_class,
        compute_metrics=compute_accuracy_metrics if evaluate else None,
        callbacks=[EpochProgress(ctx.progress, label)] if evaluate else [],
    )


def _chosen_epoch(scores: list[float], best: float | None) -> int | None:
    """The 1-based epoch whose score the trainer kept as its best metric (the first with that value); None if none."""
    return None if best is None else next((epoch for epoch, s in enumerate(scores, 1) if s == best), None)


def _epoch_accuracies(trainer: Trainer) -> list[float]:
    return [float(entry["eval_accuracy"]) for entry in trainer.state.log_history if "eval_accuracy" in entry]


def _training_cost(trainer: Trainer, output: Any) -> dict[str, float]:
    eval_runtime = sum(entry["eval_runtime"] for entry in trainer.state.log_history if "eval_runtime" in entry)
    return {
        "train_runtime": float(output.metrics["train_runtime"]),
        "global_step": int(output.global_step),
        "eval_runtime": float(eval_runtime),
    }


def _scores_by_agreement(scores: np.ndarray, agreement: np.ndarray) -> dict[str, float]:
    """Mean noise score of the samples all annotators agreed on and of the disputed ones, and the AUROC of the score
    for "disputed" (how well it ranks the disputed samples first; 0.5 = no better than chance)."""
    disputed = agreement < 1.0
    auroc = noise_detection_metrics(scores=scores, is_noisy=disputed)["auroc"]
    return {"agreed": float(np.mean(scores[~disputed])), "disputed": float(np.mean(scores[disputed])),
            "auroc_disputed": auroc}  # fmt: skip


def _column(dataset: datasets.Dataset, name: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy", columns=[name])[name])


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")
