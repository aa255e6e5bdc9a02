"""`NoisyLabelTrainer`: a drop-in `transformers.Trainer` for training on noisy labels.

The trainer is wiring only: it numbers the training samples (`hf_lnl.data`), builds the selected method from the
registry (`hf_lnl.methods`) and hands it each training batch through a narrow context (`hf_lnl.context`), records
what the method returns (wrong events in `hf_lnl.tracking`, the non-finite-loss guard, the logged metrics), and saves
the per-sample state with every checkpoint (`hf_lnl.state`). `hf_lnl.report` builds the report and the card.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any

import datasets
import torch
from transformers import Trainer, TrainerCallback, get_scheduler

from .accumulation import method_loss_is_scaled_for_ga
from .callbacks import EpochEventsCallback
from .checkpoints import complete_when_done, resolve_checkpoint
from .config import LABEL_FREE_METRICS, NoisyLabelConfig, check_parallelism
from .context import TrainerContext
from .data import SampleIndexCollator, model_task, prepare_train_dataset, with_given_labels
from .distributed import gather_rows
from .finite import check_gradient, check_weights, finite_samples, non_finite_loss
from .methods import MethodOutput, get_method
from .methods.base import undeclared_names
from .model_selection import evaluate_clid
from .report import build_noise_report, push_noise_report, save_report_artifacts, write_model_card
from .state import TrainingState, labels_checksum, load_training_state, save_training_state
from .tracking import WrongEventTracker

logger = logging.getLogger(__name__)


class _LabelFreeEvaluation:
    """Stands in for `eval_dataset` when evaluation is label-free only: `eval_clid` without a clean validation set."""

    def __repr__(self) -> str:
        return "LABEL_FREE_EVALUATION"


LABEL_FREE_EVALUATION = _LabelFreeEvaluation()


class NoisyLabelTrainer(Trainer):
    """`transformers.Trainer` for single-label classification on noisy labels.

    Accepts exactly what `Trainer` accepts (plus `clid_dataset`, a label-free set for `eval_clid`). With
    `lnl_method="none"` it trains like `Trainer` and counts per-sample wrong events; other methods replace the loss.
    After training, `noise_report()` gives one row per training sample. A non-finite loss or gradient stops training
    before the optimiser step (`NonFiniteLossError` naming the samples, `NonFiniteGradientError`; `Trainer` would step
    anyway), and non-finite weights are never saved, so the last checkpoint stays the last good one.

    Example:
        >>> args = NoisyLabelConfig(output_dir="out", lnl_method="ido", num_train_epochs=6)  # doctest: +SKIP
        >>> trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=train,
        ...                             processing_class=tokenizer)  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
        >>> report = trainer.noise_report()  # doctest: +SKIP
        >>> report.column_names[:5]  # doctest: +SKIP
        ['sample_index', 'label', 'wrong_events', 'predicted_label', 'noise_score']
    """

    def __init__(
        self,
        model: Any = None,
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
        method_class = get_method(args.lnl_method)
        train_dataset, self.label_info, self._untracked_reason = prepare_train_dataset(
            train_dataset,
            index_column=args.sample_index_column,
            label_column=args.label_column,
            clean_label_column=args.clean_label_column,
            num_labels=getattr(getattr(model, "config", None), "num_labels", None),
            method_name=method_class.name,
            require_class_labels=method_class.requires_class_labels,
            task=model_task(model),
            rows_per_batch=args.train_batch_size * args.world_size if args.dataloader_drop_last else 1,
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
        check_parallelism(method_class.name, fsdp=self.is_fsdp_enabled, deepspeed=self.is_deepspeed_enabled)
        if method_class.restarts_optimizer and self.optimizer is not None and self.optimizer_cls_and_kwargs is None:
            raise ValueError(
                f"lnl_method={method_class.name!r} builds a fresh optimiser during training, so it cannot use an "
                "optimiser instance passed as `optimizers=`. Pass `optimizer_cls_and_kwargs=(cls, kwargs)` or set "
                "`optim` instead."
            )
        self.data_collator = SampleIndexCollator(self.data_collator, args.sample_index_column)
        self.clid_dataset = clid_dataset
        self.method = method_class(TrainerContext(self))
        if self.method.returns_batch_mean:
            self.loss_is_scaled_for_ga = False  # a batch mean: the Trainer divides it (probed under accumulation)
        self._probe_accumulation = self.method.returns_batch_mean and args.gradient_accumulation_steps > 1
        self.tracker: WrongEventTracker | None = None
        self._given_labels: torch.Tensor | None = None  # the validated labels, on device, in sample_index order
        self.noise_rate_history: list[float] = []  # per epoch: share of samples with noise_score > threshold
        self._metrics: dict[str, list[torch.Tensor | float]] = defaultdict(list)
        self.add_callback(EpochEventsCallback(self))

    # ------------------------------------------------------------------------------ Trainer hook overrides
    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.args.sample_index_column not in self._signature_columns:
            self._signature_columns.append(self.args.sample_index_column)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs: Any) -> Any:
        """`Trainer.train`, after setting up per-sample state and restoring it from the checkpoint if resuming."""
        resume_from_checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        self._setup_lnl_state()
        if resume_from_checkpoint and self.tracker is not None:
            self._load_lnl_state(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint or None, trial=trial, **kwargs)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        sample_index = inputs.pop(self.args.sample_index_column, None)
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if sample_index is None and self.tracker is not None:
            raise ValueError(
                f"A training batch arrived without the {self.args.sample_index_column!r} column. A custom "
                "`with_transform` or collator dropped it: return it unchanged from your transform."
            )
        if self.tracker is not None:  # the configured label column, as validated, whatever the collator made of it
            inputs = with_given_labels(inputs, sample_index, self._given_labels, self.args.label_column)
        if self._probe_accumulation:
            self._probe_accumulation = False
            self.loss_is_scaled_for_ga = method_loss_is_scaled_for_ga(self, self.model, inputs, num_items_in_batch)
        result = self.method.compute_loss(model, inputs, sample_index, num_items_in_batch)
        self._record(sample_index, result)
        return (result.loss, result.outputs) if return_outputs else result.loss

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """`Trainer.evaluate`, plus the label-free `{prefix}_clid` when `clid_eval` is on (model selection).

        Without any `eval_dataset` (no clean validation set), the evaluation is `{prefix}_clid` alone.
        """
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

    def _determine_best_metric(self, metrics: dict[str, float], trial: Any) -> bool:
        # Label-free selection keeps only models the method builds on (IDO: not its stage 1); the best so far stays.
        if self.args.metric_for_best_model in LABEL_FREE_METRICS and not self.method.selectable():
            return False
        return super()._determine_best_metric(metrics, trial)

    def prediction_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        inputs.pop(self.args.sample_index_column, None)
        return super().prediction_step(model, inputs, *args, **kwargs)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        built = self.optimizer is None
        optimizer = super().create_optimizer(model)
        rate = self.method.learning_rate()
        if built and rate is not None and rate != self.args.learning_rate:  # before the schedule reads the rates
            for group in optimizer.param_groups:  # the groups keep their ratios to learning_rate
                group["lr"] = rate * (group["lr"] / self.args.learning_rate) if self.args.learning_rate else rate
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None) -> Any:
        steps, scheduler_type = self.method.training_steps(num_training_steps), self.method.lr_scheduler_type()
        if scheduler_type is None or self.lr_scheduler is not None:
            return super().create_scheduler(steps, optimizer)
        warmup = self.args.get_warmup_steps(steps)
        self.lr_scheduler = get_scheduler(scheduler_type, optimizer or self.optimizer, warmup, steps)
        return self.lr_scheduler

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        check_weights(model, self.state, folder)
        with complete_when_done(self, folder):  # the checkpoint counts once the marker is written, after every file
            # Written before the Trainer's own files, so a checkpoint pushed to the Hub already holds it.
            if self.args.should_save and self.tracker is not None:
                self.save_lnl_state(folder)
                self.create_model_card(output_dir=folder)
            super()._save_checkpoint(model, trial)

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        check_gradient(grad_norm, model, self.accelerator.scaler, self.state)  # before the optimiser step
        return grad_norm

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._metrics:  # a training log: flush the method's metrics since the last one
            for name, values in self._metrics.items():
                logs[name] = float(torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in values]).mean())
            self._metrics.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------------------- the method's hooks
    def model_loss(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> tuple[Any, Any]:
        """The plain `Trainer.compute_loss` (the model's own loss), returning `(loss, outputs)`."""
        return super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)

    def restart_optimization(self) -> None:
        """Replace the optimiser and learning-rate schedule by fresh ones of the same type (IDO's stage 2).

        The schedule spans `method.training_steps(max_steps)`; the global step keeps counting. The old optimiser's
        state is freed and it leaves accelerate's list (where a grad scaler would unscale the shared gradients again).
        """
        old = self.optimizer
        self.accelerator._optimizers = [o for o in self.accelerator._optimizers if o is not old]
        getattr(old, "optimizer", old).state.clear()
        self.optimizer, self.lr_scheduler = None, None
        self.create_optimizer()
        self.optimizer = self.accelerator.prepare_optimizer(self.optimizer)
        self.create_scheduler(num_training_steps=self.state.max_steps)
        self.callback_handler.optimizer, self.callback_handler.lr_scheduler = self.optimizer, self.lr_scheduler

    # ------------------------------------------------------------------------------------- report and card
    def noise_report(self) -> datasets.Dataset:
        """One row per training sample: `sample_index`, `label`, `wrong_events`, `predicted_label`,
        `noise_score` (in [0, 1], higher = more likely mislabelled), `clean_label` when known, and the method's
        own columns (e.g. IDO's `p_clean`).

        Example:
            >>> report = trainer.noise_report()  # doctest: +SKIP
            >>> suspicious = report.filter(lambda row: row["noise_score"] > 0.5)  # doctest: +SKIP
        """
        if self.tracker is None:
            reason = self._untracked_reason or "training has not started"
            raise RuntimeError(f"No noise report: per-sample tracking is off for this run ({reason}).")
        return build_noise_report(
            index_column=self.args.sample_index_column,
            labels=self.label_info.labels,
            wrong_events=self.tracker.counts(),
            predicted_labels=self.tracker.last_predictions(),
            noise_scores=self.method.noise_scores(),
            clean_labels=self.label_info.clean_labels,
            method_columns=self.method.report_values(),
            declared_columns=self.method.report_columns,
            dataset=self.train_dataset,
            label_column=self.label_info.column,
        )

    def save_noise_report(self, folder: str | None = None) -> list[str]:
        """Save the noise report as Parquet with its plots into `folder` (default: `output_dir`)."""
        return save_report_artifacts(
            self.noise_report(),
            folder or self.args.output_dir,
            self.noise_rate_history,
            self.args.noise_score_threshold,
            mixture=self.method.fitted_mixture(),
            max_wrong_events=self.method.max_wrong_events(),
        )

    def create_model_card(self, output_dir: str | None = None, **kwargs: Any) -> None:
        """Write hf_lnl's model card (`README.md`) into `output_dir` (default: `args.output_dir`).

        Keyword arguments: `model_name`, `base_model` (alias `finetuned_from`), `dataset_name` (alias `dataset`),
        `noise_setting`, `license`, `tags`; see `hf_lnl.report.build_model_card`.
        """
        write_model_card(self, output_dir, **kwargs)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True, **kwargs: Any):
        """`Trainer.push_to_hub`, with the noise report, its plots and hf_lnl's model card in the upload."""
        if self.is_world_process_zero() and self.tracker is not None:
            self.save_noise_report()
        return super().push_to_hub(commit_message=commit_message, blocking=blocking, **kwargs)

    def push_noise_report_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None) -> Any:
        """Push the noise report (Parquet, plots and a short card) to the Hub as a dataset repository.

        Example:
            >>> trainer.push_noise_report_to_hub("me/my-run-noise-report")  # doctest: +SKIP
        """
        if not self.is_world_process_zero():
            return None
        return push_noise_report(self.save_noise_report, self.method.name, repo_id, private=private, token=token)

    # ------------------------------------------------------------------------------------------ state I/O
    def save_lnl_state(self, folder: str) -> str:
        """Write the tracker's and the method's state into `folder` (a checkpoint)."""
        method_tensors = self.method.state_dict()
        undeclared = undeclared_names(method_tensors, self.method.state_tensors)
        if undeclared:
            raise ValueError(f"lnl_method={self.method.name!r} saves undeclared state tensors {undeclared}.")
        state = TrainingState(
            kind="checkpoint",
            lnl_method=self.method.name,
            num_samples=self.tracker.num_samples,
            labels_sha256=labels_checksum(self.label_info.labels),
            tracker_tensors=self.tracker.state_dict(),
            tracker_metadata=self.tracker.metadata(),
            method_tensors=method_tensors,
            method_metadata=self.method.metadata(),
            noise_rate_history=self.noise_rate_history,
        )
        path = save_training_state(folder, state)
        self.method.save_extra(folder)
        return path

    def _load_lnl_state(self, folder: str) -> None:
        saved = load_training_state(folder)
        saved.check_matches(
            folder,
            kind="checkpoint",
            lnl_method=self.method.name,
            num_samples=self.tracker.num_samples,
            labels_sha256=labels_checksum(self.label_info.labels),
        )
        self.tracker.load_state_dict(saved.tracker_tensors, saved.tracker_metadata)
        self.noise_rate_history = list(saved.noise_rate_history)
        self.method.load_state(saved.method_tensors, saved.method_metadata)
        self.method.load_extra(folder)

    # ------------------------------------------------------------------------------------------ internals
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
        self._given_labels = torch.as_tensor(self.label_info.labels, dtype=torch.int32, device=self.args.device)
        self.method.setup()

    def _record(self, sample_index: torch.Tensor | None, result: MethodOutput) -> None:
        """Count each returned view's wrong events, stop on a non-finite loss, queue the method's metrics."""
        labels, tracked = result.labels, self.tracker is not None
        for view, logits in enumerate(result.view_logits):
            logits = logits.detach()
            finite = finite_samples(logits, labels, result.loss, result.per_sample_loss, classification=tracked)
            if not tracked or sample_index is None or labels is None:
                (all_finite,) = gather_rows(finite.all().reshape(1))
                if not bool(all_finite.all()):
                    raise non_finite_loss(self.state, None)
                continue
            index, predictions, given, finite = gather_rows(sample_index, logits.argmax(dim=-1), labels, finite)
            self.tracker.update(index, predictions, given, view=view, gather=False)
            if not bool(finite.all()):
                raise non_finite_loss(self.state, index[~finite])
        for name, value in result.metrics.items():
            self._metrics[name].append(value.detach() if isinstance(value, torch.Tensor) else value)
