"""The contract between `NoisyLabelTrainer` and a noisy-label method.

A method is a strategy. It declares what it is (name, title, citation, the report columns and state tensors it adds,
the config fields and settings it owns, `check_args`), and for each training batch *returns* what happened — a
`MethodOutput` with the loss, each training view's logits and labels, the per-sample loss and metrics to log. The
trainer does the rest: it counts wrong events from the returned logits, stops on a non-finite loss, logs the metrics
and saves the declared state with every checkpoint. A method never holds the trainer; it gets a `MethodContext`: the
run's arguments, the labels, read-only per-sample counts and the few hooks a method legitimately needs.

Example (a complete method, registered and selected by name):

    >>> import torch.nn.functional as F
    >>> from hf_lnl import LNLMethod, MethodOutput, register_method
    >>> @register_method
    ... class MeanAbsoluteError(LNLMethod):
    ...     name, title = "mae", "mean absolute error"
    ...     def compute_loss(self, model, inputs, sample_index, num_items_in_batch):
    ...         labels = inputs.pop("labels")
    ...         outputs = model(**inputs)
    ...         per_sample = 1 - F.softmax(outputs.logits.float(), -1).gather(1, labels[:, None].clamp_min(0))[:, 0]
    ...         per_sample = per_sample * (labels != -100)
    ...         loss = per_sample.sum() / (labels != -100).sum().clamp_min(1)
    ...         return MethodOutput(loss, outputs, (outputs.logits,), labels, per_sample_loss=per_sample)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data import LabelInfo
from ..tracking import wrong_event_scores


@dataclass(frozen=True)
class Citation:
    """A method's paper: what the model card cites.

    Example:
        >>> Citation("zhang2018gce", "Generalized Cross Entropy Loss ...", ("Zhilu Zhang", "Mert R. Sabuncu"),
        ...          "NeurIPS", "Advances in Neural Information Processing Systems", 2018).short()
        'Zhang & Sabuncu, NeurIPS 2018'
    """

    key: str
    title: str
    authors: tuple[str, ...]
    venue: str  # short, for one-line mentions: "NeurIPS"
    booktitle: str  # the proceedings' full name, for BibTeX
    year: int
    eprint: str | None = None  # arXiv id
    url: str | None = None

    def short(self) -> str:
        """`"Zhang et al., NeurIPS 2025"` (two authors are both named)."""
        surnames = [author.split()[-1] for author in self.authors]
        who = " & ".join(surnames) if len(surnames) <= 2 else f"{surnames[0]} et al."
        return f"{who}, {self.venue} {self.year}"

    def bibtex(self) -> str:
        """The BibTeX entry, every author named."""
        fields = {
            "title": self.title,
            "author": " and ".join(self.authors),
            "booktitle": self.booktitle,
            "year": str(self.year),
        }
        if self.eprint:
            fields.update(eprint=self.eprint, archivePrefix="arXiv")
        if self.url:
            fields["url"] = self.url
        width = max(len(name) for name in fields)
        body = ",\n".join(f"  {name:<{width}} = {{{value}}}" for name, value in fields.items())
        return f"@inproceedings{{{self.key},\n{body}\n}}"


@dataclass
class MethodOutput:
    """What a method's `compute_loss` returns for one training batch.

    Attributes:
        loss: The scalar the Trainer back-propagates.
        outputs: The model outputs returned to the Trainer (`compute_loss(..., return_outputs=True)`).
        view_logits: The logits of each training view, in view order (one for most methods; IDO's stage 2 has a weak
            and a strong view). The trainer counts a wrong event per view from them.
        labels: The batch's given labels (-100 = ignored), shared by every view; None if the batch has none.
        per_sample_loss: The per-sample loss when the method has one: the trainer names the samples whose loss is
            not finite. Without it, finiteness is judged from `loss` and each view's cross-entropy.
        metrics: Values to log, averaged with the next training log (tensors are not synchronised until then).
    """

    loss: torch.Tensor
    outputs: Any
    view_logits: tuple[torch.Tensor, ...]
    labels: torch.Tensor | None
    per_sample_loss: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)


class MethodContext:
    """What `NoisyLabelTrainer` lets a method read and do: the run's facts and a few hooks, not the trainer.

    `NoisyLabelTrainer` passes its own implementation to the method's constructor; this class documents the
    interface (each hook raises `NotImplementedError` here).

    Attributes:
        args: The run's `NoisyLabelConfig` (a method reads its own settings from it).
        processing_class: The tokenizer or processor given to the trainer, or None.
        label_info: The training labels (`labels`, in `sample_index` order) and, when known, `clean_labels`: for
            metrics and logs only, never for training.
    """

    def __init__(self, args: Any, processing_class: Any, label_info: LabelInfo | None):
        self.args = args
        self.processing_class = processing_class
        self.label_info = label_info

    # ---------------------------------------------------------------------------------------------- facts
    @property
    def model(self) -> nn.Module:
        """The model being trained (possibly wrapped: DDP, `torch.compile`, PEFT)."""
        raise NotImplementedError

    @property
    def global_step(self) -> int:
        """Optimiser steps taken so far."""
        raise NotImplementedError

    @property
    def epoch(self) -> float:
        """The current (fractional) epoch."""
        raise NotImplementedError

    @property
    def wrong_events(self) -> torch.Tensor:
        """Per-sample wrong-event counts (N,), int32 on the training device. Read-only: never write into it."""
        raise NotImplementedError

    @property
    def epochs_completed(self) -> int:
        """Epochs the wrong-event tracker has closed."""
        raise NotImplementedError

    @property
    def epochs_counted(self) -> int:
        """Epochs that contributed counts so far, the open one included."""
        raise NotImplementedError

    @property
    def prediction_changes(self) -> list[int]:
        """Per closed epoch from the second on: samples whose prediction changed against the previous epoch."""
        raise NotImplementedError

    @property
    def parameters_are_sharded(self) -> bool:
        """Whether FSDP or DeepSpeed ZeRO-3 shards the parameters (no whole parameter exists on one process)."""
        raise NotImplementedError

    def counts(self) -> np.ndarray:
        """Per-sample wrong-event counts as an int64 numpy array of length N (a copy)."""
        return self.wrong_events.cpu().numpy().astype(np.int64)

    def first_visit(self, sample_index: torch.Tensor, view: int = 0) -> torch.Tensor:
        """Per sample of a batch: True if the open epoch has not counted it in `view` yet (so this visit will)."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------- hooks
    def model_loss(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any) -> tuple[Any, Any]:
        """The Trainer's own loss (the model's, scaled by the Trainer for gradient accumulation): `(loss, outputs)`."""
        raise NotImplementedError

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context the Trainer runs its forwards in."""
        raise NotImplementedError

    def restart_optimization(self) -> None:
        """Replace the optimiser and learning-rate schedule by fresh ones (IDO's stage 2); the step count goes on."""
        raise NotImplementedError

    def training_rows(self, indices: np.ndarray) -> Any:
        """The training rows `indices` with the Trainer's column removal applied (`len` and `__getitems__`)."""
        raise NotImplementedError

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """A collated batch of `training_rows` items, on the training device, without labels or sample index."""
        raise NotImplementedError

    def export_state(self, folder: str, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        """Save the tracker with the method's `tensors` / `metadata` as a reusable stage (`ido_stage1` state)."""
        raise NotImplementedError

    def import_state(self, folder: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Restore the tracker from an `export_state` folder made on this training set; returns the method's part.

        Raises:
            ValueError: the folder belongs to another training set or method.
        """
        raise NotImplementedError


class LNLMethod:
    """Base class of a noisy-label method: subclass it, set the declarations, implement `compute_loss`.

    Declarations (class attributes):
        name: The `lnl_method` value that selects it.
        title: One line for the model card, e.g. "generalized cross-entropy (GCE)".
        description: What it does, for the model card.
        citation: Its paper (`Citation`), or None.
        report_columns: Columns it adds to the noise report (`report_values()` fills them).
        state_tensors: Names (fnmatch patterns) of the tensors `state_dict()` saves in every checkpoint.
        config_fields: The `NoisyLabelConfig` fields it owns (shown in the model card).
        settings_class: A dataclass of settings read from `lnl_method_kwargs` (YAML mapping or JSON on the CLI),
            for methods defined outside hf_lnl; `self.settings` is its instance.
        requires_class_labels: Refuse anything but one integer class id per sample.
        num_views: Forwards per sample and epoch that may each count a wrong event.
        returns_batch_mean: `compute_loss` returns a mean over the micro-batch (False: the Trainer's own loss).
        restarts_optimizer: The method calls `restart_optimization()`, so an optimiser instance cannot be passed.

    Attributes:
        safeguards: What the method's safeguards did in this run, one sentence each (a method appends when one
            fires and names them in `card_notes()`; harnesses read them from here).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    citation: ClassVar[Citation | None] = None
    report_columns: ClassVar[tuple[str, ...]] = ()
    state_tensors: ClassVar[tuple[str, ...]] = ()
    config_fields: ClassVar[tuple[str, ...]] = ()
    settings_class: ClassVar[type | None] = None
    requires_class_labels: ClassVar[bool] = True
    num_views: ClassVar[int] = 1
    returns_batch_mean: ClassVar[bool] = True
    restarts_optimizer: ClassVar[bool] = False

    def __init__(self, context: MethodContext):
        self.context = context
        self.args = context.args
        self.settings = self.parse_settings(getattr(context.args, "lnl_method_kwargs", None))
        self.safeguards: list[str] = []

    # ---------------------------------------------------------------------------------------- configuration
    @classmethod
    def check_args(cls, args: Any) -> None:
        """Validate the config for this method (called by `NoisyLabelConfig` when the method is selected).

        Raise `ValueError` naming the setting and the fix.
        """

    @classmethod
    def parse_settings(cls, values: Mapping[str, Any] | None) -> Any:
        """`settings_class(**values)`, refusing keys it does not have and values of the wrong type; None without
        a `settings_class`."""
        values = dict(values or {})
        if cls.settings_class is None:
            if values:
                raise ValueError(
                    f"lnl_method={cls.name!r} takes no lnl_method_kwargs (got {sorted(values)}); its settings are "
                    f"the config fields {list(cls.config_fields)}."
                )
            return None
        known = {f.name: f for f in dataclasses.fields(cls.settings_class)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(
                f"lnl_method={cls.name!r} has no setting {unknown[0]!r} in lnl_method_kwargs; its settings are "
                f"{sorted(known)}."
            )
        for key, value in values.items():
            default = known[key].default
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                values[key] = float(value)
            elif default is not dataclasses.MISSING and default is not None and type(values[key]) is not type(default):
                raise ValueError(
                    f"lnl_method_kwargs[{key!r}] must be a {type(default).__name__} for lnl_method={cls.name!r}, "
                    f"got {value!r}."
                )
        return cls.settings_class(**values)

    def settings_summary(self) -> dict[str, Any]:
        """The method's settings as shown in the model card: its config fields and its `settings`."""
        summary = {name: getattr(self.args, name) for name in self.config_fields}
        if self.settings is not None:
            summary.update(dataclasses.asdict(self.settings))
        return summary

    # ------------------------------------------------------------------------------------------- training
    def setup(self) -> None:
        """Allocate state once the training set and device are known (before any checkpoint is loaded)."""

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], sample_index: torch.Tensor | None, num_items_in_batch: Any
    ) -> MethodOutput:
        """The training loss of a batch and what happened. `inputs` no longer holds the sample index."""
        raise NotImplementedError

    def on_epoch_end(self) -> dict[str, float]:
        """Called after the tracker closed the epoch; returns values to log."""
        return {}

    def training_steps(self, num_training_steps: int) -> int:
        """Steps the learning-rate schedule spans (IDO's stage 2 has its own schedule)."""
        return num_training_steps

    def lr_scheduler_type(self) -> str | None:
        """The learning-rate schedule to build now (a `transformers.get_scheduler` name); None: the config's."""
        return None

    def learning_rate(self) -> float | None:
        """The peak learning rate of the optimiser built now (every parameter group is scaled by its ratio to the
        config's `learning_rate`); None: the config's."""
        return None

    # ---------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors to save in every checkpoint (their names match `state_tensors`)."""
        return {}

    def metadata(self) -> dict[str, Any]:
        """Small JSON-able state saved beside the tensors."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        """Restore what `state_dict()` and `metadata()` saved."""

    def save_extra(self, folder: str) -> None:
        """Write files of the method's own into a checkpoint folder (main process only)."""

    def load_extra(self, folder: str) -> None:
        """Read back what `save_extra` wrote."""

    # --------------------------------------------------------------------------------------------- report
    def max_wrong_events(self) -> int:
        """The most wrong events a sample can have counted so far."""
        return max(self.context.epochs_counted, 1) * self.num_views

    def noise_scores(self) -> np.ndarray:
        """Per-sample score in [0, 1], higher = more likely mislabelled (default: wrong events / the most possible)."""
        return wrong_event_scores(self.context.counts(), self.max_wrong_events())

    def report_values(self) -> dict[str, np.ndarray]:
        """The values of (some of) `report_columns`, in `sample_index` order."""
        return {}

    def fitted_mixture(self) -> Any:
        """A fitted mixture over the wrong events to draw on the report's histogram, or None."""
        return None

    def card_notes(self) -> list[str]:
        """Sentences for the model card about this run (e.g. a safeguard that fired)."""
        return []

    # ------------------------------------------------------------------------------------ model selection
    def selectable(self) -> bool:
        """Whether label-free model selection (`metric_for_best_model="clid"`) may keep the current model.

        False while the model is one the method itself will not build on (IDO's stage 1, which stage 2 restarts
        from the base model). Selection on a clean validation metric is not restricted: it measures the model.
        """
        return True


def undeclared_names(names: Iterable[str], patterns: tuple[str, ...]) -> list[str]:
    """The names that match none of the fnmatch `patterns` (a state tensor or report column a method did not declare).

    Example:
        >>> undeclared_names(["meta_net.out.bias", "extra"], ("meta_net.*",))
        ['extra']
    """
    return [name for name in names if not any(fnmatchcase(name, pattern) for pattern in patterns)]
