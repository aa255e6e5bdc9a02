from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_lnl.clid import clid, feature_graph


def _clid_by_hand(h: np.ndarray, z: np.ndarray, tau: float) -> float:
    """CLID with explicit loops, straight from the definition (Hu et al., KDD 2025)."""
    n = len(h)
    hh = [row / math.sqrt(sum(v * v for v in row)) for row in h]
    s = [[max(0.0, float(np.dot(hh[i], hh[j])) / tau) for j in range(n)] for i in range(n)]
    p = [[math.exp(s[i][j]) / sum(math.exp(v) for v in s[i]) for j in range(n)] for i in range(n)]
    probs = [np.exp(row) / np.exp(row).sum() for row in z]
    q = [pr / math.sqrt(sum(v * v for v in pr)) for pr in probs]
    w = [[float(np.dot(q[i], q[j])) for j in range(n)] for i in range(n)]
    return sum(-w[i][j] / sum(w[i]) * math.log(p[i][j] + 1e-7) for i in range(n) for j in range(n)) / n


def test_three_sample_example_by_hand() -> None:
    h = np.array([[1.0, 0.0], [0.6, 0.8], [-2.0, 0.0]])  # h_3 points away from h_1: S_13 < 0 -> set to 0
    z = np.array([[2.0, 0.0, -1.0], [1.0, 1.0, 0.0], [0.0, 3.0, 0.5]])
    # Feature graph row 1 by hand: S_1 = (1, 0.6, 0) / 0.5 = (2, 1.2, 0); e^2 = 7.389, e^1.2 = 3.320, e^0 = 1.
    row = feature_graph(torch.tensor(h), 0.5)[0]
    assert row.tolist() == pytest.approx([7.389 / 11.709, 3.320 / 11.709, 1 / 11.709], abs=1e-3)
    expected = _clid_by_hand(h, z, 0.5)
    got = clid(torch.tensor(h, dtype=torch.float32), torch.tensor(z, dtype=torch.float32), temperature=0.5)
    assert got.dim() == 0 and got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert clid(torch.tensor(h), torch.tensor(z), 0.1).item() == pytest.approx(_clid_by_hand(h, z, 0.1), rel=1e-5)


def test_gradient_only_through_logits() -> None:
    torch.manual_seed(0)
    h = torch.randn(6, 8, requires_grad=True)
    z = torch.randn(6, 4, requires_grad=True)
    clid(h, z).backward()
    assert h.grad is None or not h.grad.any()
    assert z.grad is not None and z.grad.abs().sum() > 0
    # Features that already carry a graph (e.g. from a model) get no gradient either.
    w = torch.randn(8, 8, requires_grad=True)
    clid(h.detach() @ w, z).backward()
    assert w.grad is None or not w.grad.any()


def test_float32_for_low_precision_and_autocast() -> None:
    torch.manual_seed(1)
    h, z = torch.randn(8, 16), torch.randn(8, 5)
    ref = clid(h, z)
    low = clid(h.bfloat16(), z.bfloat16().requires_grad_())
    assert low.dtype == torch.float32 and low.item() == pytest.approx(ref.item(), rel=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = clid(h, z)
    assert auto.dtype == torch.float32 and auto.item() == pytest.approx(ref.item(), rel=1e-6)


def test_permutation_invariant() -> None:
    torch.manual_seed(2)
    h, z = torch.randn(10, 6), torch.randn(10, 3)
    perm = torch.randperm(10)
    assert clid(h[perm], z[perm]).item() == pytest.approx(clid(h, z).item(), rel=1e-5)


def test_lower_when_predictions_follow_feature_clusters() -> None:
    torch.manual_seed(3)
    centres = torch.randn(4, 16) * 3
    labels = torch.arange(4).repeat_interleave(8)
    h = centres[labels] + 0.3 * torch.randn(32, 16)
    agree = 4.0 * torch.nn.functional.one_hot(labels, 4).float()
    shuffled = agree[torch.randperm(32)]
    assert clid(h, agree) < clid(h, shuffled)


@pytest.mark.parametrize(
    "h,z", [((4,), (4, 3)), ((4, 2), (4,)), ((4, 2), (5, 3)), ((1, 2), (1, 3)), ((4, 2, 1), (4, 3))]
)
def test_shape_validation(h: tuple[int, ...], z: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        clid(torch.randn(h), torch.randn(z))


def test_temperature_validation() -> None:
    with pytest.raises(ValueError, match="temperature"):
        clid(torch.randn(3, 2), torch.randn(3, 2), temperature=0.0)
