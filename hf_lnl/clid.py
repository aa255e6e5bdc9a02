"""Cross-layer information divergence (CLID; Hu et al., "CLID-MU", KDD 2025, arXiv 2507.11807).

CLID compares two similarity graphs over a batch: one from the features entering the classification head (fixed,
no gradient) and one from the predicted class distributions (differentiable). Lower CLID means the two layers agree
on which samples are alike. No labels are needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The authors' temperature in their supervised scripts (0.1 in their semi-supervised code).
CLID_TEMPERATURE = 0.5
LOG_EPS = 1e-7  # added inside log(P) by the authors
NORM_EPS = 1e-12  # F.normalize's default: guards all-zero feature rows


def feature_graph(features: torch.Tensor, temperature: float = CLID_TEMPERATURE) -> torch.Tensor:
    """Row-stochastic feature graph P (n, n), float32, detached.

    Cosine similarities divided by ``temperature``, negative entries set to 0 (kept in the softmax as 0), then a
    row softmax with the diagonal included.
    """
    with torch.no_grad():
        h = F.normalize(features.detach().float(), dim=1, eps=NORM_EPS)
        return torch.softmax((h @ h.T / temperature).clamp_min(0.0), dim=1)


def clid(features: torch.Tensor, logits: torch.Tensor, temperature: float = CLID_TEMPERATURE) -> torch.Tensor:
    """CLID of a batch: ``mean_i sum_j -W~_ij log(P_ij + 1e-7)``, a float32 scalar.

    Args:
        features: (n, d) inputs of the classification head. Detached here: no gradient reaches them.
        logits: (n, C) logits. ``p = softmax(z)``, ``q = p / ||p||_2``, ``W = q q^T``, ``W~ = W / stopgrad(rowsum W)``;
            the gradient flows through ``W`` only.
        temperature: the feature graph's temperature (> 0).

    Returns:
        The scalar CLID, computed in float32 (also under autocast and for bf16/fp16 inputs).

    Raises:
        ValueError: shapes are not (n, d) and (n, C) with the same n >= 2, or ``temperature <= 0``.

    Example:
        >>> h, z = torch.randn(8, 16), torch.randn(8, 4, requires_grad=True)
        >>> loss = clid(h, z)
        >>> loss.backward()
    """
    if features.dim() != 2 or logits.dim() != 2:
        raise ValueError(
            f"clid expects 2-D features and logits; got {tuple(features.shape)} and {tuple(logits.shape)}."
        )
    if features.shape[0] != logits.shape[0] or features.shape[0] < 2:
        raise ValueError(
            f"clid needs the same number n >= 2 of features and logits; got {features.shape[0]} and {logits.shape[0]}."
        )
    if temperature <= 0:
        raise ValueError(f"`temperature` must be positive; got {temperature}.")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        log_p = torch.log(feature_graph(features, temperature) + LOG_EPS)
        q = F.normalize(torch.softmax(logits.float(), dim=1), dim=1, eps=NORM_EPS)
        w = q @ q.T
        w = w / w.sum(dim=1, keepdim=True).detach()
        return -(w * log_p).sum(dim=1).mean()
