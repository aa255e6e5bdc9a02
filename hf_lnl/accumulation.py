"""Gradient accumulation: every method scales its loss the way `Trainer` scales the model's own loss.

`Trainer` divides a micro-batch's loss by the accumulation steps unless the model's forward takes `**kwargs` (it then
passes `num_items_in_batch` and expects the model to divide a sum by it). Models that take `**kwargs` but ignore
`num_items_in_batch` (in transformers 5, e.g. `BertForSequenceClassification`, whose loss is a plain
`CrossEntropyLoss()` mean) are therefore neither divided by the Trainer nor by themselves: with k accumulation steps
the logged loss and the gradient are k times those without accumulation. Models built on `loss_function` (e.g.
`ViTForImageClassification`) divide, and their accumulated loss is the mean. `lnl_method="none"` keeps whichever the
model does, to stay a drop-in `Trainer`; the other methods return a micro-batch mean, and follow the same convention
through `loss_is_scaled_for_ga`, decided here from one probe of the model, so that switching methods never changes
the step.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .data import IGNORE_INDEX

logger = logging.getLogger(__name__)


def loss_ignores_num_items(model: nn.Module, inputs: dict[str, Any]) -> bool:
    """Whether the model's own loss on `inputs` (with `labels`) ignores `num_items_in_batch`: two no-grad eval-mode
    forwards (no dropout, no random numbers drawn), one told the batch holds twice its labelled items.

    Example:
        >>> model = BertForSequenceClassification(config)  # doctest: +SKIP
        >>> loss_ignores_num_items(model, batch)  # a CrossEntropyLoss() mean  # doctest: +SKIP
        True
    """
    labels = inputs["labels"]
    twice = 2 * (labels != IGNORE_INDEX).sum().clamp_min(1)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mean = model(**inputs)["loss"].float()
            halved = model(**inputs, num_items_in_batch=twice)["loss"].float()
    finally:
        model.train(was_training)
    return bool((halved - mean).abs() < (halved - mean / 2).abs())


def method_loss_is_scaled_for_ga(trainer: Any, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any):
    """`loss_is_scaled_for_ga` for a method returning a micro-batch mean: True (the Trainer must not divide it) when
    the Trainer would not divide the model's own loss and the model does not divide it either; else False.
    """
    if not trainer.model_accepts_loss_kwargs or num_items_in_batch is None or "labels" not in inputs:
        return False
    try:
        return loss_ignores_num_items(model, inputs)
    except (TypeError, ValueError, RuntimeError, KeyError) as error:  # a model that cannot take this batch as is
        logger.warning(f"Could not probe the model's loss for gradient accumulation ({error}); methods average it.")
        return False
