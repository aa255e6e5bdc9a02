"""State-free per-sample losses: plain cross-entropy (`"none"`), GCE and SCE.

- GCE, generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018): `(1 - p_y^q) / q`.
- SCE, symmetric cross-entropy (Wang et al., ICCV 2019): `alpha * CE + beta * RCE`, where the reverse
  cross-entropy `-sum_k p_k log onehot_k` takes `log 0 = A` (A = -4 in the paper).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import IGNORE_INDEX
from .base import Citation, LNLMethod, MethodOutput
from .registry import register_method

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


GCE_CITATION = Citation(
    key="zhang2018generalized",
    title="Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels",
    authors=("Zhilu Zhang", "Mert R. Sabuncu"),
    venue="NeurIPS",
    booktitle="Advances in Neural Information Processing Systems (NeurIPS)",
    year=2018,
    eprint="1805.07836",
)
SCE_CITATION = Citation(
    key="wang2019symmetric",
    title="Symmetric Cross Entropy for Robust Learning with Noisy Labels",
    authors=("Yisen Wang", "Xingjun Ma", "Zaiyi Chen", "Yuan Luo", "Jinfeng Yi", "James Bailey"),
    venue="ICCV",
    booktitle="Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)",
    year=2019,
    eprint="1908.06112",
)


@register_method
class CrossEntropy(LNLMethod):
    """`lnl_method="none"`: the Trainer's own loss, untouched, plus wrong-event tracking."""

    name = "none"
    title = "plain cross-entropy with wrong-event tracking"
    description = (
        "Ordinary cross-entropy fine-tuning; hf_lnl counted each sample's wrong events (training forwards whose "
        "prediction disagreed with the given label). `noise_score` = wrong events / the most possible."
    )
    requires_class_labels = False
    returns_batch_mean = False  # the Trainer's own loss, scaled for gradient accumulation by the Trainer

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], sample_index: torch.Tensor | None, num_items_in_batch: Any
    ) -> MethodOutput:
        labels = inputs.get("labels")
        loss, outputs = self.context.model_loss(model, inputs, num_items_in_batch)
        return MethodOutput(loss, outputs, (outputs["logits"],), labels)


class _PerSampleLoss(LNLMethod):
    """A state-free per-sample loss averaged over the batch's labelled samples."""

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], sample_index: torch.Tensor | None, num_items_in_batch: Any
    ) -> MethodOutput:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        losses = self.per_sample_loss(outputs["logits"], labels)
        loss = losses.sum() / (labels != IGNORE_INDEX).sum().clamp_min(1)
        return MethodOutput(loss, outputs, (outputs["logits"],), labels, per_sample_loss=losses)


@register_method
class GeneralizedCrossEntropy(_PerSampleLoss):
    """`lnl_method="gce"`: generalized cross-entropy with exponent `gce_q`."""

    name = "gce"
    title = "generalized cross-entropy (GCE)"
    description = "Generalized cross-entropy `(1 - p_y^q) / q`, a loss that bounds each sample's influence."
    citation = GCE_CITATION
    config_fields = ("gce_q",)

    @classmethod
    def check_args(cls, args: Any) -> None:
        if not 0.0 < args.gce_q <= 1.0:
            raise ValueError(f"gce_q must lie in (0, 1] (q -> 0 is cross-entropy, 1 is MAE), got {args.gce_q}.")

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return gce_loss(logits, labels, q=self.args.gce_q)


@register_method
class SymmetricCrossEntropy(_PerSampleLoss):
    """`lnl_method="sce"`: symmetric cross-entropy with `sce_alpha`, `sce_beta`, `sce_log_clamp`."""

    name = "sce"
    title = "symmetric cross-entropy (SCE)"
    description = "Symmetric cross-entropy `alpha CE + beta RCE`, cross-entropy plus its reverse."
    citation = SCE_CITATION
    config_fields = ("sce_alpha", "sce_beta", "sce_log_clamp")

    @classmethod
    def check_args(cls, args: Any) -> None:
        for name in ("sce_alpha", "sce_beta"):  # a negative weight maximises its term
            value = getattr(args, name)
            if not 0.0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0 (the paper: 0.1 and 1.0), got {value}.")
        if args.sce_alpha + args.sce_beta == 0:
            raise ValueError("sce_alpha and sce_beta are both 0, so the loss is 0: set at least one above 0.")
        if not -math.inf < args.sce_log_clamp < 0:
            raise ValueError(
                f"sce_log_clamp is the value taken for log 0 and must be negative (the paper: -4), got "
                f"{args.sce_log_clamp}."
            )

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sce_loss(logits, labels, self.args.sce_alpha, self.args.sce_beta, self.args.sce_log_clamp)
