"""Label correction: what a method teaches the samples it flags instead of discarding them.

`PredictionMemory` keeps, per training sample, the model's latest prediction and its confidence (the softmax maximum)
from the training forward the method already runs, identical on every process. A flagged sample whose remembered
prediction is confident enough gets that prediction as its corrected target (FixMatch's rule, Sohn et al. 2020;
with threshold 0, dynamic hard bootstrapping, Arazo et al. 2019). IDO reads the weak view of the same step and
teaches the strong view; CLID-MU, which has one view, reads the prediction of the sample's previous visit (a teacher
one epoch old, not the prediction being trained).

Example:
    >>> memory = PredictionMemory(num_samples=4, device="cpu")
    >>> memory.update(torch.tensor([0, 2]), torch.tensor([[4.0, 0.0], [0.0, 0.1]]))
    >>> memory.corrected_labels(np.array([1, 1, 1, 1]), flagged=np.array([True, False, True, True]), threshold=0.9)
    array([0, 1, 1, 1])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import IGNORE_INDEX
from .distributed import gather_rows

NOT_SEEN = -1  # the remembered prediction of a sample not visited yet
BELIEVED = 0.5  # a flagged label the model gives at least this probability counts as believed (`believed_share`)
# IDO's ido_correction="auto" and CLID-MU's clid_disputed_safeguard: when a model trained with plain cross-entropy
# still gives at least this share of the flagged labels (p_noisy > 1/2) even odds, the flags are disputed labels,
# mostly right (real crowd noise), rather than flips. Measured (ablations README), disputed: Task R 32-33% (IDO's base
# model, seeds 0-2, either stage-1 schedule). Flips: IDO's former stage-1 schedule 0.4-3.0% (Task A sym40, asym40,
# seeds 0-2), 0.3-6.4% (B2 sym40, asym40), Task A sym60 0%, inst40 3.5% (seed 0); two epochs at the full learning rate
# begin to learn look-alike flips: Task A asym40 12.2% (IDO's constant stage-1 rate); Task B2 asym40 4.5-9.7% (IDO's
# constant stage-1 rate, 15 epochs, seeds 0-2). 20% lies in the gap (10% until hf_lnl 0.3, which only the constant
# rate crossed). At low noise, where the flags are mostly clean labels, the share is high too (IDO: Task A sym20 32%,
# sym0 86%). CLID-MU's check reads another model (the end of its warm-up) and has its own threshold
# (`clid_mu.DISPUTED_BELIEVED_SHARE`).
MIN_BELIEVED_SHARE = 0.20


class PredictionMemory:
    """Per-sample latest prediction and confidence, for label correction (see the module docstring).

    Attributes:
        prediction: (N,) long, the argmax of the last logits seen for each sample (`NOT_SEEN` before its first visit).
        confidence: (N,) float32, the softmax maximum of those logits (0 before the first visit).
    """

    def __init__(self, num_samples: int, device: torch.device | str):
        self.prediction = torch.full((num_samples,), NOT_SEEN, dtype=torch.long, device=device)
        self.confidence = torch.zeros(num_samples, dtype=torch.float32, device=device)

    def update(self, sample_index: torch.Tensor, logits: torch.Tensor) -> None:
        """Remember this batch's predictions (gathered from every process, so every process holds the same)."""
        confidence, prediction = F.softmax(logits.detach().float(), dim=-1).max(dim=-1)
        index, prediction, confidence = gather_rows(sample_index, prediction, confidence)
        index = index.to(self.prediction.device)
        self.prediction[index] = prediction.to(self.prediction.device, torch.long)
        self.confidence[index] = confidence.to(self.confidence.device, torch.float32)

    def lookup(self, sample_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, confidence) remembered for a batch's samples, on the batch's device."""
        index = sample_index.to(self.prediction.device)
        return self.prediction[index].to(sample_index.device), self.confidence[index].to(sample_index.device)

    def corrected_labels(self, labels: np.ndarray, flagged: np.ndarray, threshold: float) -> np.ndarray:
        """`labels` with each flagged sample's remembered prediction where it is at least `threshold` confident."""
        labels = np.asarray(labels).copy()
        prediction = self.prediction.cpu().numpy()
        confident = self.confidence.cpu().numpy() >= threshold
        corrected = np.asarray(flagged) & confident & (prediction != NOT_SEEN) & (labels != IGNORE_INDEX)
        labels[corrected] = prediction[corrected]
        return labels

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}prediction": self.prediction, f"{prefix}confidence": self.confidence}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        self.prediction = tensors[f"{prefix}prediction"].to(self.prediction.device, torch.long)
        self.confidence = tensors[f"{prefix}confidence"].to(self.confidence.device, torch.float32)


class SoftTargetMemory:
    """Per-sample predicted distribution (its `top_k` most probable classes), for soft-label correction: IDO's
    `ido_correction="base_prediction"` teaches a flagged sample what the base model predicted for it.

    Only the top classes are kept (`top_k` indices and probabilities: 12 `top_k` bytes per sample, not 4 per class)
    and `targets` renormalises them, so a label space of any size costs the same.

    Example:
        >>> memory = SoftTargetMemory(num_samples=2, num_classes=3, device="cpu", top_k=2)
        >>> memory.update(torch.tensor([1]), torch.tensor([[0.0, 2.0, 1.0]]))
        >>> memory.targets(torch.tensor([1])).round(decimals=3)
        tensor([[0.0000, 0.7310, 0.2690]])
    """

    def __init__(self, num_samples: int, num_classes: int, device: torch.device | str, top_k: int = 5):
        self.num_classes = num_classes
        self.top_k = min(top_k, num_classes)
        self.index = torch.zeros(num_samples, self.top_k, dtype=torch.long, device=device)
        self.probability = torch.zeros(num_samples, self.top_k, dtype=torch.float32, device=device)

    def update(self, sample_index: torch.Tensor, logits: torch.Tensor) -> None:
        """Remember this batch's predicted distributions (gathered from every process)."""
        probability, index = F.softmax(logits.detach().float(), dim=-1).topk(self.top_k, dim=-1)
        rows, *columns = gather_rows(sample_index, *index.T, *probability.T)
        rows = rows.to(self.index.device)
        self.index[rows] = torch.stack(columns[: self.top_k], dim=1).to(self.index.device, torch.long)
        self.probability[rows] = torch.stack(columns[self.top_k :], dim=1).to(self.index.device, torch.float32)

    def targets(self, sample_index: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) soft targets of a batch's samples, renormalised over the kept classes, on its device
        (all zeros for a sample never seen)."""
        rows = sample_index.to(self.index.device)
        probability = self.probability[rows]
        probability = probability / probability.sum(dim=1, keepdim=True).clamp_min(1e-12)
        targets = probability.new_zeros(len(rows), self.num_classes).scatter_(1, self.index[rows], probability)
        return targets.to(sample_index.device)

    def predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(predicted class, its probability) per sample."""
        return self.index[:, 0].cpu().numpy(), self.probability[:, 0].cpu().numpy()

    def copy(self) -> SoftTargetMemory:
        other = SoftTargetMemory.__new__(SoftTargetMemory)
        other.num_classes, other.top_k = self.num_classes, self.top_k
        other.index, other.probability = self.index.clone(), self.probability.clone()
        return other

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}index": self.index, f"{prefix}probability": self.probability}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        self.index = tensors[f"{prefix}index"].to(self.index.device, torch.long)
        self.probability = tensors[f"{prefix}probability"].to(self.index.device, torch.float32)


def record_label_belief(
    belief: torch.Tensor, sample_index: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
) -> None:
    """Write each sample's probability of its given label (0 for an ignored label) into `belief` (N,), gathered from
    every process so that every process holds the same.

    Example:
        >>> belief = torch.zeros(3)
        >>> record_label_belief(belief, torch.tensor([2]), torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
        >>> belief.tolist()
        [0.0, 0.0, 0.5]
    """
    keep = labels != IGNORE_INDEX
    probabilities = F.softmax(logits.detach().float(), dim=-1)
    batch_belief = probabilities.gather(1, labels.clamp_min(0)[:, None]).squeeze(1) * keep
    index, batch_belief = gather_rows(sample_index, batch_belief)
    belief[index.to(belief.device)] = batch_belief.to(belief.device, torch.float32)


def believed_share(p_noisy: np.ndarray, belief: np.ndarray) -> float:
    """Share of the flagged samples (`p_noisy` > 1/2) whose given label the model gave at least even odds
    (`belief` >= `BELIEVED`); 0 when nothing is flagged.

    Example:
        >>> believed_share(np.array([0.9, 0.8, 0.7, 0.1]), np.array([0.6, 0.1, 0.2, 0.9]))  # 1 of 3 flagged
        0.3333333333333333
    """
    flagged = np.asarray(p_noisy) > 0.5
    if not flagged.any():
        return 0.0
    return float(np.mean(np.asarray(belief)[flagged] >= BELIEVED))


def sharpen(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sharpen distributions (rows of `probabilities`) with a temperature: `p^(1/T)` renormalised (MixMatch's rule;
    `T = 1` leaves them as they are, `T -> 0` approaches the one-hot argmax).

    Example:
        >>> [round(p, 4) for p in sharpen(torch.tensor([[0.6, 0.4]]), 0.5)[0].tolist()]  # 0.36 : 0.16
        [0.6923, 0.3077]
    """
    powered = probabilities.clamp_min(1e-12) ** (1.0 / temperature)
    return powered / powered.sum(dim=-1, keepdim=True)


def check_confidence_threshold(name: str, value: float) -> None:
    """Refuse a pseudo-label threshold outside [0, 1] (it is compared with a softmax confidence).

    Example:
        >>> check_confidence_threshold("ido_pseudo_label_threshold", 0.95)
    """
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a softmax confidence and must lie in [0, 1], got {value}.")


def pseudo_label_loss(
    logits: torch.Tensor,
    pseudo_labels: torch.Tensor,
    confidence: torch.Tensor,
    p_noisy: torch.Tensor,
    threshold: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample `p_noisy * 1[confidence >= threshold] * CE(logits, pseudo_labels)` (0 for samples never seen), and
    the per-sample weight `p_noisy * 1[...]` (the share of the sample that is corrected).

    Example:
        >>> loss, weight = pseudo_label_loss(torch.zeros(2, 3), torch.tensor([0, -1]), torch.tensor([0.99, 0.0]),
        ...                                  torch.tensor([1.0, 1.0]), 0.95)
        >>> [round(v, 4) for v in loss.tolist()], weight.tolist()
        ([1.0986, 0.0], [1.0, 0.0])
    """
    seen = pseudo_labels != NOT_SEEN
    weight = p_noisy * ((confidence >= threshold) & seen).to(p_noisy.dtype)
    safe = torch.where(seen, pseudo_labels, torch.zeros_like(pseudo_labels))
    return weight * F.cross_entropy(logits.float(), safe, reduction="none"), weight
