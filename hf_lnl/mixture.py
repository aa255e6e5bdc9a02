"""Two-component beta mixture models over per-sample wrong-event counts.

IDO (Zhang et al., NeurIPS 2025, arXiv 2505.00812) scores label noise by how often a sample's prediction is wrong
(its *wrong-event count*). The counts, normalised to (0, 1), are modelled by a two-component beta mixture fitted by
EM with a weighted method-of-moments M-step (Arazo et al., "Unsupervised Label Noise Modeling and Loss Correction",
ICML 2019). Component 0 is the "clean" component (mass near 0), component 1 the "noisy" one (mass near 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betainc, betaln

from .data import IGNORE_INDEX

__all__ = ["BetaMixture", "ClassConditionalBetaMixture", "clean_component_error_rate"]

DEFAULT_EPS = 1e-6
DEFAULT_N_ITER = 20
DEFAULT_MIN_CLASS_SAMPLES = 50
INIT_ALPHAS = (1.0, 2.0)  # clean: Beta(1, 2), decreasing density
INIT_BETAS = (2.0, 1.0)  # noisy: Beta(2, 1), increasing density
INIT_WEIGHTS = (0.5, 0.5)
CLAMP_THRESHOLD = 1.02  # beta0 (clean) and alpha1 (noisy) below this ...
CLAMP_VALUE = 1.1  # ... are set to this, so the clean density vanishes at 1 and the noisy one at 0
MIN_COMPONENT_WEIGHT = 1e-4  # a component whose mixing weight falls below this is reset to its init
MAX_LOG_PDF = 300.0  # log-density cap so that sums of densities stay finite
GUARD_STATS = (1.0, 0.0, 0.5, 0.5)  # p_clean, p_noisy, cdf0, cdf1 when no mixture can be fitted
# The premise safeguards of IDO (ido_premise_safeguard) and CLID-MU (clid_premise_safeguard): both methods assume a
# model that already agrees with the labels they will trust. The mixture's clean component is those samples; if their
# mean wrong-event rate so far is above this, the model has not learnt them (measured after IDO's stage 1: Task A
# 0.11, Task B2 0.18, Task B from scratch 0.42-0.53; at the end of CLID-MU's warm-up: the ablations README).
PREMISE_MAX_CLEAN_ERROR_RATE = 1 / 3


def _as_counts(values: ArrayLike, name: str = "counts") -> np.ndarray:
    """Validates a 1-D array of finite non-negative values and returns it as float64."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite, got {arr[bad][0]} at index {int(np.argmax(bad))}")
    if (arr < 0).any():
        raise ValueError(f"{name} must be non-negative, got {arr.min()} at index {int(np.argmin(arr))}")
    return arr


def _check_n_iter(n_iter: int) -> int:
    if isinstance(n_iter, bool) or int(n_iter) != n_iter or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer, got {n_iter!r}")
    return int(n_iter)


def _beta_pdf(log_x: np.ndarray, log_1mx: np.ndarray, a: float, b: float) -> np.ndarray:
    """Beta density from precomputed log(x) and log(1 - x), capped at exp(MAX_LOG_PDF)."""
    log_pdf = (a - 1.0) * log_x + (b - 1.0) * log_1mx - betaln(a, b)
    return np.exp(np.minimum(log_pdf, MAX_LOG_PDF))


class BetaMixture:
    """Two-component beta mixture on wrong-event counts, fitted by EM with a weighted method-of-moments M-step.

    Counts are min-max normalised to [0, 1] and squeezed into (eps, 1 - eps). Parameters persist across calls to
    `fit` (warm start), so a refit with `n_iter=1` continues from the current parameters. If all counts are equal
    (or there are fewer than two), nothing is fitted and every sample is treated as clean: `GUARD_STATS`.

    Args:
        n_iter: EM iterations of `fit` when its `n_iter` argument is None.
        eps: Squeezing margin and numerical floor.

    Example:
        >>> bmm = BetaMixture().fit([0, 0, 1, 3, 5, 5, 5])
        >>> bmm.predict_stats([0, 5]).shape
        (2, 4)
    """

    def __init__(self, n_iter: int = DEFAULT_N_ITER, eps: float = DEFAULT_EPS) -> None:
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.n_iter = _check_n_iter(n_iter)
        self.eps = float(eps)
        self.alphas_ = np.array(INIT_ALPHAS)
        self.betas_ = np.array(INIT_BETAS)
        self.weights_ = np.array(INIT_WEIGHTS)
        self.min_: float | None = None
        self.max_: float | None = None
        self.is_degenerate_ = False
        self.fitted_ = False  # parameters estimated from data at least once

    # ----------------------------------------------------------------------------------------------------- fitting
    def fit(self, counts: ArrayLike, n_iter: int | None = None) -> BetaMixture:
        """Fits (or warm-start refits) the mixture on counts, re-normalising with their current min/max.

        Args:
            counts: 1-D non-negative wrong-event counts.
            n_iter: EM iterations; defaults to `self.n_iter`.

        Returns:
            self.
        """
        c = _as_counts(counts)
        n_iter = self.n_iter if n_iter is None else _check_n_iter(n_iter)
        if c.size == 0:
            self.min_, self.max_, self.is_degenerate_ = None, None, True
            return self
        self.min_, self.max_ = float(c.min()), float(c.max())
        self.is_degenerate_ = c.size < 2 or self.max_ == self.min_
        if not self.is_degenerate_:
            self._em(self._normalise(c), n_iter)
        return self

    def fit_continuous(self, x: ArrayLike, n_iter: int | None = None) -> BetaMixture:
        """Runs EM directly on values in [0, 1] (no min/max normalisation), e.g. to check parameter recovery.

        Args:
            x: 1-D values in [0, 1].
            n_iter: EM iterations; defaults to `self.n_iter`.

        Returns:
            self; predictions then take values in [0, 1] (min_ = 0, max_ = 1).
        """
        x = _as_counts(x, name="x")
        if (x > 1).any():
            raise ValueError(f"x must be in [0, 1], got {x.max()} at index {int(np.argmax(x))}")
        n_iter = self.n_iter if n_iter is None else _check_n_iter(n_iter)
        self.min_, self.max_ = 0.0, 1.0
        self.is_degenerate_ = bool(x.size < 2 or x.max() == x.min())
        if not self.is_degenerate_:
            self._em(self._squeeze(x), n_iter)
        return self

    def _squeeze(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, 0.0, 1.0) * (1.0 - 2.0 * self.eps) + self.eps

    def _normalise(self, c: np.ndarray) -> np.ndarray:
        return self._squeeze((c - self.min_) / (self.max_ - self.min_))

    def _em(self, x: np.ndarray, n_iter: int) -> None:
        eps = self.eps
        log_x, log_1mx = np.log(x), np.log1p(-x)
        for _ in range(n_iter):
            # E-step: responsibilities from floored weighted likelihoods.
            lik = np.maximum(self._weighted_pdfs(log_x, log_1mx), eps)
            resp = lik / (lik.sum(axis=0) + eps)
            # M-step: weighted method of moments per component.
            for k in (0, 1):
                w = resp[k] / resp[k].sum()
                m = float(np.dot(w, x))
                v = max(float(np.dot(w, (x - m) ** 2)), eps)
                a = max(m * (m * (1.0 - m) / v - 1.0), eps)
                self.alphas_[k], self.betas_[k] = a, max(a * (1.0 - m) / m, eps)
            if self.betas_[0] < CLAMP_THRESHOLD:
                self.betas_[0] = CLAMP_VALUE
            if self.alphas_[1] < CLAMP_THRESHOLD:
                self.alphas_[1] = CLAMP_VALUE
            self.weights_ = resp.sum(axis=1) / resp.sum()
            self._reset_collapsed()
        self.fitted_ = True

    def _weighted_pdfs(self, log_x: np.ndarray, log_1mx: np.ndarray) -> np.ndarray:
        """pi_k * BetaPDF(x; alpha_k, beta_k) for both components, shape (2, n)."""
        params = zip(self.alphas_, self.betas_, self.weights_)
        return np.stack([w * _beta_pdf(log_x, log_1mx, a, b) for a, b, w in params])

    def _reset_collapsed(self) -> None:
        """Resets a component with a collapsed weight or non-finite parameters to its init values."""
        for k in (0, 1):
            params = (self.alphas_[k], self.betas_[k], self.weights_[k])
            if not np.all(np.isfinite(params)) or self.weights_[k] < MIN_COMPONENT_WEIGHT:
                self.alphas_[k], self.betas_[k], self.weights_[k] = INIT_ALPHAS[k], INIT_BETAS[k], INIT_WEIGHTS[k]
        self.weights_ = self.weights_ / self.weights_.sum()

    # -------------------------------------------------------------------------------------------------- prediction
    def predict_stats(self, counts: ArrayLike) -> np.ndarray:
        """Per-sample mixture statistics.

        Counts outside the last fit's [min, max] are treated as its min (most clean) or max (most noisy) count.

        Args:
            counts: 1-D non-negative counts.

        Returns:
            float64 array (n, 4) with columns p_clean, p_noisy, cdf0 (clean CDF), cdf1 (noisy CDF).
        """
        c = _as_counts(counts)
        if self.is_degenerate_:
            return np.tile(np.array(GUARD_STATS), (c.size, 1))
        if self.min_ is None or self.max_ is None:
            raise RuntimeError("BetaMixture is not fitted: call fit() or set_params_from() first")
        x = self._normalise(c)
        log_x, log_1mx = np.log(x), np.log1p(-x)
        f = self._weighted_pdfs(log_x, log_1mx)
        post = f / (f.sum(axis=0) + self.eps)
        cdf = np.stack([betainc(self.alphas_[k], self.betas_[k], x) for k in (0, 1)])
        return np.concatenate([post, cdf]).T

    def predict_proba(self, counts: ArrayLike) -> np.ndarray:
        """Posterior component probabilities, shape (n, 2): [p_clean, p_noisy]."""
        return self.predict_stats(counts)[:, :2]

    def lookup_table(self, max_count: int) -> np.ndarray:
        """`predict_stats(arange(max_count + 1))`: a (max_count + 1, 4) table indexed by count."""
        if int(max_count) != max_count or max_count < 0:
            raise ValueError(f"max_count must be a non-negative integer, got {max_count!r}")
        return self.predict_stats(np.arange(int(max_count) + 1))

    # ------------------------------------------------------------------------------------------------ (de)serialise
    def get_params(self) -> dict[str, Any]:
        """JSON-serialisable fitted state (for logging and checkpoints)."""
        return {
            "alphas": [float(v) for v in self.alphas_],
            "betas": [float(v) for v in self.betas_],
            "weights": [float(v) for v in self.weights_],
            "min": self.min_,
            "max": self.max_,
            "fitted": bool(self.fitted_),
            "degenerate": bool(self.is_degenerate_),
        }

    def set_params_from(self, params: dict[str, Any]) -> BetaMixture:
        """Restores the state produced by `get_params` (inverse of it, for resume)."""
        for key in ("alphas", "betas", "weights"):
            if len(params[key]) != 2:
                raise ValueError(f"params[{key!r}] must have 2 entries, got {params[key]!r}")
        self.alphas_ = np.asarray(params["alphas"], dtype=np.float64).copy()
        self.betas_ = np.asarray(params["betas"], dtype=np.float64).copy()
        self.weights_ = np.asarray(params["weights"], dtype=np.float64).copy()
        self.min_ = None if params.get("min") is None else float(params["min"])
        self.max_ = None if params.get("max") is None else float(params["max"])
        self.fitted_ = bool(params.get("fitted", False))
        self.is_degenerate_ = bool(params.get("degenerate", False))
        return self


class ClassConditionalBetaMixture:
    """One BetaMixture per given class, falling back to a global mixture for a class with fewer than
    `min_class_samples` samples or constant counts. Scores are posteriors in [0, 1].

    Samples labelled `IGNORE_INDEX` (-100) are excluded from fitting and get `GUARD_STATS` at prediction. A mixture
    that has never been fitted gets a fresh fit of its default `n_iter` iterations even when `fit` is given a
    smaller refit count, since a short refit only makes sense as a warm start.

    Args:
        num_classes: Number of classes; labels are in [0, num_classes).
        n_iter: Default EM iterations for a fresh fit.
        min_class_samples: Classes with fewer samples use the global mixture.
        eps: Squeezing margin and numerical floor.

    Example:
        >>> ccbmm = ClassConditionalBetaMixture(num_classes=2, min_class_samples=3)
        >>> ccbmm = ccbmm.fit([0, 1, 5, 0, 2, 2], [0, 0, 0, 1, 1, 1])
        >>> ccbmm.lookup_table(5).shape
        (2, 6, 4)
    """

    def __init__(
        self,
        num_classes: int,
        n_iter: int = DEFAULT_N_ITER,
        min_class_samples: int = DEFAULT_MIN_CLASS_SAMPLES,
        eps: float = DEFAULT_EPS,
    ) -> None:
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.min_class_samples = int(min_class_samples)
        self.global_ = BetaMixture(n_iter=n_iter, eps=eps)
        self.models_ = [BetaMixture(n_iter=n_iter, eps=eps) for _ in range(self.num_classes)]
        self.uses_fallback_ = np.ones(self.num_classes, dtype=bool)

    def _check_labels(self, labels: ArrayLike, n: int) -> np.ndarray:
        y = np.asarray(labels)
        if y.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {y.shape}")
        if y.shape[0] != n:
            raise ValueError(f"labels has length {y.shape[0]} but counts has length {n}")
        if y.size and (not np.all(np.isfinite(y)) or np.any(y != np.round(y))):
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
        y = y.astype(np.int64)
        bad = (y != IGNORE_INDEX) & ((y < 0) | (y >= self.num_classes))
        if bad.any():
            raise ValueError(f"labels must be in [0, {self.num_classes}) or {IGNORE_INDEX}, got {y[bad][0]}")
        return y

    def fit(self, counts: ArrayLike, labels: ArrayLike, n_iter: int | None = None) -> ClassConditionalBetaMixture:
        """Fits the global mixture on all labelled counts and one mixture per class with enough varied counts.

        Args:
            counts: 1-D non-negative wrong-event counts.
            labels: 1-D given labels, same length; `IGNORE_INDEX` entries are skipped.
            n_iter: EM iterations for warm refits; defaults to the per-model `n_iter`.

        Returns:
            self.
        """
        c = _as_counts(counts)
        y = self._check_labels(labels, c.size)
        keep = y != IGNORE_INDEX
        c, y = c[keep], y[keep]
        self.global_.fit(c, n_iter=n_iter if self.global_.fitted_ else None)
        for k, model in enumerate(self.models_):
            ck = c[y == k]
            self.uses_fallback_[k] = ck.size < self.min_class_samples or ck.max() == ck.min()
            if not self.uses_fallback_[k]:
                model.fit(ck, n_iter=n_iter if model.fitted_ else None)
        return self

    def _model(self, k: int) -> BetaMixture:
        return self.global_ if self.uses_fallback_[k] else self.models_[k]

    def predict_stats(self, counts: ArrayLike, labels: ArrayLike) -> np.ndarray:
        """Per-sample (p_clean, p_noisy, cdf0, cdf1) from each sample's class mixture, shape (n, 4)."""
        c = _as_counts(counts)
        y = self._check_labels(labels, c.size)
        out = np.tile(np.array(GUARD_STATS), (c.size, 1))
        for k in np.unique(y[y != IGNORE_INDEX]):
            out[y == k] = self._model(int(k)).predict_stats(c[y == k])
        return out

    def lookup_table(self, max_count: int) -> np.ndarray:
        """Tables of shape (num_classes, max_count + 1, 4); a fallback class uses the global table."""
        global_table = self.global_.lookup_table(max_count)
        models = zip(self.uses_fallback_, self.models_)
        tables = [global_table if fallback else model.lookup_table(max_count) for fallback, model in models]
        return np.stack(tables)

    def get_params(self) -> dict[str, Any]:
        """JSON-serialisable state of the global and per-class mixtures."""
        return {
            "num_classes": self.num_classes,
            "min_class_samples": self.min_class_samples,
            "global": self.global_.get_params(),
            "classes": [m.get_params() for m in self.models_],
            "uses_fallback": [bool(v) for v in self.uses_fallback_],
        }

    def set_params_from(self, params: dict[str, Any]) -> ClassConditionalBetaMixture:
        """Restores the state produced by `get_params`."""
        if params["num_classes"] != self.num_classes or len(params["classes"]) != self.num_classes:
            raise ValueError(f"params are for {params['num_classes']} classes, this model has {self.num_classes}")
        self.min_class_samples = int(params.get("min_class_samples", self.min_class_samples))
        self.global_.set_params_from(params["global"])
        for model, p in zip(self.models_, params["classes"]):
            model.set_params_from(p)
        self.uses_fallback_ = np.asarray(params["uses_fallback"], dtype=bool).copy()
        return self


def clean_component_error_rate(mixture: BetaMixture | ClassConditionalBetaMixture) -> float:
    """Mean (min-max normalised) wrong-event rate of the lower component of the (global) beta mixture: how often the
    samples the mixture calls clean were predicted wrongly.

    Example:
        >>> round(clean_component_error_rate(BetaMixture().fit(np.array([0] * 80 + [1] * 5 + [3] * 20))), 2)
        0.02
    """
    params = mixture.get_params()
    source = params.get("global", params)
    means = [a / (a + b) for a, b in zip(source["alphas"], source["betas"])]
    return float(min(means))
