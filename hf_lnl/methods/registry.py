"""The method registry: `lnl_method` names to `LNLMethod` classes, the built-in ones and any a user registers.

`NoisyLabelConfig` validates `lnl_method` (and offers its CLI `choices`) from here, `NoisyLabelTrainer` builds the
selected method from here, and the report and model card read the class's declarations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import overload

from .base import Citation, LNLMethod

_REGISTRY: dict[str, type[LNLMethod]] = {}


@overload
def register_method(method_class: type[LNLMethod], *, replace: bool = False) -> type[LNLMethod]: ...
@overload
def register_method(
    method_class: None = None, *, replace: bool = False
) -> Callable[[type[LNLMethod]], type[LNLMethod]]: ...
def register_method(method_class=None, *, replace=False):
    """Register an `LNLMethod` subclass under its `name`, so that `lnl_method=name` selects it.

    Use it as a decorator (`@register_method`, or `@register_method(replace=True)` to replace a method of the same
    name) or call it. The declarations are checked here, so a broken method fails at registration, not mid-run.

    Raises:
        TypeError / ValueError: not an `LNLMethod` subclass, a missing `name`, `title` or `compute_loss`, a malformed
            declaration, or a name already registered (without `replace=True`).

    Example:
        >>> @register_method  # doctest: +SKIP
        ... class HardBootstrapping(LNLMethod):
        ...     name, title = "hard_bootstrap", "hard bootstrapping (Reed et al., 2015)"
        ...     ...
        >>> NoisyLabelConfig(output_dir="out", lnl_method="hard_bootstrap")  # doctest: +SKIP
    """
    if method_class is None:
        return lambda cls: register_method(cls, replace=replace)
    _check_declarations(method_class)
    existing = _REGISTRY.get(method_class.name)
    if existing is not None and existing is not method_class and not replace:
        raise ValueError(
            f"An lnl_method named {method_class.name!r} is already registered ({existing.__module__}."
            f"{existing.__qualname__}). Choose another name, or pass replace=True."
        )
    _REGISTRY[method_class.name] = method_class
    return method_class


def get_method(name: str) -> type[LNLMethod]:
    """The method class registered as `name`.

    Raises:
        ValueError: no method has that name; the message lists the registered ones.

    Example:
        >>> get_method("ido").title
        'IDO (instance-level difficulty modelling and dynamic optimisation)'
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"lnl_method={name!r} is not a registered method; choose one of {', '.join(map(repr, METHOD_NAMES))}, or "
            "register your own with hf_lnl.register_method."
        ) from None


class RegisteredMethodNames(Sequence[str]):
    """A live, read-only, sorted view of the registered names (what `lnl_method` accepts; argparse's `choices`)."""

    def __getitem__(self, index):
        return sorted(_REGISTRY)[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(_REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __repr__(self) -> str:
        return repr(sorted(_REGISTRY))


METHOD_NAMES = RegisteredMethodNames()


def _check_declarations(cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, LNLMethod)):
        raise TypeError(f"register_method takes an LNLMethod subclass, got {cls!r}.")
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(cls.name, str) or not cls.name.isidentifier():
        raise ValueError(f"{where}.name must be an identifier-like string (the lnl_method value), got {cls.name!r}.")
    if not isinstance(cls.title, str) or not cls.title:
        raise ValueError(f"{where}.title must be a one-line description for the model card.")
    if cls.compute_loss is LNLMethod.compute_loss:
        raise ValueError(f"{where} must implement compute_loss(model, inputs, sample_index, num_items_in_batch).")
    if cls.citation is not None and not isinstance(cls.citation, Citation):
        raise ValueError(f"{where}.citation must be a hf_lnl.Citation or None, got {type(cls.citation).__name__}.")
    for declaration in ("report_columns", "state_tensors", "config_fields"):
        value = getattr(cls, declaration)
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}.{declaration} must be a tuple of strings, got {value!r}.")
    if cls.settings_class is not None and not dataclasses.is_dataclass(cls.settings_class):
        raise ValueError(f"{where}.settings_class must be a dataclass (its fields are the method's settings).")
    if not isinstance(cls.num_views, int) or cls.num_views < 1:
        raise ValueError(f"{where}.num_views must be a positive int, got {cls.num_views!r}.")
