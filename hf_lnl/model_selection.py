"""Label-free model selection by CLID (Hu et al., "CLID-MU", KDD 2025, arXiv 2507.11807).

The authors of CLID-MU score each epoch by the mean CLID of a label-free set in eval mode and keep the checkpoint
with the lowest score: a checkpoint selector that needs no clean validation set. `evaluate_clid` computes that score
inside the trainer's evaluation (as `eval_clid`); the set is the one the user passes, else the trainer's
`clid_dataset`, else CLID-MU's meta set drawn from the training data (`draw_meta_set`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .clid import clid
from .data import select_rows, strip_labels
from .features import HeadFeatureCapture, sample_features
from .methods.clid_mu import draw_meta_set

if TYPE_CHECKING:
    from transformers import Trainer


def evaluate_clid(trainer: Trainer, dataset: Any = None) -> float:
    """Mean CLID of a label-free set under the current model, in eval mode (lower is better).

    The set is `dataset`, else `trainer.clid_dataset`, else the method's meta set (for methods without one, a meta
    set drawn from the training set exactly as CLID-MU draws it). Features and logits are gathered across processes
    in the set's stored order; CLID is then averaged over consecutive chunks of `clid_meta_batch_size` samples (a
    final chunk of fewer than 2 samples is dropped), so the value depends neither on the eval batch size nor on the
    number of processes.

    Args:
        trainer: The trainer whose model is scored (its eval dataloader machinery is used); a `NoisyLabelTrainer`
            also offers its `clid_dataset` and its method's meta set.
        dataset: A `datasets.Dataset` or map-style dataset of model inputs; labels, if any, are ignored.

    Returns:
        The mean CLID, a Python float (the same on every process).

    Example:
        >>> args = NoisyLabelConfig(output_dir="out", eval_strategy="epoch", save_strategy="epoch",  # doctest: +SKIP
        ...                         metric_for_best_model="clid", load_best_model_at_end=True)
        >>> evaluate_clid(trainer)  # also logged as `eval_clid` by every evaluation  # doctest: +SKIP
        2.93
    """
    args = trainer.args
    if dataset is None:
        dataset = getattr(trainer, "clid_dataset", None)
    if dataset is None:
        indices = getattr(getattr(trainer, "method", None), "meta_set_indices", None)
        if trainer.train_dataset is None:
            raise ValueError("eval_clid needs a label-free set: pass `clid_dataset` or a training set.")
        if indices is None:
            indices = draw_meta_set(len(trainer.train_dataset), args.clid_meta_set_size, args.seed)
        dataset = select_rows(trainer.train_dataset, indices)
    if len(dataset) < 2:
        raise ValueError(f"eval_clid needs at least 2 samples (CLID compares samples); the set has {len(dataset)}.")
    # The test dataloader is the eval one (eval batch size, sampler, column removal) without the persistent cache.
    dataloader = trainer.get_test_dataloader(dataset)
    model = trainer.model
    was_training = model.training
    model.eval()
    features, logits = [], []
    try:
        # fork_rng: iterating a DataLoader draws its base seed from the global generator, and a label-free score must
        # not change the training that follows (dropout, augmentation, the next epoch's order).
        capture = HeadFeatureCapture(model, args.clid_head_module)
        with torch.random.fork_rng(devices=[]), torch.no_grad(), capture:
            for batch in dataloader:
                batch = strip_labels(trainer._prepare_inputs(batch), args.sample_index_column, args.label_column)
                batch_logits = model(**batch)["logits"]
                batch_features = sample_features(capture.features, batch.get("attention_mask"))
                gathered = trainer.accelerator.gather_for_metrics((batch_features.float(), batch_logits.float()))
                features.append(gathered[0])
                logits.append(gathered[1])
    finally:
        model.train(was_training)
    h, z = torch.cat(features), torch.cat(logits)
    chunk = args.clid_meta_batch_size
    scores = [
        clid(h[start : start + chunk], z[start : start + chunk], args.clid_temperature)
        for start in range(0, len(h), chunk)
        if len(h) - start >= 2
    ]
    return float(torch.stack(scores).mean())
