"""Per-sample wrong-event counts and prediction changes (IDO, Zhang et al., NeurIPS 2025, arXiv 2505.00812).

A *wrong event* is a training forward whose argmax differs from the sample's given label. Counts come from the
training forward itself, so tracking costs no extra pass. Every process holds identical state: updates are gathered
across processes first, and each sample is counted at most once per epoch and view, which also discards the
samples that a distributed sampler repeats to even out the last batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .data import IGNORE_INDEX
from .distributed import gather_rows

UNSEEN = -1
_STATE_TENSORS = ("wrong_events", "predictions", "previous_predictions", "seen", "labels")


class WrongEventTracker:
    """Device-resident per-sample counters, sized to the training set.

    Args:
        num_samples: Size of the training set (`sample_index` runs over `0..num_samples-1`).
        num_views: Views per sample and epoch that may each add one wrong event (IDO's stage 2 has two).
        device: Where the counters live; keep them on the training device.

    Example:
        >>> tracker = WrongEventTracker(num_samples=4)
        >>> tracker.start_epoch()
        >>> tracker.update(torch.tensor([0, 1]), predictions=torch.tensor([2, 1]), labels=torch.tensor([1, 1]))
        >>> tracker.end_epoch()
        >>> tracker.counts().tolist()
        [1, 0, 0, 0]
    """

    def __init__(self, num_samples: int, num_views: int = 2, device: torch.device | str = "cpu"):
        if num_samples <= 0:
            raise ValueError(f"WrongEventTracker needs a non-empty training set, got num_samples={num_samples}.")
        self.num_samples = num_samples
        self.num_views = num_views
        # One spare slot at the end absorbs writes that must not land (repeats, ignored labels) without a branch.
        self.wrong_events = torch.zeros(num_samples + 1, dtype=torch.int32, device=device)
        self.predictions = torch.full((num_samples + 1,), UNSEEN, dtype=torch.int32, device=device)
        self.previous_predictions = torch.full_like(self.predictions, UNSEEN)
        self.seen = torch.zeros(num_samples + 1, dtype=torch.uint8, device=device)  # bit v = seen in view v
        self.labels = torch.full((num_samples + 1,), IGNORE_INDEX, dtype=torch.int32, device=device)  # as given
        self.prediction_changes: list[int] = []
        self.epochs_completed = 0
        self.epoch_open = False

    # ----------------------------------------------------------------------------------------------- updates
    def start_epoch(self) -> None:
        """Open a new counting epoch: every sample may again add one wrong event per view.

        A no-op while an epoch is open, so resuming from a mid-epoch checkpoint keeps the epoch's record.
        """
        if not self.epoch_open:
            self.seen.zero_()
            self.epoch_open = True

    def update(
        self,
        sample_index: torch.Tensor,
        predictions: torch.Tensor,
        labels: torch.Tensor,
        view: int = 0,
        gather: bool = True,
    ) -> None:
        """Count this batch's wrong events (gathered across processes unless `gather=False`).

        Labels equal to -100 are never counted; a sample already counted in this epoch and view is skipped.
        No host synchronisation happens here.
        """
        if gather:
            sample_index, predictions, labels = gather_rows(sample_index, predictions, labels)
        self._apply(sample_index, predictions, labels, view)

    def _apply(self, sample_index: torch.Tensor, predictions: torch.Tensor, labels: torch.Tensor, view: int) -> None:
        device = self.wrong_events.device
        index = sample_index.to(device=device, dtype=torch.long)
        predictions = predictions.to(device=device, dtype=torch.int32)
        labels = labels.to(device=device)
        bit = 1 << view
        fresh = (labels != IGNORE_INDEX) & first_occurrence(index) & ((self.seen[index] & bit) == 0)
        target = torch.where(fresh, index, torch.full_like(index, self.num_samples))
        self.seen[target] |= bit
        self.wrong_events.index_add_(0, target, (fresh & (predictions != labels)).to(torch.int32))
        if view == 0:
            self.predictions[target] = predictions
            self.labels[target] = labels.to(torch.int32)

    # ------------------------------------------------------------------------------------------ epoch ends
    def end_epoch(self) -> int | None:
        """Close the epoch: record the prediction change against the previous epoch (None for the first)."""
        current, previous = self.predictions[:-1], self.previous_predictions[:-1]
        change = None
        if self.epochs_completed > 0:
            both = (current != UNSEEN) & (previous != UNSEEN)
            change = int(((current != previous) & both).sum())
            self.prediction_changes.append(change)
        seen_now = current != UNSEEN
        self.previous_predictions[:-1] = torch.where(seen_now, current, previous)
        self.predictions[:-1] = UNSEEN
        self.epochs_completed += 1
        self.epoch_open = False
        return change

    # ----------------------------------------------------------------------------------------------- reads
    @property
    def epochs_counted(self) -> int:
        """Epochs that have contributed counts so far, the open one included."""
        return self.epochs_completed + int(self.epoch_open)

    def counts(self) -> np.ndarray:
        """Wrong events per sample, as a numpy array of length `num_samples`."""
        return self.wrong_events[:-1].cpu().numpy().astype(np.int64)

    def given_labels(self) -> np.ndarray:
        """The label each sample was trained with, as last seen (-100 for a sample never seen)."""
        return self.labels[:-1].cpu().numpy().astype(np.int64)

    def last_predictions(self) -> np.ndarray:
        """The prediction at each sample's last visit (-1 for a sample never seen)."""
        current, previous = self.predictions[:-1], self.previous_predictions[:-1]
        return torch.where(current != UNSEEN, current, previous).cpu().numpy().astype(np.int64)

    # ------------------------------------------------------------------------------------------ save / load
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to save (13 bytes per sample: int32 counts and labels, int16 predictions, uint8 seen bits)."""
        largest = max(int(self.predictions.max()), int(self.previous_predictions.max()))
        prediction_dtype = torch.int16 if largest < 2**15 else torch.int32
        return {
            "wrong_events": self.wrong_events[:-1],
            "predictions": self.predictions[:-1].to(prediction_dtype),
            "previous_predictions": self.previous_predictions[:-1].to(prediction_dtype),
            "seen": self.seen[:-1],
            "labels": self.labels[:-1],
        }

    def metadata(self) -> dict[str, Any]:
        """Small JSON-able facts saved beside the tensors."""
        return {
            "prediction_changes": list(self.prediction_changes),
            "epochs_completed": self.epochs_completed,
            "epoch_open": self.epoch_open,
        }

    def load_state_dict(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        """Restore `state_dict()` + `metadata()`; raises `ValueError` if the sizes do not match or a count is more than
        the epochs allow."""
        size = tensors["wrong_events"].numel()
        if size != self.num_samples:
            raise ValueError(
                f"The saved wrong-event state covers {size} samples but the training set has {self.num_samples}. "
                "Resume with the same training set the checkpoint was made with."
            )
        epochs = int(metadata["epochs_completed"]) + int(bool(metadata["epoch_open"]))
        if size and int(tensors["wrong_events"].max()) > self.num_views * epochs:
            raise ValueError(
                f"The saved wrong-event state holds {int(tensors['wrong_events'].max())} wrong events for one sample, "
                f"more than {self.num_views} views x {epochs} epochs allow: it is corrupt. Resume from an earlier "
                "checkpoint."
            )
        for name in _STATE_TENSORS:
            target = getattr(self, name)
            target[:-1] = tensors[name].to(device=target.device, dtype=target.dtype)
        self.prediction_changes = [int(c) for c in metadata["prediction_changes"]]
        self.epochs_completed = int(metadata["epochs_completed"])
        self.epoch_open = bool(metadata["epoch_open"])

    def to(self, device: torch.device | str) -> WrongEventTracker:
        """Move the counters to `device` (e.g. the training device once it is known)."""
        for name in _STATE_TENSORS:
            setattr(self, name, getattr(self, name).to(device))
        return self


def first_occurrence(index: torch.Tensor) -> torch.Tensor:
    """Mask that is True at the first position of each distinct value (stable, no host sync).

    Example:
        >>> first_occurrence(torch.tensor([3, 1, 3, 2, 1]))
        tensor([ True,  True, False,  True, False])
    """
    if index.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=index.device)
    order = torch.sort(index, stable=True).indices
    sorted_index = index[order]
    first_sorted = torch.ones_like(sorted_index, dtype=torch.bool)
    first_sorted[1:] = sorted_index[1:] != sorted_index[:-1]
    return torch.empty_like(first_sorted).scatter_(0, order, first_sorted)


def select_base_epoch(prediction_changes: list[int]) -> int:
    """The 1-based epoch of IDO's base model from per-epoch prediction changes (Label Wave, ICLR 2025).

    `prediction_changes[k]` compares epoch k+2 with epoch k+1. The base model is the last epoch before the
    prediction change stops decreasing; if it keeps falling, the last epoch.

    Example:
        >>> select_base_epoch([50, 30, 35, 20])  # epoch 4 changed 35 >= 30: search ends, base is epoch 3
        3
    """
    for k in range(1, len(prediction_changes)):
        if prediction_changes[k] >= prediction_changes[k - 1]:
            return k + 1
    return len(prediction_changes) + 1


def wrong_event_scores(counts: np.ndarray, max_wrong_events: int) -> np.ndarray:
    """`noise_score` from counts alone: wrong events / the most possible, in [0, 1].

    Example:
        >>> wrong_event_scores(np.array([0, 1, 3]), 3)
        array([0.        , 0.33333333, 1.        ])
    """
    return np.clip(np.asarray(counts) / max(max_wrong_events, 1), 0.0, 1.0)


def flag_ordered_scores(
    flagged: np.ndarray, counts: np.ndarray, max_wrong_events: int, threshold: float
) -> np.ndarray:
    """`noise_score` that keeps a decision (`flagged`) and ranks each side of it by wrong events.

    Flagged samples score in (threshold, 1], the others in [0, threshold), so `noise_score > threshold` is exactly
    `flagged`; on each side more wrong events score higher. IDO's per-class mixtures decide as well as pooled counts
    but rank worse across classes (their posteriors are calibrated per class), hence this score.

    Example:
        >>> flag_ordered_scores(np.array([False, True, False, True]), np.array([0, 1, 3, 3]), 3, 0.5)
        array([0.   , 0.75 , 0.375, 1.   ])
    """
    scale = max(max_wrong_events, 0) + 1
    counts = np.clip(np.asarray(counts, dtype=np.float64), 0, scale - 1)
    return np.where(
        np.asarray(flagged, dtype=bool),
        threshold + (1.0 - threshold) * (counts + 1) / scale,
        threshold * counts / scale,
    )
