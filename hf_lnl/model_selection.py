"""Label-free model selection by CLID, and the label-free meta set it shares with CLID-MU (METHODS.md §5-6).

The authors of CLID-MU (Hu et al., KDD 2025, arXiv 2507.11807) score each epoch by the mean CLID of a label-free
set in eval mode and keep the checkpoint with the lowest score: a checkpoint selector that needs no clean
validation set. `evaluate_clid` computes that score inside the trainer's evaluation (as `eval_clid`); the set is the
one the user passes, else the trainer's `clid_dataset`, else the meta set drawn from the training data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch

from .clid import clid
from .features import HeadFeatureCapture

if TYPE_CHECKING:
    from .trainer import NoisyLabelTrainer

# Batch keys that must not reach a label-free forward (the per-sample id is added to this list at run time).
LABEL_KEYS = ("labels", "label")


def draw_meta_set(num_samples: int, size: int, seed: int) -> np.ndarray:
    """Row positions of a label-free meta set: `min(size, num_samples)` distinct rows drawn at random (seeded).

    The rows keep the random order they are drawn in, so consecutive chunks of the set mix classes even when the
    training set is sorted by class.

    Example:
        >>> draw_meta_set(10, 4, seed=0)
        array([4, 6, 2, 7])
    """
    if num_samples < 1 or size < 1:
        raise ValueError(f"A meta set needs num_samples >= 1 and size >= 1, got {num_samples} and {size}.")
    return np.random.default_rng(seed).permutation(num_samples)[: min(size, num_samples)].astype(np.int64)


def training_subset(trainer: NoisyLabelTrainer, indices: np.ndarray) -> Any:
    """The rows `indices` of the trainer's training set, as a `datasets.Dataset` or a `torch.utils.data.Subset`.

    Example:
        >>> meta_set = training_subset(trainer, draw_meta_set(len(trainer.train_dataset), 1000, seed=0))
    """
    dataset = trainer.train_dataset
    if dataset is None:
        raise ValueError("No training set to draw a meta set from: pass a `clid_dataset` to NoisyLabelTrainer.")
    if isinstance(dataset, datasets.Dataset):
        return dataset.select(indices)
    return torch.utils.data.Subset(dataset, [int(i) for i in indices])


def strip_labels(batch: dict[str, Any], index_column: str) -> dict[str, Any]:
    """Drop the labels and the per-sample id from a collated batch, leaving model inputs only (in place)."""
    for key in (*LABEL_KEYS, index_column):
        batch.pop(key, None)
    return batch


def sample_features(features: torch.Tensor | None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One feature row per sample: 2-D head inputs unchanged; for (B, T, H) inputs (decoder `score` heads, which
    pool the logits at the last token) the last attended token, as those models do.

    Example:
        >>> sample_features(torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])).shape
        torch.Size([2, 8])
    """
    if features is None:
        raise ValueError(
            "The classification head received no tensor during the forward. Set `clid_head_module` to the module "
            "whose input is the feature CLID compares."
        )
    if features.dim() == 2:
        return features
    if features.dim() != 3:
        raise ValueError(
            f"The classification head received a {features.dim()}-D input {tuple(features.shape)}; CLID needs one "
            "feature vector per sample. Set `clid_head_module` to the module whose input is that vector."
        )
    positions = torch.arange(features.shape[1], device=features.device)
    if attention_mask is None:
        last = torch.full((features.shape[0],), features.shape[1] - 1, device=features.device)
    else:
        last = (positions * attention_mask.to(positions.device)).argmax(dim=1)
    return features[torch.arange(features.shape[0], device=features.device), last]


def evaluate_clid(trainer: NoisyLabelTrainer, dataset: Any = None) -> float:
    """Mean CLID of a label-free set under the current model, in eval mode (lower is better).

    The set is `dataset`, else `trainer.clid_dataset`, else the method's meta set (for methods without one, a meta
    set drawn from the training set exactly as CLID-MU draws it). Features and logits are gathered across processes
    in the set's stored order; CLID is then averaged over consecutive chunks of `clid_meta_batch_size` samples (a
    final chunk of fewer than 2 samples is dropped), so the value depends neither on the eval batch size nor on the
    number of processes.

    Args:
        trainer: The trainer whose model is scored (its eval dataloader machinery is used).
        dataset: A `datasets.Dataset` or map-style dataset of model inputs; labels, if any, are ignored.

    Returns:
        The mean CLID, a Python float (the same on every process).

    Example:
        >>> args = NoisyLabelConfig(output_dir="out", eval_strategy="epoch", save_strategy="epoch",
        ...                         metric_for_best_model="clid", load_best_model_at_end=True)
        >>> evaluate_clid(trainer)  # also logged as `eval_clid` by every evaluation
        2.93
    """
    args = trainer.args
    if dataset is None:
        dataset = trainer.clid_dataset
    if dataset is None:
        indices = getattr(trainer.method, "meta_set_indices", None)
        if indices is None:
            if trainer.train_dataset is None:
                raise ValueError("eval_clid needs a label-free set: pass `clid_dataset` or a training set.")
            indices = draw_meta_set(len(trainer.train_dataset), args.clid_meta_set_size, args.seed)
        dataset = training_subset(trainer, indices)
    if len(dataset) < 2:
        raise ValueError(f"eval_clid needs at least 2 samples (CLID compares samples); the set has {len(dataset)}.")
    # The test dataloader is the eval one (eval batch size, sampler, column removal) without the persistent cache.
    dataloader = trainer.get_test_dataloader(dataset)
    model = trainer.model
    was_training = model.training
    model.eval()
    features, logits = [], []
    try:
        with torch.no_grad(), HeadFeatureCapture(model, args.clid_head_module) as capture:
            for batch in dataloader:
                batch = strip_labels(trainer._prepare_inputs(batch), args.sample_index_column)
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
