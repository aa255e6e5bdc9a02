"""`TrainerContext`: `NoisyLabelTrainer`'s side of the method contract (`hf_lnl.methods.base.MethodContext`).

A method sees only the `MethodContext` interface; this implementation answers it from a `transformers.Trainer` that
also carries hf_lnl's per-sample state (`tracker`, `label_info`, `method`, `noise_rate_history`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch
from torch import nn

from .data import select_rows, strip_labels
from .methods.base import MethodContext
from .state import TrainingState, labels_checksum, load_training_state, save_training_state

if TYPE_CHECKING:
    from transformers import Trainer

STAGE_STATE = "ido_stage1"  # the state kind of an exported stage (IDO's finished stage 1)


class TrainerContext(MethodContext):
    """The `MethodContext` of a `NoisyLabelTrainer` (built by the trainer; methods never see the trainer).

    Example:
        >>> context = TrainerContext(trainer)  # doctest: +SKIP
        >>> context.global_step  # doctest: +SKIP
        0
    """

    def __init__(self, trainer: Trainer):
        super().__init__(trainer.args, trainer.processing_class, trainer.label_info)
        self._trainer = trainer
        self._rows: Any = None

    # ---------------------------------------------------------------------------------------------- facts
    @property
    def model(self) -> nn.Module:
        return self._trainer.model

    @property
    def global_step(self) -> int:
        return self._trainer.state.global_step

    @property
    def epoch(self) -> float:
        return self._trainer.state.epoch

    @property
    def wrong_events(self) -> torch.Tensor:
        return self._tracker().wrong_events[:-1]

    @property
    def epochs_completed(self) -> int:
        return self._tracker().epochs_completed

    @property
    def epochs_counted(self) -> int:
        return self._tracker().epochs_counted

    @property
    def prediction_changes(self) -> list[int]:
        return list(self._tracker().prediction_changes)

    @property
    def parameters_are_sharded(self) -> bool:
        trainer = self._trainer
        zero_stage = trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else 0
        return bool(trainer.is_fsdp_enabled or zero_stage == 3)

    def counts(self) -> np.ndarray:
        return self._tracker().counts()

    def first_visit(self, sample_index: torch.Tensor, view: int = 0) -> torch.Tensor:
        seen = self._tracker().seen
        return (seen[sample_index.to(seen.device)] & (1 << view)) == 0

    # ---------------------------------------------------------------------------------------------- hooks
    def model_loss(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any) -> tuple[Any, Any]:
        return self._trainer.model_loss(model, inputs, num_items_in_batch)

    def autocast(self) -> contextlib.AbstractContextManager:
        return self._trainer.accelerator.autocast()

    def restart_optimization(self) -> None:
        self._trainer.restart_optimization()

    def training_rows(self, indices: np.ndarray) -> Any:
        subset = select_rows(self._trainer.train_dataset, indices)
        if isinstance(subset, datasets.Dataset):
            return self._trainer._remove_unused_columns(subset, description="hf_lnl")
        return subset

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        trainer = self._trainer
        collator = trainer.data_collator
        if not isinstance(trainer.train_dataset, datasets.Dataset):
            collator = trainer._get_collator_with_removed_columns(collator)
        batch = trainer._prepare_inputs(collator(rows))
        return strip_labels(batch, self.args.sample_index_column, self.args.label_column)

    def export_state(self, folder: str, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        tracker = self._tracker()
        state = TrainingState(
            kind=STAGE_STATE,
            lnl_method=self._trainer.method.name,
            num_samples=tracker.num_samples,
            labels_sha256=labels_checksum(self.label_info.labels),
            tracker_tensors=tracker.state_dict(),
            tracker_metadata=tracker.metadata(),
            method_tensors=tensors,
            method_metadata=metadata,
        )
        save_training_state(folder, state)

    def import_state(self, folder: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tracker = self._tracker()
        saved = load_training_state(folder)
        saved.check_matches(
            folder,
            kind=STAGE_STATE,
            lnl_method=self._trainer.method.name,
            num_samples=tracker.num_samples,
            labels_sha256=labels_checksum(self.label_info.labels),
        )
        tracker.load_state_dict(saved.tracker_tensors, saved.tracker_metadata)
        return saved.method_tensors, saved.method_metadata

    def _tracker(self) -> Any:
        if self._trainer.tracker is None:
            raise RuntimeError("Per-sample tracking is off for this run: there are no wrong-event counts.")
        return self._trainer.tracker
