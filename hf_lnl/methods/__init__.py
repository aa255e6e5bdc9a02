"""Noisy-label methods, one module each, and the registry that maps `lnl_method` to them."""

from .base import Citation, LNLMethod, MethodContext, MethodOutput
from .clid_mu import CLIDMU
from .cross_entropy import CrossEntropy, GeneralizedCrossEntropy, SymmetricCrossEntropy
from .ido import IDO
from .registry import METHOD_NAMES, get_method, register_method

__all__ = [
    "CLIDMU",
    "IDO",
    "METHOD_NAMES",
    "Citation",
    "CrossEntropy",
    "GeneralizedCrossEntropy",
    "LNLMethod",
    "MethodContext",
    "MethodOutput",
    "SymmetricCrossEntropy",
    "get_method",
    "register_method",
]
