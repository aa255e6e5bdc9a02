"""One module per noisy-label method; `build_method` maps `lnl_method` to its class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LNLMethod
from .cross_entropy import CrossEntropy, GeneralizedCrossEntropy, SymmetricCrossEntropy

if TYPE_CHECKING:
    from ..trainer import NoisyLabelTrainer


def build_method(trainer: NoisyLabelTrainer) -> LNLMethod:
    """Instantiate the method named by `trainer.args.lnl_method`."""
    name = trainer.args.lnl_method
    if name == "ido":
        from .ido import IDO

        return IDO(trainer)
    if name == "clid_mu":
        from .clid_mu import CLIDMU

        return CLIDMU(trainer)
    classes = {cls.name: cls for cls in (CrossEntropy, GeneralizedCrossEntropy, SymmetricCrossEntropy)}
    return classes[name](trainer)


__all__ = ["LNLMethod", "build_method", "CrossEntropy", "GeneralizedCrossEntropy", "SymmetricCrossEntropy"]
