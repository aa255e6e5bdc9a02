"""The small interface every noisy-label method implements; the trainer only talks to this."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from ..trainer import NoisyLabelTrainer


class LNLMethod:
    """Base class of a noisy-label method used by [`NoisyLabelTrainer`].

    A method computes the training loss of a batch (and reports each view's logits to the trainer's wrong-event
    tracker through `trainer.record_predictions`), reacts to epoch ends, and names the state it needs saved.

    Attributes:
        name: The `lnl_method` value.
        requires_class_labels: Whether the method refuses anything but one integer class id per sample.
        num_views: Forwards per sample and epoch that may each count a wrong event.
    """

    name = "none"
    requires_class_labels = False
    num_views = 1

    def __init__(self, trainer: NoisyLabelTrainer):
        self.trainer = trainer
        self.args = trainer.args

    # ------------------------------------------------------------------------------------ training hooks
    def setup(self) -> None:
        """Allocate state once the training set and device are known (before any checkpoint is loaded)."""

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], sample_index: torch.Tensor | None, num_items_in_batch: Any
    ) -> tuple[torch.Tensor, Any]:
        """Return `(loss, outputs)` for a training batch. `inputs` no longer holds the sample index."""
        raise NotImplementedError

    def on_epoch_end(self) -> dict[str, float]:
        """Called after the tracker closed the epoch; returns values to log."""
        return {}

    def training_steps(self, num_training_steps: int) -> int:
        """Steps the learning-rate schedule spans (IDO's stage 2 has its own schedule)."""
        return num_training_steps

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Per-sample tensors to save in the checkpoint's state file."""
        return {}

    def metadata(self) -> dict[str, Any]:
        """Small JSON-able state saved beside the tensors."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        """Restore what `state_dict()` and `metadata()` saved."""

    def save_extra(self, folder: str) -> None:
        """Write files of the method's own into a checkpoint folder (main process only)."""

    def load_extra(self, folder: str) -> None:
        """Read back what `save_extra` wrote."""

    # ------------------------------------------------------------------------------------------ report
    def noise_scores(self) -> np.ndarray:
        """Per-sample score in [0, 1], higher = more likely mislabelled (default: wrong events / maximum)."""
        tracker = self.trainer.tracker
        most = max(tracker.epochs_counted, 1) * self.num_views
        return np.clip(tracker.counts() / most, 0.0, 1.0)

    def report_columns(self) -> dict[str, np.ndarray]:
        """Extra per-sample report columns, in sample_index order."""
        return {}
