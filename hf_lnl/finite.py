"""Non-finite values stop training before they reach the weights: each batch's loss (naming its samples), the
gradient before each optimiser step (the Trainer computes its norm anyway), and the weights before each save.

`Trainer` skips a NaN loss in its logs and steps the optimiser anyway; `NoisyLabelTrainer` raises instead, so the
last checkpoint stays the last good one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import IGNORE_INDEX

MAX_NAMED = 5  # parameters named in an error message


class NonFiniteTrainingError(RuntimeError):
    """A training value (loss, gradient or weight) was NaN or infinite; training stopped before it reached a weight
    or a checkpoint."""


class NonFiniteLossError(NonFiniteTrainingError):
    """A training loss was NaN or infinite; raised before the optimiser step, so no weights were touched."""


class NonFiniteGradientError(NonFiniteTrainingError):
    """Every loss of the step was finite but the gradient was not; raised before the optimiser step."""


def finite_samples(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    loss: torch.Tensor,
    per_sample_loss: torch.Tensor | None = None,
    classification: bool = True,
) -> torch.Tensor:
    """Per sample of one view: whether its logits and its loss are finite (on device, no host sync).

    Without a per-sample loss, a classifier's samples are judged by their cross-entropy; a non-finite batch loss with
    finite per-sample losses blames the whole batch. Other heads (regression) are judged by the batch loss alone.

    Example:
        >>> finite_samples(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), torch.tensor([1, 0]), torch.tensor(1.0))
        tensor([ True, False])
    """
    finite = torch.isfinite(logits).all(dim=-1)
    if per_sample_loss is not None:
        return finite & torch.isfinite(per_sample_loss.detach())
    if classification and labels is not None and labels.dim() == 1:
        per_sample = F.cross_entropy(logits.float(), labels, reduction="none", ignore_index=IGNORE_INDEX)
        finite &= torch.isfinite(per_sample)
        return finite & (torch.isfinite(loss.detach()) | ~finite.all())
    return finite & torch.isfinite(loss.detach())


def non_finite_loss(state: Any, bad_index: torch.Tensor | None) -> NonFiniteLossError:
    """The error for a non-finite loss at the Trainer `state`'s step, naming the samples (`bad_index`) when known."""
    where = "unknown samples" if bad_index is None else f"sample_index {sorted(set(bad_index.tolist()))[:20]}"
    return NonFiniteLossError(
        f"Non-finite training loss at global step {state.global_step} (epoch {state.epoch or 0.0:.2f}), from {where}. "
        "Training "
        "stopped before the optimiser step; checkpoints already written are intact. Lower the learning rate, enable "
        "max_grad_norm, or inspect those samples (inputs and labels)."
    )


def check_gradient(grad_norm: Any, model: nn.Module, scaler: Any, state: Any) -> None:
    """Raise `NonFiniteGradientError` if the gradient norm the Trainer computed before the optimiser step is not
    finite (the Trainer `state` gives the step for the message).

    Under fp16 with a gradient scaler an infinite gradient is the scaler's normal signal to skip the step and lower
    its scale, so nothing is checked then.
    """
    if grad_norm is None or (scaler is not None and scaler.is_enabled()):
        return
    if bool(torch.isfinite(torch.as_tensor(grad_norm)).all()):
        return
    names = [n for n, p in model.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    raise NonFiniteGradientError(
        f"Non-finite gradient (norm {float(grad_norm)}) at global step {state.global_step} (epoch "
        f"{state.epoch or 0.0:.2f}), "
        f"although every loss of the step was finite; in {len(names)} parameters, e.g. {names[:MAX_NAMED]}. Training "
        "stopped before the optimiser step: no weight changed and checkpoints already written are intact. Lower the "
        "learning rate, or look for an operation with an unstable backward (sqrt, log, division near 0) in custom "
        "layers or hooks; under fp16 train with a gradient scaler (a GPU) or bf16."
    )


def check_weights(model: nn.Module, state: Any, folder: str) -> None:
    """Raise `NonFiniteTrainingError` before a non-finite weight is saved into `folder` (at the `state`'s step)."""
    parameters = list(model.named_parameters())
    if not parameters or bool(torch.stack([torch.isfinite(p.detach()).all() for _, p in parameters]).all()):
        return
    names = [name for name, p in parameters if not bool(torch.isfinite(p.detach()).all())]
    raise NonFiniteTrainingError(
        f"At global step {state.global_step} the model holds non-finite weights ({len(names)} parameters, e.g. "
        f"{names[:MAX_NAMED]}); hf_lnl refuses to save them to {folder!r}. The checkpoints already written are the "
        "last good ones: resume from the latest with a lower learning rate."
    )
