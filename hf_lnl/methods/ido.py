"""IDO: instance-level difficulty modelling and dynamic optimisation (Zhang et al., NeurIPS 2025, arXiv 2505.00812).

Stage 1 fine-tunes with cross-entropy on the weak view while counting wrong events, by default at a constant
learning rate for a pretrained model and on the run's own schedule for one trained from scratch (the authors' two
schedules, `ido_stage1_constant_lr`), and picks a base model by prediction change. Stage 2 restarts from the base
model with a fresh optimiser and schedule, fits a beta mixture on the counts (refitted every epoch) and trains on a
weak and a strong view with a per-sample, hyper-parameter-free weighted loss:

    L = mean_i p_clean_i (CE_w + CE_s)  +  mean_i eps_i mean_c (z_w - z_s)^2  +  mean_i (1 - p_clean_i) conf_i H_i
    eps_i = p_clean_i cdf0_i + (1 - p_noisy_i)(1 - cdf1_i)

The two views (`ido_views`, default `"auto"`): for images both are the inputs as given and differ by dropout only
(hf_lnl's choice, measured: the paper's augmentations cost a small pretrained ViT 8 points), and a model without
dropout runs one forward for both; for text the strong view masks tokens when the median training text is at least
`MIN_MASKED_TEXT_TOKENS` tokens long (it helps on 64-token news excerpts, Task A) and is the text as given otherwise
(masking costs 34-token tweets a point, Task R).

With `ido_correction="pseudo_label"` (hf_lnl's label correction, beyond the paper) the last term becomes
`(1 - p_clean_i) 1[conf_w,i >= tau] CE(z_s,i, argmax z_w,i)`: a flagged sample is taught the weak view's confident
prediction on the strong view (FixMatch's rule) instead of only sharpening its own prediction. With
`ido_correction="base_belief"` a sample keeps `p_keep_i = p_clean_i + (1 - p_clean_i) q_y,i` of its cross-entropy
(`q_y,i`: the base model's probability of the given label, recorded in stage 1) and the entropy term takes the rest:
an ambiguous label the base model half believes stays half taught, a confident disagreement is dropped. With
`ido_correction="base_prediction"` the last term becomes `(1 - p_clean_i) [CE(z_w,i, q_i) + CE(z_s,i, q_i)]`, `q_i`
being the distribution the base model predicted for the sample (recorded in stage 1, its top classes kept): soft-label
correction by a teacher chosen before memorisation, which also keeps the share of an ambiguous label it believed. With
`"discard"` a flagged sample gets no target at all. With `ido_correction="mixup"` (label refinement with mixup, as
DivideMix does with two networks, here in one) the strong view becomes a within-batch mixup of the inputs
(`lam x_i + (1 - lam) x_j`, `lam ~ Beta(a, a)` folded onto [1/2, 1]; text mixes word embeddings) and stage 2 trains

    L = mean_i p_clean_i CE(z_w,i, y_i)  +  mean_i CE(z_mix,i, lam t_i + (1 - lam) t_j)
    t_i = sharpen(p_clean_i onehot(y_i) + (1 - p_clean_i) softmax(z_w,i), T)       (no gradient)

so a flagged sample is taught the weak view's sharpened prediction and a clean one its label, softened where the
model disagrees; the refined target's most probable class is the report's corrected label.

The default, `"auto"`, is `"base_belief"` when the base model still gives at least `MIN_BELIEVED_SHARE` of the
flagged labels even odds (`believed_share`: disputed labels, as in real crowd noise); otherwise (flips the base model
rejects) it is `"mixup"` on images and the paper's entropy term on text.

The premise safeguard (`ido_premise_safeguard`, on by default): when the samples the stage-1 mixture calls clean were
still predicted wrongly in over a third of the stage-1 epochs (the base model has not learnt what IDO would trust,
e.g. a network trained from scratch), stage 2 trains with `ido_fallback_loss` on the unaugmented inputs instead.
After a stage 1 on the run's schedule the fallback keeps the optimiser and that schedule, so with cross-entropy the
whole run is the plain run it replaces.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..correction import (
    MIN_BELIEVED_SHARE,
    PredictionMemory,
    SoftTargetMemory,
    believed_share,
    check_confidence_threshold,
    pseudo_label_loss,
    record_label_belief,
    sharpen,
)
from ..data import IGNORE_INDEX
from ..features import unwrap_model
from ..metrics import estimated_noise_rate
from ..mixture import (
    PREMISE_MAX_CLEAN_ERROR_RATE,
    BetaMixture,
    ClassConditionalBetaMixture,
    clean_component_error_rate,
)
from ..state import CheckpointStateError
from ..tracking import flag_ordered_scores, select_base_epoch
from ..views import RANDAUGMENT_MAX_MAGNITUDE, ImageViews, TextMasker, embedded, mixup_coefficient, mixup_view
from .base import Citation, LNLMethod, MethodOutput
from .cross_entropy import gce_loss
from .registry import register_method

logger = logging.getLogger(__name__)

PROBABILITY_CLAMP = 1e-4  # q = clamp(softmax(z), 1e-4, 1 - 1e-4) before the entropy term
# Per-sample loss weights below this are zero: a mixture's p_clean keeps falling with a sample's wrong events, and a
# weight under float32's smallest normal (1.2e-38) makes that sample's gradient subnormal; CPU matrix products on
# subnormal floats run about 100x slower (a "discard" run's last epoch on Task A took 6x its earlier ones).
MIN_SAMPLE_WEIGHT = 1e-12
STAGE1_REFIT_ITERATIONS = 20
STAGE2_REFIT_ITERATIONS = {"global": 1, "per_class": 2}
MIXTURES = ("per_class", "global")  # ido_mixture
ENTROPY_TERMS = ("confidence", "plain")  # ido_entropy
# ido_correction
CORRECTIONS = ("auto", "entropy", "pseudo_label", "base_belief", "base_prediction", "discard", "mixup")
FALLBACK_LOSSES = ("gce", "cross_entropy")  # ido_fallback_loss
VIEWS = ("auto", "augmented", "dropout")  # ido_views
WEAK_PREFIX = "weak_"  # state tensors of the weak view's remembered predictions
STAGE1_PREDICTION_PREFIX = "stage1_prediction_"  # ido_correction="base_prediction": the latest stage-1 predictions
BASE_PREDICTION_PREFIX = "base_prediction_"  # ... and the base model's, which stage 2 teaches
MIN_STAGE1_EPOCHS = 2  # prediction change compares two epochs
BASE_MODEL_FILE = "ido_base_model.safetensors"
STAGE1_FOLDER = "_ido_stage1"  # in output_dir; the leading "_" keeps it out of push_to_hub's upload
WEAK_BASE_NOISE_RATE = 0.5  # more labels than this judged noisy after stage 1 means the base model learnt little
STRONG_SUFFIX = "_strong"  # a collator may supply its own strong view as `<input>_strong`
# ido_views="auto" masks tokens only when the median training text has at least this many tokens (special tokens
# included): 15% masking of a short text removes much of its meaning. Measured between Task R's tweets (median 34:
# masking costs IDO 1.1 points) and Task A's news excerpts (64, all truncated: masking gains 0.4 and 2.1).
MIN_MASKED_TEXT_TOKENS = 48
TEXT_LENGTH_SAMPLE = 1000  # rows read (a seeded draw, the same on every process) to measure the median text length
IDO_CITATION = Citation(
    key="zhang2025handling",
    title="Handling Label Noise via Instance-Level Difficulty Modeling and Dynamic Optimization",
    authors=(
        "Kuan Zhang", "Chengliang Chai", "Jingzhe Xu", "Chi Zhang", "Han Han", "Ye Yuan", "Guoren Wang", "Lei Cao",
    ),
    venue="NeurIPS",
    booktitle="Advances in Neural Information Processing Systems (NeurIPS)",
    year=2025,
    eprint="2505.00812",
)  # fmt: skip


def stage_epochs(args: Any) -> tuple[int, int]:
    """(stage-1 epochs, stage-2 epochs) of IDO, validated against `num_train_epochs`.

    By default stage 1 takes a third of the epochs (at least 2: prediction change compares two epochs); with both
    `ido_stage1_epochs` and `ido_stage2_epochs` given they must sum to `num_train_epochs`. With `ido_stage1_dir`, the
    whole run is stage 2.

    Example:
        >>> from hf_lnl import NoisyLabelConfig
        >>> stage_epochs(NoisyLabelConfig(output_dir="out", lnl_method="ido", num_train_epochs=6))
        (2, 4)
    """
    total = args.num_train_epochs
    if args.ido_stage1_dir is not None:  # stage 1 comes from disk: the whole run is stage 2
        if total != int(total) or total < 1:
            raise ValueError(f"With ido_stage1_dir, num_train_epochs is stage 2's length; got {total}.")
        return 0, int(total)
    if args.max_steps > 0:
        raise ValueError("lnl_method='ido' counts its stages in epochs: set num_train_epochs, not max_steps.")
    if total != int(total) or total < MIN_STAGE1_EPOCHS + 1:
        raise ValueError(
            f"lnl_method='ido' needs a whole number of at least {MIN_STAGE1_EPOCHS + 1} epochs "
            f"(stage 1 >= {MIN_STAGE1_EPOCHS}, stage 2 >= 1), got num_train_epochs={total}."
        )
    total = int(total)
    first, second = args.ido_stage1_epochs, args.ido_stage2_epochs
    if first is not None and second is not None and first + second != total:
        raise ValueError(
            f"ido_stage1_epochs ({first}) + ido_stage2_epochs ({second}) must equal num_train_epochs ({total}); "
            "set num_train_epochs to their sum or give only one of them."
        )
    if first is None:
        first = total - second if second is not None else max(MIN_STAGE1_EPOCHS, math.floor(total / 3 + 0.5))
    if first < MIN_STAGE1_EPOCHS:
        raise ValueError(f"ido_stage1_epochs must be at least {MIN_STAGE1_EPOCHS}, got {first}.")
    if total - first < 1:
        raise ValueError(f"IDO stage 2 needs at least one epoch; stage 1 takes {first} of {total} epochs.")
    return first, total - first


@register_method
class IDO(LNLMethod):
    """`lnl_method="ido"`: both stages in one `trainer.train()`; stage lengths from `stage_epochs(args)`."""

    name = "ido"
    title = "IDO (instance-level difficulty modelling and dynamic optimisation)"
    description = (
        "Stage 1 fine-tunes with cross-entropy while counting wrong events and picks a base model by prediction "
        "change; stage 2 restarts from it and trains on a weak and a strong view with a per-sample loss weighted by "
        "a beta mixture fitted on the counts. `noise_score` flags where the mixture's p_noisy is above the "
        "threshold and ranks by wrong events."
    )
    citation = IDO_CITATION
    report_columns = (
        "p_clean", "p_noisy", "stage1_wrong_events", "stage2_wrong_events", "corrected_label", "correction_confidence",
    )  # fmt: skip
    state_tensors = (
        "stage1_counts", "weak_prediction", "weak_confidence", "label_belief", "base_label_belief",
        "stage1_prediction_*", "base_prediction_*",
    )  # fmt: skip
    config_fields = (
        "ido_stage1_epochs", "ido_stage2_epochs", "ido_mixture", "ido_min_class_samples", "ido_entropy",
        "ido_stage1_dir", "ido_mask_rate", "ido_mask_token_id", "ido_randaugment_magnitude",
        "ido_lookup_after_counting", "ido_stage1_constant_lr", "ido_extend_stage1", "ido_correction",
        "ido_pseudo_label_threshold", "ido_premise_safeguard", "ido_fallback_loss", "ido_views", "ido_mixup_alpha",
        "ido_mixup_temperature",
    )  # fmt: skip
    num_views = 2
    restarts_optimizer = True

    @classmethod
    def check_args(cls, args: Any) -> None:
        _check_choice("ido_mixture", args.ido_mixture, MIXTURES)
        _check_choice("ido_entropy", args.ido_entropy, ENTROPY_TERMS)
        _check_choice("ido_correction", args.ido_correction, CORRECTIONS)
        _check_choice("ido_fallback_loss", args.ido_fallback_loss, FALLBACK_LOSSES)
        _check_choice("ido_views", args.ido_views, VIEWS)
        check_confidence_threshold("ido_pseudo_label_threshold", args.ido_pseudo_label_threshold)
        if not 0.0 < args.ido_belief_full_at <= 1.0:
            raise ValueError(
                "ido_belief_full_at must lie in (0, 1] (a probability of the given label), got "
                f"{args.ido_belief_full_at}."
            )
        if not args.ido_mixup_alpha > 0.0:
            raise ValueError(
                f"ido_mixup_alpha is Beta(a, a)'s parameter and must be above 0, got {args.ido_mixup_alpha}."
            )
        if not 0.0 < args.ido_mixup_temperature <= 1.0:
            raise ValueError(
                f"ido_mixup_temperature sharpens the refined targets and must lie in (0, 1], got "
                f"{args.ido_mixup_temperature}."
            )
        if not 0.0 < args.ido_mask_rate < 1.0:
            raise ValueError(f"ido_mask_rate must lie in (0, 1), got {args.ido_mask_rate}.")
        if not 0.0 <= args.ido_randaugment_magnitude <= RANDAUGMENT_MAX_MAGNITUDE:
            raise ValueError(
                f"ido_randaugment_magnitude must lie in [0, {RANDAUGMENT_MAX_MAGNITUDE}] (kornia's scale), got "
                f"{args.ido_randaugment_magnitude}."
            )
        rate = args.ido_stage2_learning_rate
        if rate is not None and not (math.isfinite(rate) and rate > 0.0):
            raise ValueError(
                f"ido_stage2_learning_rate must be a positive learning rate, got {rate}; leave it unset (None) for "
                "stage 2 to train at learning_rate."
            )
        if args.ido_min_class_samples < 1:
            raise ValueError(f"ido_min_class_samples must be at least 1, got {args.ido_min_class_samples}.")
        if args.ido_mask_token_id is not None and args.ido_mask_token_id < 0:
            raise ValueError(f"ido_mask_token_id must be a token id (>= 0), got {args.ido_mask_token_id}.")
        stage_epochs(args)  # validates the stage split now, not at the stage boundary
        if args.ido_extend_stage1 and args.ido_stage1_constant_lr is False:
            raise ValueError(
                "ido_extend_stage1 needs ido_stage1_constant_lr=True or None (the default): a stage-1 schedule that "
                "decays over the planned stage 1 has reached 0 when the extension starts."
            )

    # ------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        context = self.context
        self.stage1_epochs, self.stage2_epochs = stage_epochs(self.args)
        self.stage = 1
        self.base_epoch: int | None = None
        self.search_done = False
        self.base_state: dict[str, torch.Tensor] | None = None
        self.stage1_counts: torch.Tensor | None = None
        self._stage1_epochs_from_disk = 0
        self.safeguards = []  # a new training run starts with none fired
        self.fallback = False  # the premise safeguard fired: stage 2 is ido_fallback_loss on the unaugmented inputs
        self._views_mode = self.args.ido_views  # "auto" becomes "augmented" (text) or "dropout" (images)
        self.correction = self.args.ido_correction  # "auto" becomes "base_belief", "mixup" or "entropy" in stage 2
        self._images = getattr(unwrap_model(context.model), "main_input_name", None) == "pixel_values"
        # Dropout views only: None until stage 2's first step shows whether the two forwards of the same inputs differ.
        self.views_identical: bool | None = None
        self.num_classes = int(unwrap_model(context.model).config.num_labels)
        self.stage1_schedule = stage1_schedule(self.args.ido_stage1_constant_lr, unwrap_model(context.model))
        _check_mask_token_id(self.args.ido_mask_token_id, unwrap_model(context.model).config)  # before step 1
        if self.args.ido_mixture == "per_class":
            self.mixture = ClassConditionalBetaMixture(
                self.num_classes, min_class_samples=self.args.ido_min_class_samples
            )
        else:
            self.mixture = BetaMixture()
        self.lookup: torch.Tensor | None = None
        self._views: ImageViews | TextMasker | None = None
        self._device = context.wrong_events.device
        self._labels = torch.as_tensor(context.label_info.labels, device=self._device)
        # The weak view's prediction and confidence at each sample's last stage-2 visit (with label correction): the
        # report's corrected label.
        self.weak_predictions = PredictionMemory(len(self._labels), self._device)
        # ido_correction="base_belief": each sample's probability of its given label at its last stage-1 visit, and
        # its copy taken with the base model (what stage 2 reads).
        self.label_belief = torch.zeros(len(self._labels), dtype=torch.float32, device=self._device)
        self.base_label_belief: torch.Tensor | None = None
        # ido_correction="base_prediction": each sample's predicted distribution at its last stage-1 visit, and the
        # base model's copy (the soft target stage 2 teaches a flagged sample).
        self.stage1_predictions: SoftTargetMemory | None = None
        if self.args.ido_correction == "base_prediction":
            self.stage1_predictions = SoftTargetMemory(len(self._labels), self.num_classes, self._device)
        self.base_predictions: SoftTargetMemory | None = None
        if self.args.ido_stage1_dir is not None:
            self._load_stage1(self.args.ido_stage1_dir)

    def max_wrong_events(self) -> int:
        """Largest wrong-event count possible so far: stage 1 has one view, so one per epoch counted (stage 2: the
        whole run's maximum, `max_count`)."""
        if self.stage == 1 or self.fallback:
            return max(self.context.epochs_counted, 1)
        return self.max_count

    @property
    def max_count(self) -> int:
        """Largest wrong-event count of the whole run: one per stage-1 epoch, two per stage-2 epoch."""
        return self.stage1_epochs + self.stage2_epochs * self.num_views + self._stage1_epochs_from_disk

    @property
    def on_run_schedule(self) -> bool:
        """Whether the learning rate follows the config's schedule over the whole run: stage 1 of a model trained
        from scratch, and the premise fallback that goes on from it as the plain run."""
        return self.stage1_schedule == "run" and (self.stage == 1 or self.fallback)

    def lr_scheduler_type(self) -> str | None:
        """Stage 1 at a constant learning rate for a pretrained model (the authors' choice,
        `ido_stage1_constant_lr`); otherwise the config's schedule."""
        return "constant" if self.stage == 1 and self.stage1_schedule == "constant" else None

    def learning_rate(self) -> float | None:
        """Stage 2's peak rate, `ido_stage2_learning_rate` (None: the config's); stage 1 and the fallback keep it."""
        return self.args.ido_stage2_learning_rate if self.stage == 2 and not self.fallback else None

    def training_steps(self, num_training_steps: int) -> int:
        if self.on_run_schedule:
            return num_training_steps
        total_epochs = self.stage1_epochs + self.stage2_epochs
        epochs = self.stage1_epochs if self.stage == 1 else self.stage2_epochs
        return max(1, round(num_training_steps * epochs / total_epochs))

    # ------------------------------------------------------------------------------------------ loss
    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], sample_index: torch.Tensor | None, num_items_in_batch: Any
    ) -> MethodOutput:
        labels = inputs.pop("labels")
        self._resolve_views(inputs)
        views = self._views_for(inputs) if self._augments else None
        strong = {k[: -len(STRONG_SUFFIX)]: inputs.pop(k) for k in list(inputs) if k.endswith(STRONG_SUFFIX)}
        if self.fallback:  # the premise safeguard fired: a plain loss on the inputs as given (strong views popped)
            outputs = model(**inputs)
            losses = _fallback_loss(outputs["logits"], labels, self.args)
            keep = (labels != IGNORE_INDEX).float()
            loss = losses.sum() / keep.sum().clamp_min(1.0)
            return MethodOutput(loss, outputs, (outputs["logits"],), labels, losses, {"ido_stage": 2.0})
        weak = self._weak(inputs)
        if self.stage == 1:
            outputs = model(**weak)
            losses = F.cross_entropy(outputs["logits"].float(), labels, reduction="none", ignore_index=IGNORE_INDEX)
            keep = (labels != IGNORE_INDEX).float()
            loss = losses.sum() / keep.sum().clamp_min(1.0)
            if self._records_belief and sample_index is not None:
                record_label_belief(self.label_belief, sample_index, outputs["logits"], labels)
            if self.stage1_predictions is not None and sample_index is not None:
                self.stage1_predictions.update(sample_index, outputs["logits"])
            return MethodOutput(loss, outputs, (outputs["logits"],), labels, losses, {"ido_stage": 1.0})
        if not self._augments:  # dropout views: both are the inputs as given (a collator's strong view is unused)
            strong = weak
        else:
            strong = {**weak, **strong} if strong else self._strong(inputs, views)
        if self.correction == "mixup":
            return self._mixup_step(model, weak, strong, labels, sample_index)
        if self.views_identical:  # dropout views of a model without dropout: one forward gives both views
            outputs = model(**weak)
            logits_weak = logits_strong = outputs["logits"].float()
        else:
            size = labels.shape[0]
            outputs = model(**_two_views(weak, strong, size))
            logits_weak, logits_strong = outputs["logits"].float().chunk(2)
            if not self._augments and self.views_identical is None:
                self._check_views_identical(logits_weak, logits_strong)
        batch_events = self._batch_wrong_events((logits_weak, logits_strong), labels, sample_index)
        stats = self._mixture_stats(sample_index, labels, batch_events)
        belief = soft_targets = None
        if self.correction == "base_prediction":
            soft_targets = self.base_predictions.targets(sample_index).to(labels.device)
        if self._keeps_belief:
            belief = self.base_label_belief[sample_index.to(self.base_label_belief.device)].to(labels.device)
        losses, parts = ido_loss(
            logits_weak,
            logits_strong,
            labels,
            stats,
            self.args.ido_entropy == "confidence",
            pseudo_label_threshold=self.args.ido_pseudo_label_threshold if self._corrects else None,
            label_belief=belief,
            teach_flagged=self.correction != "discard",
            soft_targets=soft_targets,
            belief_full_at=self.args.ido_belief_full_at,
        )
        if self._corrects:
            self.weak_predictions.update(sample_index, logits_weak)
        metrics: dict[str, torch.Tensor | float] = {f"ido_{k}": v for k, v in parts.items() if k != "loss"}
        metrics["ido_stage"] = 2.0
        outputs["logits"] = logits_weak
        return MethodOutput(parts["loss"], outputs, (logits_weak, logits_strong), labels, losses, metrics)

    def _mixup_step(
        self,
        model: nn.Module,
        weak: dict[str, Any],
        strong: dict[str, Any],
        labels: torch.Tensor,
        sample_index: torch.Tensor,
    ) -> MethodOutput:
        """Stage 2 with `ido_correction="mixup"`: one forward of the weak view and a within-batch mixup of the strong
        view, trained with `ido_mixup_loss`. Wrong events are counted on the weak view (twice: a mixed input has no
        single label), which keeps the counts' scale."""
        size = labels.shape[0]
        lam = mixup_coefficient(self.args.ido_mixup_alpha)
        partner = torch.randperm(size, device=labels.device)
        if "pixel_values" not in weak:  # text mixes word embeddings: both views go in as inputs_embeds
            embeddings = unwrap_model(model).get_input_embeddings()
            weak, strong = embedded(weak, embeddings), embedded(strong, embeddings)
        mixed = mixup_view(strong, lam, partner)
        outputs = model(**_two_views(weak, mixed, size))
        logits_weak, logits_mixed = outputs["logits"].float().chunk(2)
        view_logits = (logits_weak, logits_weak)  # the weak view counted twice, as the two-view loss counts two views
        batch_events = self._batch_wrong_events(view_logits, labels, sample_index)
        p_clean = self._mixture_stats(sample_index, labels, batch_events)[:, 0].to(labels.device)
        losses, parts, targets = ido_mixup_loss(
            logits_weak, logits_mixed, labels, p_clean, lam, partner, self.args.ido_mixup_temperature
        )
        self.weak_predictions.update(sample_index, targets.clamp_min(1e-30).log())  # the refined targets
        metrics: dict[str, torch.Tensor | float] = {f"ido_{k}": v for k, v in parts.items() if k != "loss"}
        metrics["ido_stage"] = 2.0
        outputs["logits"] = logits_weak
        return MethodOutput(parts["loss"], outputs, view_logits, labels, losses, metrics)

    def _batch_wrong_events(
        self, view_logits: tuple[torch.Tensor, ...], labels: torch.Tensor, sample_index: torch.Tensor
    ) -> torch.Tensor | None:
        """With `ido_lookup_after_counting`, the wrong events the trainer is about to count for this batch from the
        views' logits (a sample's first visit of each view this epoch); else None."""
        if not self.args.ido_lookup_after_counting:
            return None
        return sum(
            (logits.argmax(-1) != labels) & (labels != IGNORE_INDEX) & self.context.first_visit(sample_index, v)
            for v, logits in enumerate(view_logits)
        )

    @property
    def _corrects(self) -> bool:
        return self.args.ido_correction == "pseudo_label"

    @property
    def _remembers_targets(self) -> bool:
        """The corrections whose per-sample target `weak_predictions` keeps for the report: the pseudo-label (the weak
        view's prediction) and mixup's refined target."""
        return self.correction in ("pseudo_label", "mixup")  # "auto" may become "mixup", never "pseudo_label"

    @property
    def _records_belief(self) -> bool:
        """Stage 1 records each sample's belief in its label (`"base_belief"`, and `"auto"`, which may choose it)."""
        return self.args.ido_correction in ("base_belief", "auto")

    @property
    def _keeps_belief(self) -> bool:
        return self.correction == "base_belief"

    def _resolve_correction(self, p_noisy: np.ndarray) -> dict[str, float]:
        """`ido_correction="auto"`, as stage 2 starts: `"base_belief"` when at least `MIN_BELIEVED_SHARE` of the
        labels the mixture flags (`p_noisy` > 1/2) still had at least even odds under the base model (disputed,
        mostly right labels: real crowd noise); else, for flips the base model rejects, `"mixup"` on images (a model
        whose main input is `pixel_values`) and the paper's `"entropy"` on text."""
        if self.correction != "auto":
            return {}
        share = believed_share(p_noisy, self.base_label_belief.cpu().numpy())
        if share >= MIN_BELIEVED_SHARE:
            self.correction = "base_belief"
        else:
            self.correction = "mixup" if self._images else "entropy"
        if self._keeps_belief:
            note = (
                f"stage 2 kept the share of each flagged label that the base model believed "
                f"(ido_correction='base_belief'): the base model still gave {share:.0%} of the flagged labels at "
                f"least even odds (at least {MIN_BELIEVED_SHARE:.0%}), so the flags look like disputed labels rather "
                "than flips"
            )
            self.safeguards.append(note)
            logger.warning(f"IDO safeguard: {note}.")
        else:
            taught = "mixup's refined targets (images)" if self.correction == "mixup" else "the paper's entropy term"
            logger.info(
                f"IDO: the base model gave {share:.0%} of the flagged labels at least even odds (under "
                f"{MIN_BELIEVED_SHARE:.0%}): stage 2 teaches the flagged samples {taught} (ido_correction='auto')."
            )
        return {"ido_believed_share": share}

    def _check_views_identical(self, logits_weak: torch.Tensor, logits_strong: torch.Tensor) -> None:
        """At the first stage-2 step with dropout views: if both forwards of the same inputs gave the same logits, the
        model's training forward is deterministic (no dropout, e.g. most ViT configs), so later steps run one forward
        and use it for both views (the same loss and gradient at half the cost)."""
        self.views_identical = bool(torch.equal(logits_weak, logits_strong))
        if self.views_identical:
            logger.info("IDO: the model has no active dropout, so its two views are one: stage 2 runs one forward.")

    @property
    def _augments(self) -> bool:
        """The paper's augmented views (`ido_views="augmented"`, or `"auto"` on text); else both views are the inputs
        as given. `"auto"` is resolved at the first batch (`_resolve_views`)."""
        return self._views_mode == "augmented"

    def _resolve_views(self, inputs: dict[str, Any]) -> None:
        """`"auto"`: dropout views for images (augmentations hurt B and B2); for text, token masking where the median
        training text is long enough (`MIN_MASKED_TEXT_TOKENS`), else dropout views. Decided from the dataset, not
        the batch, so every process decides alike."""
        if self._views_mode != "auto":
            return
        if "pixel_values" in inputs:
            self._views_mode = "dropout"
            return
        length = self._median_text_length()
        self._views_mode = "augmented" if length is None or length >= MIN_MASKED_TEXT_TOKENS else "dropout"
        if length is not None:
            logger.info(
                "IDO: the median training text has %d tokens, so the strong view %s (ido_views='auto').",
                length, "masks 15% of them" if self._augments else "is the text as given: masking would cut too much",
            )  # fmt: skip

    def _median_text_length(self) -> int | None:
        """Median attended tokens of (a seeded draw of) the training texts; None when the rows carry no tokens (a
        collator that tokenises on the fly)."""
        num_rows = len(self._labels)
        rng = np.random.default_rng(self.args.seed)
        indices = np.sort(rng.choice(num_rows, min(num_rows, TEXT_LENGTH_SAMPLE), replace=False))
        rows = self.context.training_rows(indices)
        lengths = []
        for i in range(len(indices)):
            row = rows[i]
            tokens = row.get("attention_mask", row.get("input_ids")) if isinstance(row, Mapping) else None
            if tokens is None:
                return None
            lengths.append(int(np.asarray(tokens).sum()) if "attention_mask" in row else len(tokens))
        return int(np.median(lengths)) if lengths else None

    def corrected_labels(self) -> np.ndarray:
        """The label stage 2 teaches each sample: the weak view's last prediction where the sample is flagged
        (`noise_score` above the threshold) and that prediction was confident enough, else the given label. Equal to
        the given labels without `ido_correction="pseudo_label"` or before stage 2."""
        labels = np.asarray(self.context.label_info.labels)
        if self.stage == 1 or self.fallback or not (self._remembers_targets or self.correction == "base_prediction"):
            return labels.copy()
        flagged = self.noise_scores() > self.args.noise_score_threshold
        if self.correction == "base_prediction":
            return np.where(flagged & (labels != IGNORE_INDEX), self.base_predictions.predictions()[0], labels)
        threshold = self.args.ido_pseudo_label_threshold if self._corrects else 0.0  # mixup teaches every target
        return self.weak_predictions.corrected_labels(labels, flagged, threshold)

    def _views_for(self, inputs: dict[str, Any]) -> ImageViews | TextMasker | None:
        if self._views is None:
            processor = self.context.processing_class
            if "pixel_values" in inputs:
                image_processor = getattr(processor, "image_processor", processor)
                if image_processor is None or not hasattr(image_processor, "image_mean"):
                    if f"pixel_values{STRONG_SUFFIX}" in inputs:
                        return None  # the collator makes the strong view; the weak one is the batch as given
                    raise ValueError(
                        "lnl_method='ido' augments images with the processor's normalisation: pass the image "
                        "processor as `processing_class=`, or supply `pixel_values_strong` from your collator."
                    )
                self._views = ImageViews.from_processor(
                    image_processor, randaugment_m=self.args.ido_randaugment_magnitude
                )
            elif "input_ids" in inputs:
                tokenizer = getattr(processor, "tokenizer", processor)
                masker_possible = hasattr(tokenizer, "all_special_ids") or self.args.ido_mask_token_id is not None
                if f"input_ids{STRONG_SUFFIX}" in inputs and not masker_possible:
                    return None  # the collator makes the strong view: nothing to mask
                self._views = _text_masker(tokenizer, self.args, unwrap_model(self.context.model).config)
        return self._views

    def _weak(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self._views, ImageViews):  # set only with augmented views
            return {**inputs, "pixel_values": self._views.weak(inputs["pixel_values"])}
        return dict(inputs)

    def _strong(self, inputs: dict[str, Any], views: ImageViews | TextMasker | None) -> dict[str, Any]:
        if isinstance(views, ImageViews):
            return {**inputs, "pixel_values": views.strong(inputs["pixel_values"])}
        if isinstance(views, TextMasker):
            return {**inputs, "input_ids": views.strong(inputs["input_ids"], inputs.get("attention_mask"))}
        raise ValueError(
            "lnl_method='ido' needs a strong view: inputs have neither `pixel_values` nor `input_ids`. Supply "
            "`<input>_strong` tensors from your collator."
        )

    def _mixture_stats(
        self, sample_index: torch.Tensor, labels: torch.Tensor, batch_events: torch.Tensor | None = None
    ) -> torch.Tensor:
        counts = self.context.wrong_events[sample_index.to(self.lookup.device)].long()
        if batch_events is not None:
            counts = counts + batch_events.to(counts.device).long()
        counts = counts.clamp_max(self.lookup.shape[-2] - 1)
        if self.lookup.dim() == 3:
            rows = self._labels[sample_index.to(self._labels.device)].clamp_min(0)
            return self.lookup[rows, counts]
        return self.lookup[counts]

    # ------------------------------------------------------------------------------------- epoch ends
    def on_epoch_end(self) -> dict[str, float]:
        context = self.context
        if self.stage == 1:
            if not self.search_done:
                if select_base_epoch(context.prediction_changes) == context.epochs_completed:
                    self._snapshot_base(context.epochs_completed)  # prediction change still falling
                else:
                    self.search_done = True
            if context.epochs_completed >= self.stage1_epochs:
                if self._prediction_change_still_falling():
                    return self._extend_stage1()
                return self._start_stage2()
            return {"ido_stage": 1.0}
        if self.fallback:
            return {"ido_stage": 2.0, "ido_fallback": 1.0}
        self._refit(STAGE2_REFIT_ITERATIONS[self.args.ido_mixture])
        return {"ido_stage": 2.0, **self._mixture_logs()}

    def _prediction_change_still_falling(self) -> bool:
        """The stage-1 extension safeguard's trigger: the last epoch changed fewer predictions than the one before
        (the model is still learning what the labels share), and stage 2 would keep an epoch after one more."""
        changes = self.context.prediction_changes
        return (
            self.args.ido_extend_stage1 and self.stage2_epochs > 1 and len(changes) >= 2 and changes[-1] < changes[-2]
        )

    def _extend_stage1(self) -> dict[str, float]:
        self.stage1_epochs, self.stage2_epochs = self.stage1_epochs + 1, self.stage2_epochs - 1
        changes = self.context.prediction_changes
        note = (
            f"stage 1 extended to {self.stage1_epochs} epochs: the prediction change was still falling "
            f"({changes[-2]} -> {changes[-1]} samples)"
        )
        self.safeguards.append(note)
        logger.warning(f"IDO safeguard: {note}.")
        return {"ido_stage": 1.0, "ido_stage1_extended": float(self.stage1_epochs)}

    def selectable(self) -> bool:
        """From the end of stage 2's first epoch on: stage 2 does not keep the stage-1 models (the base model it
        restarts from is evaluated at the end of stage 1). The same rule holds when the premise fallback fires."""
        return self.context.epochs_completed > self.stage1_epochs

    def card_notes(self) -> list[str]:
        notes = [f"IDO safeguard fired: {note}." for note in self.safeguards]
        if self.args.ido_correction == "auto" and self.correction == "mixup":
            notes.append(
                "IDO's stage 2 taught the flagged samples mixup's refined targets (ido_correction='auto' on images): "
                "a within-batch mixup of the inputs learnt the sharpened weak-view prediction of each flagged sample "
                "and the label of each trusted one."
            )
        return notes

    def _snapshot_base(self, epoch: int) -> None:
        model = unwrap_model(self.context.model)
        self.base_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.base_epoch = epoch
        if self._records_belief:
            self.base_label_belief = self.label_belief.clone()
        if self.stage1_predictions is not None:
            self.base_predictions = self.stage1_predictions.copy()

    def _start_stage2(self) -> dict[str, float]:
        context = self.context
        self.stage1_counts = context.wrong_events.to(torch.int16).clone()
        if self.args.should_save:
            self.save_stage1(os.path.join(self.args.output_dir, STAGE1_FOLDER))
        self._refit(STAGE1_REFIT_ITERATIONS)
        clean_error = clean_component_error_rate(self.mixture)
        if self.args.ido_premise_safeguard and clean_error > PREMISE_MAX_CLEAN_ERROR_RATE:
            return self._start_fallback(clean_error)
        unwrap_model(context.model).load_state_dict(self.base_state)
        self.base_state = None
        self.stage = 2
        context.restart_optimization()
        logger.info(f"IDO stage 2 starts from the base model of epoch {self.base_epoch}.")
        scores = self.noise_scores()
        resolved = self._resolve_correction(scores)
        flagged = estimated_noise_rate(scores, self.args.noise_score_threshold)
        if flagged > WEAK_BASE_NOISE_RATE:
            logger.warning(
                f"IDO's mixture marks {flagged:.0%} of the training labels as noisy after stage 1: the base model is "
                "probably too weak (IDO assumes a pretrained backbone), and stage 2 will mostly minimise entropy. "
                "Start from a pretrained model; for a network trained from scratch prefer lnl_method='gce' or "
                "'none' (on a from-scratch ViT a longer stage 1 was measured not to help)."
            )
        return {"ido_stage": 2.0, "ido_base_epoch": float(self.base_epoch), **resolved, **self._mixture_logs()}

    def _start_fallback(self, clean_error: float) -> dict[str, float]:
        """The premise safeguard: the samples the mixture would trust were wrong on `clean_error` of the stage-1
        epochs, so the base model has not learnt them and IDO's weighting would mostly minimise entropy. Stage 2
        continues from the current model with `ido_fallback_loss` (cross-entropy or GCE) on the unaugmented inputs.
        After a stage 1 on the run's schedule (a model trained from scratch) the optimiser and that schedule go on,
        as in the plain run; otherwise they restart, as stage 2 always does."""
        self.fallback, self.stage, self.base_state = True, 2, None
        loss = f"GCE (q {self.args.gce_q:g})" if self.args.ido_fallback_loss == "gce" else "cross-entropy"
        note = (
            f"stage 2 trained with {loss} on the unaugmented inputs instead of IDO's weighted "
            f"loss: after stage 1 the samples IDO's mixture would trust were still predicted wrongly in "
            f"{clean_error:.0%} of the epochs (above {PREMISE_MAX_CLEAN_ERROR_RATE:.0%}), so the base model had not "
            "learnt them (typical of a network trained from scratch)"
        )
        if self.on_run_schedule:  # the plain run goes on
            note += "; the optimiser and the run's learning-rate schedule went on from stage 1, as in a plain run"
        else:
            self.context.restart_optimization()
        self.safeguards.append(note)
        logger.warning(f"IDO safeguard: {note}.")
        return {"ido_stage": 2.0, "ido_fallback": 1.0, "ido_clean_component_error_rate": clean_error}

    def _refit(self, iterations: int) -> None:
        counts = self.context.counts()
        if isinstance(self.mixture, ClassConditionalBetaMixture):
            self.mixture.fit(counts, self.context.label_info.labels, n_iter=iterations)
        else:
            self.mixture.fit(counts, n_iter=iterations)
        table = torch.as_tensor(self.mixture.lookup_table(self.max_count), dtype=torch.float32)
        self.lookup = table.to(self._device)

    def _mixture_logs(self) -> dict[str, float]:
        params = self.mixture.get_params()
        logger.info(f"IDO beta mixture: {params}")
        source = params.get("global", params)
        logs = {"ido_estimated_noise_rate": estimated_noise_rate(self.noise_scores(), self.args.noise_score_threshold)}
        for k, (name, key) in enumerate([("alpha", "alphas"), ("beta", "betas"), ("pi", "weights")] * 2):
            logs[f"ido_mixture_{name}{k // 3}"] = float(source[key][k // 3])
        return logs

    # ------------------------------------------------------------------------------------------ report
    def _stats_now(self) -> np.ndarray:
        counts = self.context.counts()
        if isinstance(self.mixture, ClassConditionalBetaMixture):
            return self.mixture.predict_stats(counts, self.context.label_info.labels)
        return self.mixture.predict_stats(counts)

    def noise_scores(self) -> np.ndarray:
        """Stage 2: flagged where the current beta mixture's `p_noisy` is above `noise_score_threshold`, and ranked
        by wrong events on each side of it (`flag_ordered_scores`); stage 1: wrong events / maximum.

        The per-class mixtures' posteriors rank worse across classes than the counts they are fitted on (Task B2
        asym40, seeds 0-2: detection AUROC 0.899 / 0.906 / 0.888 for `p_noisy`, 0.910 / 0.918 / 0.906 ordered by
        counts with the same flags); the report keeps `p_noisy` as a column."""
        if self.stage == 1 or self.fallback:
            return super().noise_scores()
        threshold = self.args.noise_score_threshold
        flagged = self._stats_now()[:, 1] > threshold
        return flag_ordered_scores(flagged, self.context.counts(), self.max_wrong_events(), threshold)

    def report_values(self) -> dict[str, np.ndarray]:
        counts = self.context.counts()
        columns: dict[str, np.ndarray] = {}
        if self.stage == 2 and not self.fallback:
            stats = self._stats_now()
            columns.update(p_clean=stats[:, 0].astype(np.float32), p_noisy=stats[:, 1].astype(np.float32))
        if self.stage1_counts is not None:
            stage1 = self.stage1_counts.cpu().numpy().astype(np.int64)
            columns.update(stage1_wrong_events=stage1, stage2_wrong_events=counts - stage1)
        if self.stage == 2 and not self.fallback and (self._remembers_targets or self.correction == "base_prediction"):
            confidence = (
                self.base_predictions.predictions()[1]
                if self.correction == "base_prediction"
                else self.weak_predictions.confidence.cpu().numpy()
            )
            columns.update(
                corrected_label=self.corrected_labels(), correction_confidence=confidence.astype(np.float32)
            )
        return columns

    def fitted_mixture(self) -> Any:
        return self.mixture if self.stage == 2 and not self.fallback else None

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        tensors = self.weak_predictions.state_dict(WEAK_PREFIX) if self._remembers_targets else {}
        if self._records_belief:
            tensors["label_belief"] = self.label_belief
            if self.base_label_belief is not None:
                tensors["base_label_belief"] = self.base_label_belief
        if self.stage1_predictions is not None:
            tensors.update(self.stage1_predictions.state_dict(STAGE1_PREDICTION_PREFIX))
            if self.base_predictions is not None:
                tensors.update(self.base_predictions.state_dict(BASE_PREDICTION_PREFIX))
        return tensors if self.stage1_counts is None else {"stage1_counts": self.stage1_counts, **tensors}

    def metadata(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "base_epoch": self.base_epoch,
            "search_done": self.search_done,
            "mixture": self.mixture.get_params() if self.stage == 2 else None,
            "fallback": self.fallback,
            "stage1_epochs_from_disk": self._stage1_epochs_from_disk,
            "stage_epochs": [self.stage1_epochs, self.stage2_epochs],
            "safeguards": list(self.safeguards),
            "views_identical": self.views_identical,
            "correction": self.correction,
            "stage1_schedule": self.stage1_schedule,
        }

    def load_state(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        self.stage = int(metadata["stage"])
        self.base_epoch = metadata["base_epoch"]
        self.search_done = bool(metadata["search_done"])
        self._stage1_epochs_from_disk = int(metadata["stage1_epochs_from_disk"])
        if "stage_epochs" in metadata:  # written since the stage-1 extension safeguard (hf_lnl 0.2)
            self.stage1_epochs, self.stage2_epochs = (int(e) for e in metadata["stage_epochs"])
        self.safeguards = list(metadata.get("safeguards", []))
        self.fallback = bool(metadata.get("fallback", False))
        self.views_identical = metadata.get("views_identical")  # written since ido_views (hf_lnl 0.3)
        self.correction = metadata.get("correction", self.args.ido_correction)  # resolved "auto" (hf_lnl 0.3)
        # Written since the stage-1 schedule follows the backbone; before, ido_stage1_constant_lr had no None (True).
        self.stage1_schedule = metadata.get("stage1_schedule", "stage" if self.args.ido_stage1_constant_lr is False
                                            else "constant")  # fmt: skip
        if "stage1_counts" in tensors:
            self.stage1_counts = tensors["stage1_counts"].to(self._device)
        if f"{WEAK_PREFIX}prediction" in tensors:  # written since the label correction (hf_lnl 0.3)
            self.weak_predictions.load_state_dict(tensors, WEAK_PREFIX)
        if self._records_belief and not self.fallback:
            if "label_belief" not in tensors:
                raise ValueError(
                    "The checkpoint's IDO run did not record the given labels' belief; resume with the "
                    f"ido_correction it was trained with, not {self.args.ido_correction!r}."
                )
            self.label_belief = tensors["label_belief"].to(self._device, torch.float32)
            if "base_label_belief" in tensors:
                self.base_label_belief = tensors["base_label_belief"].to(self._device, torch.float32)
        if self.stage1_predictions is not None and not self.fallback:
            self._load_predictions(tensors, "The checkpoint's IDO run")
        if metadata["mixture"] is not None:
            self.mixture.set_params_from(metadata["mixture"])
            table = torch.as_tensor(self.mixture.lookup_table(self.max_count), dtype=torch.float32)
            self.lookup = table.to(self._device)

    def save_extra(self, folder: str) -> None:
        if self.stage == 1 and self.base_state is not None:
            save_file({k: v.contiguous() for k, v in self.base_state.items()}, os.path.join(folder, BASE_MODEL_FILE))

    def load_extra(self, folder: str) -> None:
        path = os.path.join(folder, BASE_MODEL_FILE)
        if self.stage == 1 and self.base_epoch is not None:
            if not os.path.isfile(path):
                raise CheckpointStateError(f"The IDO base-model snapshot {path!r} is missing from the checkpoint.")
            self.base_state = load_file(path)

    # ------------------------------------------------------------------------------ finished stage 1
    def save_stage1(self, folder: str) -> None:
        """Save a finished stage 1 (counts, base model, training-set checksum) for `ido_stage1_dir`."""
        metadata = {"base_epoch": self.base_epoch, "stage1_epochs": self.stage1_epochs + self._stage1_epochs_from_disk}
        tensors = {} if self.base_label_belief is None else {"base_label_belief": self.base_label_belief}
        if self.base_predictions is not None:
            tensors.update(self.base_predictions.state_dict(BASE_PREDICTION_PREFIX))
        self.context.export_state(folder, tensors, metadata)
        save_file({k: v.contiguous() for k, v in self.base_state.items()}, os.path.join(folder, BASE_MODEL_FILE))

    def _load_stage1(self, folder: str) -> None:
        try:
            tensors, metadata = self.context.import_state(folder)
        except CheckpointStateError as error:
            raise ValueError(f"ido_stage1_dir does not match this training set: {error}") from error
        unwrap_model(self.context.model).load_state_dict(load_file(os.path.join(folder, BASE_MODEL_FILE)))
        self._stage1_epochs_from_disk = int(metadata["stage1_epochs"])
        self.base_epoch = metadata["base_epoch"]
        self.search_done = True
        self.stage1_counts = self.context.wrong_events.to(torch.int16).clone()
        if self._records_belief:
            if "base_label_belief" in tensors:
                self.base_label_belief = tensors["base_label_belief"].to(self._device, torch.float32)
            elif self.correction == "auto":
                logger.info(f"IDO: ido_stage1_dir {folder!r} has no label belief; stage 2 uses the entropy term.")
                self.correction = "entropy"
            else:
                raise ValueError(
                    f"ido_stage1_dir {folder!r} was saved by a stage 1 that did not record the given labels' belief: "
                    "ido_correction='base_belief' needs a stage 1 run with it (or choose another ido_correction)."
                )
        if self.stage1_predictions is not None:
            self._load_predictions(tensors, f"ido_stage1_dir {folder!r}", stage1=False)
        self.stage = 2
        self._refit(STAGE1_REFIT_ITERATIONS)
        self._resolve_correction(self.noise_scores())

    def _load_predictions(self, tensors: dict[str, torch.Tensor], source: str, stage1: bool = True) -> None:
        """Restore the predictions `ido_correction="base_prediction"` keeps: the latest stage-1 ones (`stage1`: from a
        checkpoint) and the base model's, which a stage-2 checkpoint and a finished stage 1 must have."""
        required = {STAGE1_PREDICTION_PREFIX: stage1, BASE_PREDICTION_PREFIX: not stage1 or self.stage == 2}
        if any(needed and f"{prefix}index" not in tensors for prefix, needed in required.items()):
            raise ValueError(
                f"{source} did not record the base model's predictions: ido_correction='base_prediction' needs a "
                "stage 1 run with it (resume or reuse with the ido_correction it was trained with)."
            )
        if stage1:
            self.stage1_predictions.load_state_dict(tensors, STAGE1_PREDICTION_PREFIX)
        if f"{BASE_PREDICTION_PREFIX}index" in tensors:  # taken at the base epoch, possibly still in stage 1
            self.base_predictions = self.stage1_predictions.copy()
            self.base_predictions.load_state_dict(tensors, BASE_PREDICTION_PREFIX)


def stage1_schedule(constant_lr: bool | None, model: nn.Module) -> str:
    """The stage-1 schedule `ido_stage1_constant_lr` asks for with this model: `"constant"` (True, or None with
    pretrained weights: a `name_or_path` from `from_pretrained`), `"run"` (None with a model built from a config: the
    config's schedule over the whole run, as a plain run) or `"stage"` (False: the config's schedule within stage 1).

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> model = BertForSequenceClassification(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
        ...                                                  intermediate_size=8))
        >>> stage1_schedule(None, model), stage1_schedule(True, model), stage1_schedule(False, model)
        ('run', 'constant', 'stage')
    """
    if constant_lr is None:
        return "constant" if getattr(model, "name_or_path", "") else "run"
    return "constant" if constant_lr else "stage"


def _fallback_loss(logits: torch.Tensor, labels: torch.Tensor, args: Any) -> torch.Tensor:
    if args.ido_fallback_loss == "gce":
        return gce_loss(logits, labels, args.gce_q)
    return F.cross_entropy(logits.float(), labels, reduction="none", ignore_index=IGNORE_INDEX)


def ido_loss(
    logits_weak: torch.Tensor,
    logits_strong: torch.Tensor,
    labels: torch.Tensor,
    stats: torch.Tensor,
    use_confidence: bool = True,
    pseudo_label_threshold: float | None = None,
    label_belief: torch.Tensor | None = None,
    teach_flagged: bool = True,
    soft_targets: torch.Tensor | None = None,
    belief_full_at: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IDO's stage-2 loss. Returns per-sample losses and the batch parts (`loss`, `ce`, `consistency`, and `entropy`
    or, with a `pseudo_label_threshold`, `correction` and `corrected`: the share of the batch pseudo-labelled).

    Args:
        logits_weak / logits_strong: (B, C) logits of the two views.
        labels: (B,) given labels; -100 samples contribute nothing.
        stats: (B, 4) mixture outputs `p_clean, p_noisy, cdf0, cdf1` (constants).
        use_confidence: Weight the entropy by the confidence `max_c q̄` (default) or not.
        pseudo_label_threshold: Label correction: replace the entropy term by `(1 - p_clean) CE(z_s, argmax z_w)` for
            the samples whose weak-view confidence is at least this (None: the paper's entropy term).
        label_belief: (B,) the base model's probability of each given label (`ido_correction="base_belief"`): a
            sample keeps `p_keep = p_clean + (1 - p_clean) belief` of its cross-entropy, and the flagged term takes
            `1 - p_keep` (None: `p_keep = p_clean`, the paper).
        teach_flagged: False drops the flagged term (`ido_correction="discard"`: a flagged sample only loses weight).
        belief_full_at: With `label_belief`, the belief from which a label is kept whole: `p_keep = p_clean +
            (1 - p_clean) min(1, belief / belief_full_at)` (1.0: in proportion to the belief).

    Example:
        >>> z = torch.zeros(2, 3)
        >>> per_sample, parts = ido_loss(z, z, torch.tensor([0, 1]), torch.tensor([[1.0, 0.0, 0.5, 0.5]] * 2))
        >>> round(float(parts["ce"]), 4)  # 2 * log 3 for a fully clean sample
        2.1972
    """
    keep = labels != IGNORE_INDEX
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    z_w, z_s = logits_weak.float(), logits_strong.float()
    p_clean, p_noisy, cdf0, cdf1 = stats.float().detach().unbind(dim=-1)
    ce = F.cross_entropy(z_w, safe, reduction="none") + F.cross_entropy(z_s, safe, reduction="none")
    weight = _flush_tiny(p_clean * cdf0 + (1.0 - p_noisy) * (1.0 - cdf1))
    consistency = (z_w - z_s).pow(2).mean(dim=-1)
    if label_belief is None:
        p_keep = p_clean
    else:
        kept_share = (label_belief.float().detach() / belief_full_at).clamp(max=1.0)
        p_keep = p_clean + (1.0 - p_clean) * kept_share
    p_keep = _flush_tiny(p_keep)
    parts_per_sample = {"ce": p_keep * ce, "consistency": weight * consistency}
    count = keep.float().sum().clamp_min(1.0)
    corrects = teach_flagged and pseudo_label_threshold is not None
    if teach_flagged and soft_targets is not None:
        targets = soft_targets.float().detach()
        soft_ce = -(targets * F.log_softmax(z_w, dim=-1)).sum(-1) - (targets * F.log_softmax(z_s, dim=-1)).sum(-1)
        parts_per_sample["base_prediction"] = (1.0 - p_keep) * soft_ce
    elif teach_flagged and not corrects:
        q_w = F.softmax(z_w, dim=-1).clamp(PROBABILITY_CLAMP, 1 - PROBABILITY_CLAMP)
        q_s = F.softmax(z_s, dim=-1).clamp(PROBABILITY_CLAMP, 1 - PROBABILITY_CLAMP)
        q_mean = (q_w + q_s) / 2
        entropy = -(q_mean * q_mean.log()).sum(dim=-1)
        if use_confidence:
            entropy = entropy * q_mean.max(dim=-1).values.detach()  # the confidence weights the term; no gradient
        parts_per_sample["entropy"] = (1.0 - p_keep) * entropy
    elif corrects:
        confidence, pseudo_label = F.softmax(z_w.detach(), dim=-1).max(dim=-1)
        correction, corrected = pseudo_label_loss(z_s, pseudo_label, confidence, 1.0 - p_keep, pseudo_label_threshold)
        parts_per_sample["correction"] = correction
    per_sample = sum(parts_per_sample.values()) * keep
    parts = {name: (value * keep).sum() / count for name, value in parts_per_sample.items()}
    if corrects:
        parts["corrected"] = (corrected * keep).sum().detach() / count
    parts["loss"] = per_sample.sum() / count
    return per_sample, parts


def ido_mixup_loss(
    logits_weak: torch.Tensor,
    logits_mixed: torch.Tensor,
    labels: torch.Tensor,
    p_clean: torch.Tensor,
    lam: float,
    partner: torch.Tensor,
    temperature: float = 0.5,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """IDO's stage-2 loss with `ido_correction="mixup"`: `p_clean CE(z_w, y) + CE(z_mix, lam t + (1 - lam) t[partner])`
    with the refined targets `t = sharpen(p_clean onehot(y) + (1 - p_clean) softmax(z_w), T)` (no gradient).
    Returns the per-sample losses, the batch parts (`loss`, `ce`, `mixup`) and the refined targets `t`.

    Args:
        logits_weak: (B, C) logits of the weak view.
        logits_mixed: (B, C) logits of the mixed view: sample i mixed `lam : 1 - lam` with sample `partner[i]`.
        labels: (B,) given labels; -100 samples contribute no loss (their target, the sharpened prediction, can
            still be a partner's).
        p_clean: (B,) the mixture's `p_clean` (a constant).
        lam / partner: the batch's mixup weight and partner of each sample.
        temperature: sharpening of the refined targets (`ido_mixup_temperature`).

    Example:
        >>> z, labels = torch.zeros(2, 2), torch.tensor([0, 1])
        >>> per_sample, parts, targets = ido_mixup_loss(z, z, labels, torch.ones(2), 1.0, torch.arange(2))
        >>> targets.argmax(-1).tolist(), round(float(parts["ce"]), 4)  # clean samples: their labels, CE = log 2
        ([0, 1], 0.6931)
    """
    keep = labels != IGNORE_INDEX
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    z_w, z_mix = logits_weak.float(), logits_mixed.float()
    p_keep = _flush_tiny(torch.where(keep, p_clean.float().detach(), torch.zeros_like(p_clean, dtype=torch.float)))
    onehot = F.one_hot(safe, z_w.shape[-1]).float()
    prediction = F.softmax(z_w.detach(), dim=-1)
    targets = sharpen(p_keep[:, None] * onehot + (1.0 - p_keep[:, None]) * prediction, temperature)
    mixed_targets = lam * targets + (1.0 - lam) * targets[partner]
    parts_per_sample = {
        "ce": p_keep * F.cross_entropy(z_w, safe, reduction="none"),
        "mixup": -(mixed_targets * F.log_softmax(z_mix, dim=-1)).sum(-1),
    }
    per_sample = sum(parts_per_sample.values()) * keep
    count = keep.float().sum().clamp_min(1.0)
    parts = {name: (value * keep).sum() / count for name, value in parts_per_sample.items()}
    parts["loss"] = per_sample.sum() / count
    return per_sample, parts, targets


def _flush_tiny(weights: torch.Tensor) -> torch.Tensor:
    """Weights below `MIN_SAMPLE_WEIGHT` set to zero: they change no float32 sum; their gradients would be subnormal.

    Example:
        >>> _flush_tiny(torch.tensor([1e-40, 1e-6, 0.5])).tolist()
        [0.0, 9.999999974752427e-07, 0.5]
    """
    return torch.where(weights < MIN_SAMPLE_WEIGHT, torch.zeros_like(weights), weights)


def _is_per_sample(value: Any, batch_size: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size


def _two_views(first: dict[str, Any], second: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """One batch of both views for a single forward: per-sample tensors stacked (`first`'s rows, then `second`'s),
    the rest (e.g. flags) as in `first`."""
    return {k: torch.cat([v, second[k]]) if _is_per_sample(v, batch_size) else v for k, v in first.items()}


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, choices))}.")


def _check_mask_token_id(mask_token_id: int | None, model_config: Any) -> None:
    vocab_size = getattr(model_config, "vocab_size", None)
    if mask_token_id is not None and isinstance(vocab_size, int) and mask_token_id >= vocab_size:
        raise ValueError(
            f"ido_mask_token_id={mask_token_id} lies outside the model's vocabulary (vocab_size={vocab_size}): set it "
            "to the tokenizer's mask token id, or leave it unset to take that from the tokenizer."
        )


def _text_masker(tokenizer: Any, args: Any, model_config: Any) -> TextMasker:
    if tokenizer is not None and hasattr(tokenizer, "all_special_ids"):
        return TextMasker.from_tokenizer(tokenizer, mask_rate=args.ido_mask_rate, mask_token_id=args.ido_mask_token_id)
    if args.ido_mask_token_id is None:
        raise ValueError(
            "lnl_method='ido' masks tokens for the strong text view: pass the tokenizer as `processing_class=` "
            "or set `ido_mask_token_id`."
        )
    special = [
        getattr(model_config, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id")
    ]
    return TextMasker(
        args.ido_mask_token_id, [s for s in special if s is not None], model_config.pad_token_id, args.ido_mask_rate
    )
