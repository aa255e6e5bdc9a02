"""Capture the input of a Hugging Face classifier's head, the feature CLID compares.

- ``ViTForImageClassification.classifier`` receives ``last_hidden_state[:, 0]`` after the final layernorm.
- ``BertForSequenceClassification.classifier`` receives ``dropout(pooler_output)``.
- RoBERTa-style heads (dense -> tanh -> out_proj): the input of ``classifier.out_proj``.

A forward pre-hook on the head stores that input on every forward, keeping its autograd graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

# Attribute names of classification heads on Hugging Face *For{Sequence,Image}Classification models, in the order
# tried (``classification_head``: BART / T5 style).
HEAD_NAMES = ("classifier", "score", "classification_head", "head")
_CANDIDATE_SUFFIXES = ("classifier", "score", "head", "out_proj")


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Run scaled-dot-product attention on the MATH backend, the one with a double backward.

    The fused kernels (flash / memory-efficient on CUDA, the fused CPU kernel) cannot be differentiated twice, which
    CLID-MU's look-ahead needs.

    Example:
        >>> with math_attention():
        ...     out = model(**batch)  # doctest: +SKIP
    """
    with sdpa_kernel(SDPBackend.MATH):
        yield


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP / DataParallel (``.module``), ``torch.compile`` (``._orig_mod``) and PEFT (``get_base_model()``)."""
    while True:
        if isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif callable(getattr(model, "get_base_model", None)) and model.get_base_model() is not model:
            model = model.get_base_model()
        else:
            return model


def _active_copy(module: nn.Module) -> nn.Module:
    """The module that runs inside a PEFT ``ModulesToSaveWrapper`` (the active adapter's copy), else ``module``."""
    copies = getattr(module, "modules_to_save", None)
    if isinstance(copies, nn.ModuleDict) and hasattr(module, "original_module"):
        active = getattr(module, "active_adapter", None)
        active = active[0] if isinstance(active, (list, tuple)) and active else active
        return copies[active] if isinstance(active, str) and active in copies else module.original_module
    return module


def _is_linear(module: nn.Module) -> bool:
    """nn.Linear, or a PEFT wrapper of one (LoRA's ``base_layer``, ``ModulesToSaveWrapper``)."""
    core = _active_copy(module)
    core = getattr(core, "base_layer", core)
    return isinstance(core, nn.Linear)


def _resolve_head(module: nn.Module) -> nn.Module | None:
    """The module whose input is the feature: the head itself, its ``out_proj``, or a Sequential's last Linear."""
    if _is_linear(module):
        return module
    core = _active_copy(module)
    out_proj = getattr(core, "out_proj", None)
    if isinstance(out_proj, nn.Module) and _is_linear(out_proj):
        return out_proj
    if isinstance(core, nn.Sequential) and len(core) and _is_linear(core[-1]):
        return core[-1]
    return None


def _candidates(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name.split(".")[-1].endswith(_CANDIDATE_SUFFIXES)]


def find_classification_head(model: nn.Module, head_module_name: str | None = None) -> tuple[str, nn.Module]:
    """Find the module whose input is the classifier's feature.

    Args:
        model: a Hugging Face classifier, possibly wrapped (DDP, ``torch.compile``, PEFT).
        head_module_name: an explicit module path (``model.get_submodule``), tried on ``model`` and on the
            unwrapped model. Auto-detection otherwise: a ``classifier`` / ``score`` / ``classification_head`` /
            ``head`` child that is a Linear (ViT, BERT, DeBERTa, decoder ``score``), has a Linear ``out_proj``
            (RoBERTa, ELECTRA, BART: the input of ``out_proj``) or is a Sequential ending in a Linear (ResNet).

    Returns:
        (qualified name in ``model``, module).

    Raises:
        ValueError: the named module does not exist, or no head is found (set ``head_module_name``, the config
            field ``clid_head_module``). The message lists candidate module names.

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> find_classification_head(BertForSequenceClassification(BertConfig(num_hidden_layers=1)))[0]
        'classifier'
    """
    base = unwrap_model(model)
    if head_module_name is not None:
        for root in (model, base):
            try:
                return head_module_name, root.get_submodule(head_module_name)
            except AttributeError:
                continue
        raise ValueError(
            f"No module named {head_module_name!r} in {type(base).__name__}. Candidates: {_candidates(model)}."
        )
    for attr in HEAD_NAMES:
        child = getattr(base, attr, None)
        if isinstance(child, nn.Module) and (head := _resolve_head(child)) is not None:
            name = next((n for n, m in model.named_modules() if m is head), attr)
            return name, head
    raise ValueError(
        f"Could not find the classification head of {type(base).__name__} (looked for a Linear, or a Linear "
        f"`out_proj`, named {' / '.join(HEAD_NAMES)}). Set `head_module_name` (the config field `clid_head_module`) "
        f"to the module whose input is the feature. Candidates: {_candidates(model)}."
    )


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


class HeadFeatureCapture:
    """Store the input of the classification head on every forward (``.features``, graph kept, not detached).

    The hook is registered at construction and removed by :meth:`remove` or on leaving a ``with`` block. The
    feature is the head's first positional argument (or its ``input`` / ``hidden_states`` keyword) of the last
    forward; for ``score`` heads of decoder models that is the whole sequence (B, T, hidden).

    Args:
        model: the classifier (wrappers are looked through, see :func:`find_classification_head`).
        head_module_name: explicit module path of the head (the config field ``clid_head_module``).

    Example:
        >>> with HeadFeatureCapture(model) as cap:  # doctest: +SKIP
        ...     out = model(**batch)
        ...     loss = clid(cap.features, out.logits)
    """

    def __init__(self, model: nn.Module, head_module_name: str | None = None) -> None:
        self.head_name, self.head = find_classification_head(model, head_module_name)
        self.features: torch.Tensor | None = None
        self._handle: Any = self.head.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        value = args[0] if args else kwargs.get("input", kwargs.get("hidden_states"))
        self.features = value if isinstance(value, torch.Tensor) else None

    def clear(self) -> None:
        """Drop the stored feature (and the graph it holds)."""
        self.features = None

    def remove(self) -> None:
        """Remove the hook (idempotent); ``.features`` keeps the last capture."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> HeadFeatureCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
