"""Callbacks: `WrongEventCallback` (wrong-event counts and a noise report on an unchanged `transformers.Trainer`) and
`EpochEventsCallback` (`NoisyLabelTrainer`'s epoch boundaries)."""

from __future__ import annotations

import os
from typing import Any

import datasets
import torch
from torch import nn
from transformers import TrainerCallback

from .metrics import estimated_noise_rate, label_correction_metrics, noise_detection_metrics
from .report import build_noise_report
from .state import TrainingState, load_training_state, save_training_state
from .tracking import WrongEventTracker, wrong_event_scores

CALLBACK_STATE = "callback"  # the state file's `kind` and `lnl_method` for this callback


class WrongEventCallback(TrainerCallback):
    """Count per-sample wrong events on a plain `Trainer` (the same tracker `NoisyLabelTrainer` uses).

    Callbacks never see batches, so the callback hooks the model's forward: a pre-hook takes the `sample_index`
    out of the inputs (the model never sees it) and a forward hook counts the training forward's predictions.
    Supported set-up: add the index column with `hf_lnl.add_sample_index` and keep it in the batches with
    `remove_unused_columns=False` (with the default collators, every column must then be a model input or the
    label). State is saved as `hf_lnl_state.safetensors` in every checkpoint and restored on resume.

    Args:
        sample_index_column: Name of the per-sample id column.
        num_samples: Training-set size; by default taken from the training dataloader's dataset.

    Example:
        >>> train = add_sample_index(train)  # doctest: +SKIP
        >>> callback = WrongEventCallback()  # doctest: +SKIP
        >>> args = TrainingArguments("out", remove_unused_columns=False)  # doctest: +SKIP
        >>> Trainer(model=model, args=args, train_dataset=train, callbacks=[callback]).train()  # doctest: +SKIP
        >>> report = callback.noise_report()  # doctest: +SKIP
    """

    def __init__(self, sample_index_column: str = "sample_index", num_samples: int | None = None):
        self.sample_index_column = sample_index_column
        self.num_samples = num_samples
        self.tracker: WrongEventTracker | None = None
        self._handles: list[Any] = []
        self._pending: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._resume_folder: str | None = None

    def resume_from(self, checkpoint: str) -> WrongEventCallback:
        """Restore the counts from `checkpoint` when training starts (call it with the path you pass to
        `trainer.train(resume_from_checkpoint=...)`; by default `output_dir/checkpoint-<global step>` is used)."""
        self._resume_folder = checkpoint
        return self

    # ------------------------------------------------------------------------------------ callback events
    def on_train_begin(self, args, state, control, model: nn.Module | None = None, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        self._check_setup(args, dataset)
        num_samples = self.num_samples or len(dataset)
        if self.tracker is None or self.tracker.num_samples != num_samples:
            self.tracker = WrongEventTracker(num_samples, num_views=1, device=args.device)
        if state.global_step > 0:  # resuming: the Trainer restored checkpoint-<global_step>
            folder = self._resume_folder or os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            saved = load_training_state(folder)
            self.tracker.load_state_dict(saved.tracker_tensors, saved.tracker_metadata)
        self._remove_hooks()
        self._handles = [
            model.register_forward_pre_hook(self._take_index, with_kwargs=True),
            model.register_forward_hook(self._count),
        ]

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.tracker.start_epoch()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.tracker.end_epoch()

    def on_save(self, args, state, control, **kwargs):
        if args.should_save and self.tracker is not None:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            state = TrainingState(
                kind=CALLBACK_STATE,
                lnl_method=CALLBACK_STATE,
                num_samples=self.tracker.num_samples,
                tracker_tensors=self.tracker.state_dict(),
                tracker_metadata=self.tracker.metadata(),
            )
            save_training_state(folder, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._remove_hooks()

    # ------------------------------------------------------------------------------------------- report
    def noise_report(self) -> datasets.Dataset:
        """One row per training sample: `sample_index`, `label`, `wrong_events`, `predicted_label`,
        `noise_score` (wrong events / epochs counted)."""
        if self.tracker is None:
            raise RuntimeError("WrongEventCallback has no counts yet: train with it first.")
        counts = self.tracker.counts()
        return build_noise_report(
            index_column=self.sample_index_column,
            labels=self.tracker.given_labels(),
            wrong_events=counts,
            predicted_labels=self.tracker.last_predictions(),
            noise_scores=wrong_event_scores(counts, self.tracker.epochs_counted),
        )

    # ------------------------------------------------------------------------------------------- hooks
    def _take_index(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]):
        index = kwargs.pop(self.sample_index_column, None)
        if module.training:
            if index is None:
                raise ValueError(self._missing_index_message())
            self._pending = (index, kwargs.get("labels"))
        return args, kwargs

    def _count(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not module.training or self._pending is None:
            return
        index, labels = self._pending
        self._pending = None
        logits = output["logits"] if isinstance(output, dict) else output[1 if labels is not None else 0]
        if labels is not None:
            self.tracker.update(index, logits.detach().argmax(dim=-1), labels)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _check_setup(self, args, dataset: Any) -> None:
        if isinstance(dataset, datasets.Dataset) and self.sample_index_column not in dataset.column_names:
            raise ValueError(self._missing_index_message())
        if args.remove_unused_columns and isinstance(dataset, datasets.Dataset):
            raise ValueError(
                "WrongEventCallback needs remove_unused_columns=False: with True, the Trainer drops the "
                f"{self.sample_index_column!r} column before the batch reaches the model."
            )
        if self.num_samples is None and (dataset is None or not hasattr(dataset, "__len__")):
            raise ValueError("WrongEventCallback needs a sized training set, or pass num_samples=.")

    def _missing_index_message(self) -> str:
        return (
            f"WrongEventCallback needs a {self.sample_index_column!r} column in every training batch. Add it with "
            f"`train = hf_lnl.add_sample_index(train)` and set `remove_unused_columns=False` in TrainingArguments."
        )


class EpochEventsCallback(TrainerCallback):
    """`NoisyLabelTrainer`'s own callback: forwards epoch boundaries to its tracker and method (callbacks see the
    loop, not batches), logs the per-epoch noise estimates, logs the noise-detection metrics with the Trainer's
    closing `train_loss` summary and saves the report when training ends."""

    def __init__(self, trainer: Any):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        tracker = self.trainer.tracker
        if tracker is not None and tracker.epoch_open and state.global_step > 0 and float(state.epoch).is_integer():
            # Resumed from a checkpoint saved at an epoch's last step: that epoch ended after the save, so end it now.
            self.on_epoch_end(args, state, control)

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
        rate = estimated_noise_rate(trainer.method.noise_scores(), args.noise_score_threshold)
        trainer.noise_rate_history.append(rate)
        logs["estimated_noise_rate"] = trainer.noise_rate_history[-1]
        trainer.log(logs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The Trainer logs its closing summary (`train_loss`) at the end of the training loop, before `on_train_end`
        # closes the integrations (TensorBoard's writer, a tracker's run, the progress bar): logged right after it,
        # the detection metrics land in the same event file and run, and print on the console.
        trainer = self.trainer
        if "train_loss" not in (logs or {}) or trainer.tracker is None or trainer.label_info.clean_labels is None:
            return
        report = trainer.noise_report()
        metrics = noise_detection_metrics(report, threshold=args.noise_score_threshold)
        logs = {f"noise_detection_{k}": float(v) for k, v in metrics.items()}
        if "corrected_label" in report.column_names:
            logs.update({f"label_correction_{k}": float(v) for k, v in label_correction_metrics(report).items()})
        trainer.log(logs)

    def on_train_end(self, args, state, control, **kwargs):
        if self.trainer.tracker is not None and args.should_save:
            self.trainer.save_noise_report()
