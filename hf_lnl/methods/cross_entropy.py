"""State-free per-sample losses: plain cross-entropy (`"none"`), GCE and SCE.

- GCE, generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018): `(1 - p_y^q) / q`.
- SCE, symmetric cross-entropy (Wang et al., ICCV 2019): `alpha * CE + beta * RCE`, where the reverse
  cross-entropy `-sum_k p_k log onehot_k` takes `log 0 = A` (A = -4 in the paper).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import LNLMethod

IGNORE_INDEX = -100
PROBABILITY_FLOOR = 1e-7  # keeps p_y^q and its gradient finite at p_y = 0


def gce_loss(logits: torch.Tensor, labels: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Per-sample generalized cross-entropy `(1 - p_y^q) / q`; 0 for labels of -100.

    Example:
        >>> gce_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), q=1.0)  # q = 1 is MAE-like: 1 - p_y
        tensor([0.1192])
    """
    keep = labels != IGNORE_INDEX
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    p_y = F.softmax(logits.float(), dim=-1).gather(1, safe[:, None]).squeeze(1).clamp_min(PROBABILITY_FLOOR)
    return torch.where(keep, (1.0 - p_y.pow(q)) / q, torch.zeros_like(p_y))


def sce_loss(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.1, beta: float = 1.0, log_clamp: float = -4.0
) -> torch.Tensor:
    """Per-sample symmetric cross-entropy `alpha * CE + beta * RCE`; 0 for labels of -100.

    `RCE = -sum_k p_k log onehot_k = -log_clamp * (1 - p_y)`, since log 1 = 0 and log 0 is clamped to `log_clamp`.

    Example:
        >>> sce_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]), alpha=0.0, beta=1.0)  # 4 * (1 - 0.5)
        tensor([2.])
    """
    keep = labels != IGNORE_INDEX
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    logits = logits.float()
    ce = F.cross_entropy(logits, safe, reduction="none")
    p_y = F.softmax(logits, dim=-1).gather(1, safe[:, None]).squeeze(1)
    rce = -log_clamp * (1.0 - p_y)
    return torch.where(keep, alpha * ce + beta * rce, torch.zeros_like(ce))


class CrossEntropy(LNLMethod):
    """`lnl_method="none"`: the Trainer's own loss, untouched, plus wrong-event tracking."""

    name = "none"

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], sample_index: torch.Tensor | None, num_items_in_batch: Any
    ) -> tuple[torch.Tensor, Any]:
        labels = inputs.get("labels")
        loss, outputs = self.trainer.default_compute_loss(model, inputs, num_items_in_batch)
        self.trainer.record_predictions(sample_index, outputs["logits"], labels, loss=loss)
        return loss, outputs


class _PerSampleLoss(LNLMethod):
    """A state-free per-sample loss averaged over the batch's labelled samples."""

    requires_class_labels = True

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], sample_index: torch.Tensor | None, num_items_in_batch: Any
    ) -> tuple[torch.Tensor, Any]:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        losses = self.per_sample_loss(outputs["logits"], labels)
        loss = losses.sum() / (labels != IGNORE_INDEX).sum().clamp_min(1)
        self.trainer.record_predictions(sample_index, outputs["logits"], labels, per_sample_loss=losses)
        return loss, outputs


class GeneralizedCrossEntropy(_PerSampleLoss):
    """`lnl_method="gce"`: generalized cross-entropy with exponent `gce_q`."""

    name = "gce"

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return gce_loss(logits, labels, q=self.args.gce_q)


class SymmetricCrossEntropy(_PerSampleLoss):
    """`lnl_method="sce"`: symmetric cross-entropy with `sce_alpha`, `sce_beta`, `sce_log_clamp`."""

    name = "sce"

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sce_loss(logits, labels, self.args.sce_alpha, self.args.sce_beta, self.args.sce_log_clamp)
