"""`NoisyLabelTrainer`: a drop-in `transformers.Trainer` for training on noisy labels.

The trainer is wiring only: it numbers the training samples, hands each training batch to the chosen method
(`hf_lnl.methods`), feeds the wrong-event tracker (`hf_lnl.tracking`), and saves the per-sample state with every
checkpoint (`hf_lnl.state`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from .config import NoisyLabelConfig
from .data import (
    IndexedDataset,
    LabelInfo,
    SampleIndexCollator,
    add_sample_index,
    find_label_column,
    keep_index_through_transform,
    read_label_info,
)
from .distributed import gather_rows
from .methods import build_method
from .state import CheckpointStateError, load_state, save_state
from .tracking import IGNORE_INDEX, WrongEventTracker

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A training loss was NaN or infinite; raised before the optimiser step, so no weights were touched."""


class _LabelFreeEvaluation:
    """Stands in for `eval_dataset` when evaluation is label-free only: `eval_clid` without a clean validation set."""

    def __repr__(self) -> str:
        return "LABEL_FREE_EVALUATION"


LABEL_FREE_EVALUATION = _LabelFreeEvaluation()


class NoisyLabelTrainer(Trainer):
    """`transformers.Trainer` for single-label classification on noisy labels.

    Accepts exactly what `Trainer` accepts. With `lnl_method="none"` it trains like `Trainer` and counts per-sample
    wrong events; the other methods replace the loss. After training, `noise_report()` gives one row per training
    sample. A non-finite loss stops training with `NonFiniteLossError` before the optimiser step (where `Trainer`
    would skip it silently), naming the step and the samples, so the last checkpoint stays the last good one.

    Example:
        >>> args = NoisyLabelConfig(output_dir="out", lnl_method="none", num_train_epochs=3)
        >>> trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
        >>> trainer.train()
        >>> report = trainer.noise_report()  # datasets.Dataset: sample_index, label, wrong_events, noise_score, ...
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: NoisyLabelConfig | None = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        model_init: Any = None,
        compute_loss_func: Any = None,
        compute_metrics: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        optimizer_cls_and_kwargs: Any = None,
        preprocess_logits_for_metrics: Any = None,
        clid_dataset: Any = None,
    ):
        if args is None:
            args = NoisyLabelConfig(output_dir="hf_lnl_output")
        elif not isinstance(args, NoisyLabelConfig):
            raise TypeError(
                f"NoisyLabelTrainer takes a NoisyLabelConfig, got {type(args).__name__}. "
                "NoisyLabelConfig accepts every TrainingArguments field: build one with the same keywords."
            )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() != args.world_size:
                raise ValueError(
                    f"{torch.distributed.get_world_size()} processes are running but the config trains with "
                    f"world_size={args.world_size}: each process would train alone. On a machine without GPUs set "
                    "use_cpu=True (e.g. --use_cpu true) so the processes train together."
                )
        num_labels = getattr(getattr(model, "config", None), "num_labels", None)
        train_dataset, self.label_info, self._untracked_reason = _prepare_train_dataset(
            train_dataset, args, num_labels
        )
        if eval_dataset is None and args.clid_eval and args.eval_strategy != "no":
            eval_dataset = LABEL_FREE_EVALUATION  # evaluate() then computes eval_clid alone: no clean set needed
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            model_init=model_init,
            compute_loss_func=compute_loss_func,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        )
        self.data_collator = SampleIndexCollator(self.data_collator, args.sample_index_column)
        self.clid_dataset = clid_dataset
        self.method = build_method(self)
        if self.method.name != "none":
            self.loss_is_scaled_for_ga = False  # methods return a batch mean (see ENVIRONMENT notes on GA)
        self.tracker: WrongEventTracker | None = None
        self.noise_rate_history: list[float] = []  # per epoch: share of samples with noise_score > threshold
        self._metrics: dict[str, list[torch.Tensor | float]] = defaultdict(list)
        self.add_callback(_EpochEventsCallback(self))

    # ------------------------------------------------------------------------------ Trainer hook overrides
    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.args.sample_index_column not in self._signature_columns:
            self._signature_columns.append(self.args.sample_index_column)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs: Any) -> Any:
        """`Trainer.train`, after setting up per-sample state and restoring it from the checkpoint if resuming."""
        if isinstance(resume_from_checkpoint, bool) and resume_from_checkpoint:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No valid checkpoint found in output directory ({self.args.output_dir}).")
        self._setup_lnl_state()
        if resume_from_checkpoint:
            self._load_lnl_state(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint or None, trial=trial, **kwargs)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        sample_index = inputs.pop(self.args.sample_index_column, None)
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if sample_index is None and self.tracker is not None:
            raise ValueError(
                f"A training batch arrived without the {self.args.sample_index_column!r} column. A custom "
                "`with_transform` or collator dropped it: return it unchanged from your transform."
            )
        loss, outputs = self.method.compute_loss(model, inputs, sample_index, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ):
        """`Trainer.evaluate`, plus the label-free `{prefix}_clid` when `clid_eval` is on (model selection).

        Without any `eval_dataset` (no clean validation set), the evaluation is `{prefix}_clid` alone.
        """
        from .model_selection import evaluate_clid

        if eval_dataset is None and self.eval_dataset is LABEL_FREE_EVALUATION:
            metrics = {f"{metric_key_prefix}_clid": evaluate_clid(self)}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.args.clid_eval:
            metrics[f"{metric_key_prefix}_clid"] = evaluate_clid(self)
            self.log({f"{metric_key_prefix}_clid": metrics[f"{metric_key_prefix}_clid"]})
        return metrics

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        inputs.pop(self.args.sample_index_column, None)
        return super().prediction_step(model, inputs, *args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None) -> Any:
        return super().create_scheduler(self.method.training_steps(num_training_steps), optimizer)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        # Written before the Trainer's own files, so a checkpoint pushed to the Hub already holds it.
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        if self.args.should_save and self.tracker is not None:
            self.save_lnl_state(folder)
            self.create_model_card(output_dir=folder)
        super()._save_checkpoint(model, trial)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._metrics:  # a training log: flush the method's metrics since the last one
            for name, values in self._metrics.items():
                logs[name] = float(torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in values]).mean())
            self._metrics.clear()
        super().log(logs, start_time)

    def create_model_card(self, output_dir: str | None = None, **kwargs: Any) -> None:
        """Write hf_lnl's model card (`README.md`) into `output_dir` (default: `args.output_dir`).

        Keyword arguments: `model_name`, `base_model` (alias `finetuned_from`), `dataset_name` (alias `dataset`),
        `noise_setting`, `license`, `tags`; see `hf_lnl.report.build_model_card`.
        """
        if not self.is_world_process_zero():
            return
        from .report import build_model_card

        kwargs.setdefault("base_model", kwargs.pop("finetuned_from", None))
        dataset = kwargs.pop("dataset", None)
        kwargs.setdefault("dataset_name", dataset if isinstance(dataset, str) else None)
        known = ("model_name", "base_model", "dataset_name", "noise_setting", "license", "tags")
        card = build_model_card(self, **{k: v for k, v in kwargs.items() if k in known})
        folder = output_dir or self.args.output_dir
        os.makedirs(folder, exist_ok=True)
        card.save(os.path.join(folder, "README.md"))

    def save_noise_report(self, folder: str | None = None) -> list[str]:
        """Save the noise report as Parquet with its plots into `folder` (default: `output_dir`)."""
        from .report import save_report_artifacts

        return save_report_artifacts(self, folder)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True, **kwargs: Any):
        """`Trainer.push_to_hub`, with the noise report, its plots and hf_lnl's model card in the upload."""
        if self.is_world_process_zero() and self.tracker is not None:
            self.save_noise_report()
        return super().push_to_hub(commit_message=commit_message, blocking=blocking, **kwargs)

    def push_noise_report_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None) -> Any:
        """Push the noise report (Parquet, plots and a short card) to the Hub as a dataset repository.

        Example:
            >>> trainer.push_noise_report_to_hub("me/my-run-noise-report")
        """
        import tempfile

        from huggingface_hub import HfApi

        if not self.is_world_process_zero():
            return None
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            self.save_noise_report(folder)
            with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
                handle.write(_report_card(self))
            return api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset")

    # ---------------------------------------------------------------------------------- used by methods
    def default_compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any
    ) -> tuple[torch.Tensor, Any]:
        """The plain `Trainer.compute_loss` (the model's own loss), returning `(loss, outputs)`."""
        return super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)

    def restart_optimization(self) -> None:
        """Replace the optimiser and learning-rate schedule by fresh ones of the same type (IDO's stage 2).

        The schedule spans `method.training_steps(max_steps)`; the global step keeps counting.
        """
        self.optimizer, self.lr_scheduler = None, None
        self.create_optimizer()
        self.optimizer = self.accelerator.prepare_optimizer(self.optimizer)
        self.create_scheduler(num_training_steps=self.state.max_steps)
        self.callback_handler.optimizer, self.callback_handler.lr_scheduler = self.optimizer, self.lr_scheduler

    def log_metric(self, name: str, value: torch.Tensor | float) -> None:
        """Queue a training metric; it is averaged and logged with the next training log (no host sync now)."""
        self._metrics[name].append(value.detach() if isinstance(value, torch.Tensor) else value)

    def record_predictions(
        self,
        sample_index: torch.Tensor | None,
        logits: torch.Tensor,
        labels: torch.Tensor | None,
        view: int = 0,
        loss: torch.Tensor | None = None,
        per_sample_loss: torch.Tensor | None = None,
    ) -> None:
        """Count a training view's wrong events and stop on a non-finite loss (one gather across processes).

        `per_sample_loss` (when the method has one) or `loss` decides finiteness; samples whose logits or loss
        are not finite are named in the `NonFiniteLossError`.
        """
        logits = logits.detach()
        finite = torch.isfinite(logits).all(dim=-1)
        if per_sample_loss is not None:
            finite &= torch.isfinite(per_sample_loss.detach())
        elif loss is not None and labels is not None and labels.dim() == 1:
            per_sample = F.cross_entropy(logits.float(), labels, reduction="none", ignore_index=IGNORE_INDEX)
            finite &= torch.isfinite(per_sample)
            # A non-finite batch loss with finite per-sample losses blames the whole batch.
            finite &= torch.isfinite(loss.detach()) | ~finite.all()
        elif loss is not None:
            finite &= torch.isfinite(loss.detach())
        if self.tracker is None or sample_index is None or labels is None:
            (all_finite,) = gather_rows(finite.all().reshape(1))
            if not bool(all_finite.all()):
                self._raise_non_finite(None)
            return
        index, predictions, given, finite = gather_rows(sample_index, logits.argmax(dim=-1), labels, finite)
        self.tracker.update(index, predictions, given, view=view, gather=False)
        if not bool(finite.all()):
            self._raise_non_finite(index[~finite])

    # ------------------------------------------------------------------------------------------ report
    def noise_report(self) -> datasets.Dataset:
        """One row per training sample: `sample_index`, `label`, `wrong_events`, `predicted_label`,
        `noise_score` (in [0, 1], higher = more likely mislabelled), `clean_label` when known, and the method's
        own columns (e.g. IDO's `p_clean`).

        Example:
            >>> report = trainer.noise_report()
            >>> suspicious = report.filter(lambda row: row["noise_score"] > 0.5)
        """
        if self.tracker is None:
            reason = self._untracked_reason or "training has not started"
            raise RuntimeError(f"No noise report: per-sample tracking is off for this run ({reason}).")
        n = self.tracker.num_samples
        columns: dict[str, Any] = {
            self.args.sample_index_column: np.arange(n),
            "label": self.label_info.labels,
            "wrong_events": self.tracker.counts(),
            "predicted_label": self.tracker.last_predictions(),
            "noise_score": self.method.noise_scores().astype(np.float32),
        }
        if self.label_info.clean_labels is not None:
            columns["clean_label"] = self.label_info.clean_labels
        columns.update(self.method.report_columns())
        return datasets.Dataset.from_dict(columns)

    # ------------------------------------------------------------------------------------- state I/O
    def save_lnl_state(self, folder: str) -> str:
        """Write the tracker's and the method's state into `folder` (a checkpoint, or a stage-1 folder)."""
        tensors = {f"tracker.{k}": v for k, v in self.tracker.state_dict().items()}
        tensors.update({f"method.{k}": v for k, v in self.method.state_dict().items()})
        metadata = {
            "lnl_method": self.method.name,
            "num_samples": self.tracker.num_samples,
            "labels_sha256": self._labels_checksum(),
            "tracker": self.tracker.metadata(),
            "method": self.method.metadata(),
            "noise_rate_history": self.noise_rate_history,
        }
        path = save_state(folder, tensors, metadata)
        self.method.save_extra(folder)
        return path

    def _load_lnl_state(self, folder: str) -> None:
        if self.tracker is None:
            return
        tensors, metadata = load_state(folder)
        self.check_state_matches(folder, metadata)
        self.tracker.load_state_dict(_strip_prefix(tensors, "tracker."), metadata["tracker"])
        self.noise_rate_history = list(metadata["noise_rate_history"])
        self.method.load_state(_strip_prefix(tensors, "method."), metadata["method"])
        self.method.load_extra(folder)

    def check_state_matches(self, folder: str, metadata: dict[str, Any]) -> None:
        """Raise `CheckpointStateError` if saved state was made with another method or training set."""
        if metadata.get("lnl_method") != self.method.name:
            raise CheckpointStateError(
                f"The hf_lnl state in {folder!r} was written by lnl_method={metadata.get('lnl_method')!r}, "
                f"this run uses {self.method.name!r}. Resume with the same lnl_method."
            )
        if metadata.get("num_samples") != self.tracker.num_samples or metadata.get(
            "labels_sha256"
        ) != self._labels_checksum():
            raise CheckpointStateError(
                f"The hf_lnl state in {folder!r} was made with a different training set "
                f"({metadata.get('num_samples')} samples; this one has {self.tracker.num_samples}, or the labels "
                "differ). Use the training set, in the same order, that the checkpoint was made with."
            )

    def _labels_checksum(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.label_info.labels, dtype=np.int64).tobytes()).hexdigest()

    # --------------------------------------------------------------------------------------- internals
    def _setup_lnl_state(self) -> None:
        if self.label_info is None or self.label_info.labels is None:
            if self.method.requires_class_labels:
                raise ValueError(f"lnl_method={self.method.name!r} needs a training set with class labels.")
            return
        num_labels = getattr(getattr(self.model, "config", None), "num_labels", None)
        if num_labels is not None and self.label_info.labels.max() >= num_labels:
            raise ValueError(
                f"Column {self.label_info.column!r} holds the label {int(self.label_info.labels.max())} but the "
                f"model has num_labels={num_labels}. Load the model with the right num_labels."
            )
        self.tracker = WrongEventTracker(
            len(self.label_info.labels), num_views=self.method.num_views, device=self.args.device
        )
        self.method.setup()

    def _raise_non_finite(self, bad_index: torch.Tensor | None) -> None:
        where = "unknown samples" if bad_index is None else f"sample_index {sorted(set(bad_index.tolist()))[:20]}"
        raise NonFiniteLossError(
            f"Non-finite training loss at global step {self.state.global_step} (epoch {self.state.epoch:.2f}), "
            f"from {where}. Training stopped before the optimiser step; checkpoints already written are intact. "
            "Lower the learning rate, enable max_grad_norm, or inspect those samples (inputs and labels)."
        )


class _EpochEventsCallback(TrainerCallback):
    """Forwards epoch boundaries to the trainer's tracker and method (callbacks see the loop, not batches)."""

    def __init__(self, trainer: NoisyLabelTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.trainer.tracker is not None:
            self.trainer.tracker.start_epoch()

    def on_epoch_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        if trainer.tracker is None:
            return
        change = trainer.tracker.end_epoch()
        logs = trainer.method.on_epoch_end()
        if change is not None:
            logs["prediction_change"] = float(change)
        scores = trainer.method.noise_scores()
        trainer.noise_rate_history.append(float((scores > args.noise_score_threshold).mean()))
        logs["estimated_noise_rate"] = trainer.noise_rate_history[-1]
        if logs:
            trainer.log(logs)

    def on_train_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        if trainer.tracker is None:
            return
        if args.should_save:
            trainer.save_noise_report()
        if trainer.label_info.clean_labels is None:
            return
        from .metrics import noise_detection_metrics

        metrics = noise_detection_metrics(trainer.noise_report(), threshold=args.noise_score_threshold)
        trainer.log({f"noise_detection_{k}": float(v) for k, v in metrics.items()})


def _prepare_train_dataset(
    dataset: Any, args: NoisyLabelConfig, num_labels: int | None
) -> tuple[Any, LabelInfo | None, str | None]:
    """Number the samples and validate the labels; returns (dataset, label info, why tracking is off)."""
    requires_labels = args.lnl_method != "none"
    column = args.sample_index_column
    if dataset is None:
        return None, None, "no training set"
    if isinstance(dataset, (datasets.IterableDataset, torch.utils.data.IterableDataset)):
        if requires_labels:
            raise ValueError(
                f"lnl_method={args.lnl_method!r} keeps per-sample state and needs the dataset size, but the "
                "training set is an iterable dataset of unknown length. Use a map-style `datasets.Dataset` "
                "(e.g. load without streaming=True)."
            )
        logger.warning("The training set is an iterable dataset: per-sample wrong-event tracking is off.")
        return dataset, None, "iterable training set of unknown length"
    if isinstance(dataset, datasets.Dataset):
        dataset = keep_index_through_transform(add_sample_index(dataset, column), column)
        info = read_label_info(
            dataset,
            label_column=args.label_column,
            index_column=column,
            clean_label_column=args.clean_label_column,
            num_labels=num_labels,
            require_integer=requires_labels,
        )
    else:
        dataset = IndexedDataset(dataset, column)
        info = _read_torch_dataset_labels(dataset, args, num_labels, requires_labels)
    if info.reason_untracked is not None:
        logger.warning(f"Per-sample wrong-event tracking is off: the training set has {info.reason_untracked}.")
    return dataset, info, info.reason_untracked


def _read_torch_dataset_labels(
    dataset: IndexedDataset, args: NoisyLabelConfig, num_labels: int | None, requires_labels: bool
) -> LabelInfo:
    """Read labels from a map-style torch dataset of dicts (one pass over the items)."""
    rows = {args.sample_index_column: [], "label": [], "clean": []}
    column = None
    for i in range(len(dataset)):
        item = dataset[i]
        column = column or find_label_column(list(item), args.label_column)
        rows["label"].append(item[column])
        rows["clean"].append(item.get(args.clean_label_column))
    table = {args.sample_index_column: np.arange(len(dataset)), "label": np.asarray(rows["label"])}
    if rows["clean"] and all(c is not None for c in rows["clean"]):
        table[args.clean_label_column] = np.asarray(rows["clean"])
    return read_label_info(
        datasets.Dataset.from_dict(table),
        label_column="label",
        index_column=args.sample_index_column,
        clean_label_column=args.clean_label_column,
        num_labels=num_labels,
        require_integer=requires_labels,
    )


def _report_card(trainer: NoisyLabelTrainer) -> str:
    from .report import HISTOGRAM_FILE, REPORT_FILE

    return (
        "---\ntags: [hf-lnl, noisy-labels, noise-report]\n---\n\n# Per-sample noise report\n\n"
        f"Made by hf_lnl's `NoisyLabelTrainer` (lnl_method={trainer.method.name!r}): one row per training sample "
        f"in `{REPORT_FILE}` with `sample_index`, `label`, `wrong_events`, `predicted_label` and `noise_score` "
        "(higher = more likely mislabelled).\n\n"
        f"![Wrong events]({HISTOGRAM_FILE})\n"
    )


def _strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
