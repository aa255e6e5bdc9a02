"""CLID-MU: meta-learned sample weights without clean data (Hu et al., KDD 2025, arXiv 2507.11807).

A meta-weight network (Meta-Weight-Net, Shu et al., NeurIPS 2019) maps each sample's cross-entropy to a weight in
(0, 1). It is trained so that one virtual SGD step on the weighted loss lowers CLID (`hf_lnl.clid`) on a label-free
meta set drawn from the training data. Per optimiser step (every `clid_update_every` steps):

1. virtual step: `theta' = theta - lookahead_lr * grad(sum_i w~_i l_i)`, kept differentiable in the meta network;
2. meta step: `L_meta = CLID(features, logits)` of a meta batch under `theta'`; one step of the meta network only;
3. real step: the loss `sum_i w~_i l_i` with the updated weights (no gradient to the meta network), which the
   Trainer back-propagates, clips, accumulates and steps as usual.

`theta` is the head (`clid_scope="head"`, the cheap default: the backbone's features are shared, so a meta step
costs about one extra no-grad forward of the meta batch), the last `clid_last_k` blocks and everything after them
(`"last_k"`), or all trainable parameters (`"all"`). The look-ahead runs on the unwrapped module through
`torch.func.functional_call` with detached parameter copies (DDP has no double backward), beyond the head under the
MATH attention backend; the meta network's gradients are averaged across processes by hand.

The meta-gradient vanishes while the features entering the head are all alike (CLID's feature graph is then uniform),
as they are in a freshly initialised transformer: the weights then stay near their initial value. The method is
meant for pretrained backbones; the premise safeguard (`clid_premise_safeguard`, on by default) detects, at the
end of the cross-entropy warm-up, a model that has not learnt the labels it would trust and is still learning (a
network trained from scratch) and trains the rest of the run with plain cross-entropy.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..clid import clid
from ..correction import (
    PredictionMemory,
    believed_share,
    check_confidence_threshold,
    pseudo_label_loss,
    record_label_belief,
)
from ..data import IGNORE_INDEX
from ..distributed import all_reduce_mean_, gather_rows
from ..features import HeadFeatureCapture, find_classification_head, math_attention, sample_features, unwrap_model
from ..mixture import PREMISE_MAX_CLEAN_ERROR_RATE, ClassConditionalBetaMixture, clean_component_error_rate
from ..tracking import first_occurrence, flag_ordered_scores
from .base import Citation, LNLMethod, MethodOutput
from .registry import register_method

CLID_MU_CITATION = Citation(
    key="hu2025clidmu",
    title="CLID-MU: Cross-Layer Information Divergence Based Meta Update Strategy for Learning with Noisy Labels",
    authors=("Ruofan Hu", "Dongyu Zhang", "Huayi Zhang", "Elke Rundensteiner"),
    venue="KDD",
    booktitle="Proceedings of the 31st ACM SIGKDD Conference on Knowledge Discovery and Data Mining (KDD)",
    year=2025,
    eprint="2507.11807",
)
logger = logging.getLogger(__name__)

CLID_SCOPES = ("head", "last_k", "all")
META_OPTIMIZERS = ("adam", "sgd")
CLID_CORRECTIONS = ("none", "pseudo_label")  # clid_correction
DISPUTED_RESPONSES = ("belief", "stop")  # clid_disputed_response
NOISE_SCORES = ("wrong_events", "meta_weight")  # clid_noise_score
PREVIOUS_PREFIX = "previous_"  # state tensors of the previous visit's remembered predictions
WEIGHT_NORM_EPS = 1e-8  # w~ = w / (sum w + eps): a batch whose weights all vanish gives a zero loss, not NaN
# weight_contrast below which the weighting has not switched on: a sample of the meta weights' low group still weighs
# more than half as much as one of the high group, so the loss is close to (class-balanced) cross-entropy.
MIN_WEIGHT_CONTRAST = 0.5
# clid_disputed_safeguard: at the first epoch end from MIN_DECISION_EPOCH on (with a warm-up, from its end), the labels
# that IDO's stage-1 mixture (per class) flags on the wrong events counted so far are labels the model believes
# (disputed labels in real crowd noise, clean labels at low noise) rather than flips if the model still gave at least
# DISPUTED_BELIEVED_SHARE of them even odds at their last visit. The flags integrate every epoch's wrong events and the
# belief is one visit, as in IDO's ido_correction="auto" (a sample wrong early and learnt since is a label the model
# came to accept; a flip stays wrong); hence two epochs at least. Measured at the default warm-up's end (ablations
# README): flips 0-14.4% on 40% synthetic noise (Task A, B, B2 sym40 / asym40, seeds 0-2) but 20.3% on B2 asym40
# seed 1, where the "belief" response cost 4.6 points; believed labels 38-40% on Task R (seeds 0-2), 36-44% on Task A
# sym20 and 90% on sym0, where it gains. 30% lies in that gap (IDO's MIN_BELIEVED_SHARE, 20%, is read off another
# model: IDO's base model at the end of stage 1). Until hf_lnl 0.3 the flags were the meta weights of the same visit as
# the belief, so the share only read where the meta network cut the loss (Task R 0%).
DISPUTED_BELIEVED_SHARE = 0.30
MIN_DECISION_EPOCH = 2
# clid_premise_safeguard decides at the first epoch end from MIN_PREMISE_EPOCH on (with a longer warm-up, at its end):
# a fresh head is wrong on most samples during its first epoch whatever their labels, so with two epochs counted a
# clean sample learnt during the first has a wrong-event rate of 1/2, and the statistic reads a pretrained model at
# 60% noise like a network from scratch (Task A sym60 after epoch 2, seeds 0-2: 0.31 / 0.46 / 0.34; Task B after
# epoch 3: 0.36-0.50). After epoch 3 sym60 reads 0.31 / 0.42 / 0.33: no threshold on it alone separates the two.
MIN_PREMISE_EPOCH = 3
# ... so the safeguard also asks whether the model is still learning: it fires only when the last epoch also changed
# more than PREMISE_MIN_PREDICTION_CHANGE of the predictions (IDO's base-model signal). Measured where it decides
# (ablations README, "CLID-MU's premise safeguard with the prediction change"): a ViT from scratch (Task B, after
# epoch 3 of 8, seeds 0-2) 0.37-0.50; pretrained models settle sooner: Task A sym60 after epoch 3 0.12-0.13 (seeds
# 0-1, seed 1 being the run whose wrong-event statistic reads 0.42), Task B2 after epoch 10 of 30 0.12-0.19.
PREMISE_MIN_PREDICTION_CHANGE = 0.25
MIN_FLAGGED_SHARE = 0.01
# clid_warmup_epochs=None: the first third of the run is cross-entropy (whole epochs: 6 -> 2, 8 -> 3, 30 -> 10).
# Measured against no warm-up (ablations README, "CLID-MU with a third of the epochs as warm-up"): real crowd noise
# (Task R) +4 to +5 points, the pretrained ViT (Task B2) +2.2 to +2.8, a ViT from scratch (Task B) +2, Task A level
# at 40% and +0.7 / +2.1 at sym60 / inst40.
WARMUP_SHARE = 1 / 3


class MetaWeightNet(nn.Module):
    """Meta-Weight-Net (Shu et al., NeurIPS 2019): per-sample loss -> weight, an MLP 1 -> hidden -> 1 with ReLU
    then sigmoid. Initialised like `nn.Linear` from its own seeded generator (the same on every process; the
    global random state is not touched).

    Example:
        >>> net = MetaWeightNet(hidden_size=100, seed=0)
        >>> net(torch.tensor([0.1, 2.3])).shape
        torch.Size([2])
    """

    def __init__(self, hidden_size: int = 100, seed: int = 0):
        super().__init__()
        self.hidden = nn.utils.skip_init(nn.Linear, 1, hidden_size)
        self.out = nn.utils.skip_init(nn.Linear, hidden_size, 1)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in (self.hidden, self.out):
                bound = 1.0 / math.sqrt(layer.in_features)  # nn.Linear's default init range
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        """Weights in (0, 1), shape (n,), for per-sample losses of shape (n,)."""
        return torch.sigmoid(self.out(F.relu(self.hidden(losses[:, None])))).squeeze(1)


def draw_meta_set(num_samples: int, size: int, seed: int) -> np.ndarray:
    """Row positions of a label-free meta set: `min(size, num_samples)` distinct rows drawn at random (seeded).

    The rows keep the random order they are drawn in, so consecutive chunks of the set mix classes even when the
    training set is sorted by class.

    Example:
        >>> draw_meta_set(10, 4, seed=0)
        array([4, 6, 2, 7])
    """
    if num_samples < 1 or size < 1:
        raise ValueError(f"A meta set needs num_samples >= 1 and size >= 1, got {num_samples} and {size}.")
    return np.random.default_rng(seed).permutation(num_samples)[: min(size, num_samples)].astype(np.int64)


def warmup_epochs(args: Any) -> float | None:
    """CLID-MU's cross-entropy warm-up in epochs: `clid_warmup_epochs`, or by default a third of `num_train_epochs`
    in whole epochs; None when the run is set by `max_steps` (the warm-up is then its first third of the steps).

    Example:
        >>> from hf_lnl import NoisyLabelConfig
        >>> warmup_epochs(NoisyLabelConfig(output_dir="out", lnl_method="clid_mu", num_train_epochs=8))
        3.0
    """
    if args.clid_warmup_epochs is not None:
        return float(args.clid_warmup_epochs)
    if args.max_steps > 0:
        return None
    return default_warmup_epochs(args.num_train_epochs)


def default_warmup_epochs(num_train_epochs: float) -> float:
    """A third of `num_train_epochs`, in whole epochs: CLID-MU's default warm-up.

    Example:
        >>> [default_warmup_epochs(n) for n in (3, 6, 8, 30)]
        [1.0, 2.0, 3.0, 10.0]
    """
    return float(math.floor(num_train_epochs * WARMUP_SHARE + 0.5))


@register_method
class CLIDMU(LNLMethod):
    """`lnl_method="clid_mu"`: the loss weighted per sample by a meta network trained to lower CLID.

    Besides the wrong events, it keeps each sample's `meta_weight` (the meta network's raw output at the sample's
    last visit, so from the meta network of that moment) and reports it as a column.
    A sample is flagged where the posterior of the low-weight component of a two-component Gaussian mixture fitted to
    the meta weights, times how far that component's weights sit below the other's (`split_weights`: posterior x
    contrast), is above `noise_score_threshold`. The meta network is a function of the loss only, so this is a
    learned loss threshold read off the weights themselves, whatever range the sigmoid settles in; the contrast factor
    keeps a weighting that has not switched on from flagging anything (the mixture splits nearly equal weights in two
    all the same: at contrast 0.16 it would flag a third of the samples or more). Nothing is flagged while the weights
    spread less than 1% of the largest (e.g. at initialisation); samples never seen score 0. By default
    (`clid_noise_score="wrong_events"`) the report's `noise_score` keeps those flags and ranks each side of them by
    the wrong events counted over the run (`flag_ordered_scores`, as IDO's score): the weights order the flips
    coarsely within their group.

    Logs `clid_meta_loss`, `meta_weight_mean` and `meta_weight_std` with every training log; at each epoch end
    `meta_weight_contrast` (`weight_contrast`: 1 - the low-weight group's mean over the high group's; under 0.5 the
    loss is still close to cross-entropy, and the model card says so when training ends there) and, when the
    training set has clean labels, `meta_weight_clean` / `meta_weight_noisy`.

    Example:
        >>> args = NoisyLabelConfig(output_dir="out", lnl_method="clid_mu", clid_scope="head",
        ...                         num_train_epochs=3)  # doctest: +SKIP
        >>> trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=noisy_train)  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
        >>> trainer.noise_report()["meta_weight"]  # doctest: +SKIP
    """

    name = "clid_mu"
    title = "CLID-MU (cross-layer information divergence meta update)"
    description = (
        "A meta-weight network weights each sample's loss; it is trained without clean data by minimising the "
        "cross-layer information divergence between the classifier's features and its predictions after a "
        "look-ahead step. `noise_score` is derived from the sample's meta weight."
    )
    citation = CLID_MU_CITATION
    report_columns = ("meta_weight", "corrected_label", "correction_confidence")
    state_tensors = (
        "meta_weight", "meta_set_indices", "meta_net.*", "meta_optimizer.*", "previous_*", "noisy_probability",
        "label_belief",
    )  # fmt: skip
    config_fields = (
        "clid_scope", "clid_last_k", "clid_lookahead_lr", "clid_meta_lr", "clid_meta_optimizer",
        "clid_meta_weight_decay", "clid_meta_hidden_size", "clid_meta_set_size", "clid_meta_batch_size",
        "clid_update_every", "clid_temperature", "clid_head_module", "clid_class_balanced", "clid_warmup_epochs",
        "clid_correction", "clid_pseudo_label_threshold", "clid_premise_safeguard", "clid_disputed_safeguard",
        "clid_disputed_response", "clid_noise_score",
    )  # fmt: skip

    @classmethod
    def check_args(cls, args: Any) -> None:
        for name, value, choices in (
            ("clid_scope", args.clid_scope, CLID_SCOPES),
            ("clid_meta_optimizer", args.clid_meta_optimizer, META_OPTIMIZERS),
            ("clid_correction", args.clid_correction, CLID_CORRECTIONS),
            ("clid_disputed_response", args.clid_disputed_response, DISPUTED_RESPONSES),
            ("clid_noise_score", args.clid_noise_score, NOISE_SCORES),
        ):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, choices))}.")
        for name in ("clid_update_every", "clid_last_k", "clid_meta_hidden_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(args, name)}.")
        for name in ("clid_lookahead_lr", "clid_meta_lr"):  # a negative look-ahead step climbs the weighted loss
            if not 0.0 < getattr(args, name) < math.inf:
                raise ValueError(f"{name} must be a finite number above 0, got {getattr(args, name)}.")
        check_confidence_threshold("clid_pseudo_label_threshold", args.clid_pseudo_label_threshold)
        for name in ("clid_meta_weight_decay", "clid_warmup_epochs"):
            if getattr(args, name) is not None and not 0.0 <= getattr(args, name) < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(args, name)}.")
        if args.fp16:
            raise ValueError(
                "lnl_method='clid_mu' does not support fp16: its look-ahead takes second-order gradients that "
                "bypass the fp16 grad scaler. Use bf16=True or full precision."
            )

    def __init__(self, context: Any):
        super().__init__(context)
        self.meta_net: MetaWeightNet | None = None
        self.meta_optimizer: torch.optim.Optimizer | None = None
        self.meta_set_indices: np.ndarray | None = None
        self.meta_weight: torch.Tensor | None = None  # float16 (N + 1,), NaN = never seen; spare last slot
        self._head_name = ""  # the head's module path in the unwrapped model
        self._scope: list[str] = []  # look-ahead parameter names (relative to the head for scope "head")
        self._noisy: torch.Tensor | None = None  # label != clean label, when clean labels are known
        self._last_meta_step = -1
        self._num_classes = 0
        self.contrast: float | None = None  # weight_contrast() of the meta weights at the last epoch end
        self.previous_predictions: PredictionMemory | None = None  # label correction: the previous visit's prediction
        self.noisy_probability: torch.Tensor | None = None  # label correction: noise_score at the last epoch end
        self.label_belief: torch.Tensor | None = None  # disputed-label safeguard: p(given label) at the last visit
        self.believed_share: float | None = None  # ... measured once, at the first epoch end with enough flags
        self.disputed = False  # ... and the safeguard fired: clid_disputed_response from then on
        self.clean_error_rate: float | None = None  # premise safeguard: the trusted samples' wrong-event rate ...
        self.premise_failed = False  # ... above PREMISE_MAX_CLEAN_ERROR_RATE: cross-entropy from then on
        self._warmup_end_epoch: float | None = None  # the epoch of the first weighted step

    # ------------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        self._check_supported()
        args, model = self.args, self.context.model
        _, head = find_classification_head(model, args.clid_head_module)
        base = unwrap_model(model)
        self._head_name = next(name for name, module in base.named_modules() if module is head)
        self._scope = self._scope_parameter_names(base, head)
        labels = self.context.label_info.labels
        configured = getattr(getattr(base, "config", None), "num_labels", 0) or 0
        self._num_classes = max(int(labels.max(initial=0)) + 1, configured)
        self.meta_set_indices = draw_meta_set(len(labels), args.clid_meta_set_size, args.seed)
        self._prepare_meta_set()
        self.meta_net = MetaWeightNet(args.clid_meta_hidden_size, seed=args.seed).to(args.device)
        if args.clid_meta_optimizer == "adam":
            optimizer_class, extra = torch.optim.Adam, {}
        else:
            optimizer_class, extra = torch.optim.SGD, {"momentum": 0.0}  # the authors' SGD has no momentum
        self.meta_optimizer = optimizer_class(
            self.meta_net.parameters(), lr=args.clid_meta_lr, weight_decay=args.clid_meta_weight_decay, **extra
        )
        self.meta_weight = torch.full((len(labels) + 1,), float("nan"), dtype=torch.float16, device=args.device)
        clean = self.context.label_info.clean_labels  # for the logged meta_weight_clean / _noisy only
        self._noisy = None if clean is None else torch.from_numpy(clean != labels).to(args.device)
        self._last_meta_step = -1
        if self._corrects:
            self.previous_predictions = PredictionMemory(len(labels), args.device)
            self.noisy_probability = torch.zeros(len(labels), dtype=torch.float32, device=args.device)
        if args.clid_disputed_safeguard:
            self.label_belief = torch.zeros(len(labels), dtype=torch.float32, device=args.device)

    def _check_supported(self) -> None:
        if self.args.fp16 or any(p.dtype == torch.float16 for p in self.context.model.parameters()):
            raise ValueError(
                "lnl_method='clid_mu' does not support float16: its look-ahead takes second-order gradients that "
                "the fp16 grad scaler does not see. Load the model in float32 or bfloat16 (torch_dtype=...) and use "
                "bf16=True instead of fp16=True."
            )
        if self.context.parameters_are_sharded:
            raise ValueError(
                "lnl_method='clid_mu' cannot run under FSDP or DeepSpeed ZeRO-3: its look-ahead needs whole, "
                "unsharded parameters. Use DDP (or ZeRO-1/2), or another lnl_method."
            )

    def _scope_parameter_names(self, base: nn.Module, head: nn.Module) -> list[str]:
        """Trainable parameters of the look-ahead (names relative to the head for "head", else to `base`)."""
        scope = self.args.clid_scope
        if scope == "head":
            names = [name for name, p in head.named_parameters() if p.requires_grad]
        else:
            trainable = [name for name, p in base.named_parameters() if p.requires_grad]
            names = trainable if scope == "all" else _last_blocks(base, self.args.clid_last_k, trainable)
        if not names:
            raise ValueError(
                f"clid_scope={scope!r} selects no trainable parameter of {type(base).__name__} (the head "
                f"{self._head_name!r} may be frozen). Choose a scope that covers trainable parameters, e.g. "
                "clid_scope='all'."
            )
        return names

    def _prepare_meta_set(self) -> None:
        """The meta set's rows, as the training dataloader reads them (the Trainer's column removal)."""
        self._meta_dataset = self.context.training_rows(self.meta_set_indices)
        if len(self._meta_dataset) < 2:
            raise ValueError(
                "lnl_method='clid_mu' needs a meta set of at least 2 samples (CLID compares samples): raise "
                "clid_meta_set_size or use a larger training set."
            )

    # ---------------------------------------------------------------------------------------------- training
    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], sample_index: torch.Tensor | None, num_items_in_batch: Any
    ) -> MethodOutput:
        labels = inputs.pop("labels")
        base = unwrap_model(model)
        with HeadFeatureCapture(base, self._head_name) as capture:
            outputs = model(**inputs)
        features = sample_features(capture.features, inputs.get("attention_mask"))
        losses = F.cross_entropy(_upcast(outputs["logits"]), labels, reduction="none", ignore_index=IGNORE_INDEX)
        keep = labels != IGNORE_INDEX
        metrics: dict[str, torch.Tensor | float] = {}
        step = self.context.global_step
        updates = step % self.args.clid_update_every == 0 and step != self._last_meta_step  # once per optimiser step
        if updates and not self.weighting_off:  # a stopped weighting needs no meta network
            self._last_meta_step = step
            metrics["clid_meta_loss"] = self._meta_update(model, inputs, labels, features)
        with torch.no_grad():
            raw_weights = self._meta_weights(losses)
        warming_up = self._warming_up()
        if not warming_up and self._warmup_end_epoch is None:
            self._warmup_end_epoch = self.context.epoch or 0.0
        unweighted = warming_up or self.weighting_off
        weights = keep.to(raw_weights.dtype) if unweighted else raw_weights * keep
        if self.disputed and not unweighted and sample_index is not None:
            weights = self._believed_weights(weights, sample_index, keep)
        if self.label_belief is not None and self._disputed_undecided and sample_index is not None:
            record_label_belief(self.label_belief, sample_index, outputs["logits"], labels)
        loss = (self._normalise(weights, labels) * losses).sum()
        if self._corrects and sample_index is not None:
            loss = loss + self._correction(outputs["logits"], sample_index, keep, metrics)
        metrics.update(self._track(sample_index, raw_weights, keep))
        return MethodOutput(loss, outputs, (outputs["logits"],), labels, per_sample_loss=losses, metrics=metrics)

    @property
    def weighting_off(self) -> bool:
        """Whether a safeguard stopped the weighting: the premise safeguard, or the disputed-label safeguard with
        `clid_disputed_response="stop"`."""
        return self.premise_failed or (self.disputed and self.args.clid_disputed_response == "stop")

    def _believed_weights(self, weights: torch.Tensor, sample_index: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """`clid_disputed_response="belief"`: each sample's weight moves towards the batch's largest by the share of
        its label the model believed when the safeguard fired, `w + (max w - w) q_y` (a label the model accepted is
        trained on in full, one it rejected keeps its meta weight). Scale-free, as the normalised loss is."""
        belief = self.label_belief[sample_index.to(self.label_belief.device)].to(weights.device, weights.dtype)
        top = weights.max()
        return weights + (top - weights) * belief * keep  # an ignored label (weight 0) stays out

    @property
    def _corrects(self) -> bool:
        return self.args.clid_correction == "pseudo_label"

    def _correction(
        self, logits: torch.Tensor, sample_index: torch.Tensor, keep: torch.Tensor, metrics: dict[str, Any]
    ) -> torch.Tensor:
        """Label correction's share of the loss: each sample learns its previous visit's confident prediction in
        proportion to its noise score of the last epoch end; then this visit's predictions are remembered."""
        pseudo_labels, confidence = self.previous_predictions.lookup(sample_index)
        p_noisy = self.noisy_probability[sample_index.to(self.noisy_probability.device)].to(logits.device)
        threshold = self.args.clid_pseudo_label_threshold
        per_sample, corrected = pseudo_label_loss(logits, pseudo_labels, confidence, p_noisy, threshold)
        self.previous_predictions.update(sample_index, logits)
        count = keep.sum().clamp_min(1)
        correction = (per_sample * keep).sum() / count
        metrics["clid_correction"] = correction.detach()
        metrics["clid_corrected"] = (corrected * keep).sum().detach() / count
        return correction

    def corrected_labels(self) -> np.ndarray:
        """The label each flagged sample is taught (its previous visit's confident prediction), else the given one."""
        labels = np.asarray(self.context.label_info.labels)
        if not self._corrects:
            return labels.copy()
        flagged = self.noise_scores() > self.args.noise_score_threshold
        return self.previous_predictions.corrected_labels(labels, flagged, self.args.clid_pseudo_label_threshold)

    def lookahead_meta_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        labels: torch.Tensor,
        meta_inputs: dict[str, Any],
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """CLID of a meta batch after one virtual SGD step on the meta-weighted loss of a training batch.

        Differentiable with respect to the meta network's parameters (and nothing else).

        Args:
            model: The model being trained (wrappers are looked through).
            inputs: The training batch's model inputs (no labels, no sample index).
            labels: The training batch's labels (-100 = ignored).
            meta_inputs: A meta batch's model inputs.
            features: The training batch's head inputs from its real forward (scope "head" only; computed by a
                no-grad forward when omitted).

        Example:
            >>> meta_batch = trainer.method.meta_batch()  # doctest: +SKIP
            >>> meta_loss = trainer.method.lookahead_meta_loss(model, inputs, labels, meta_batch)  # doctest: +SKIP
            >>> torch.autograd.grad(meta_loss, list(trainer.method.meta_net.parameters()))  # doctest: +SKIP
        """
        base = unwrap_model(model)
        head_only = self.args.clid_scope == "head"
        # Second-order gradients through attention need the MATH kernel; the head-only look-ahead never enters it.
        with contextlib.nullcontext() if head_only else math_attention(), self.context.autocast():
            if head_only:
                head = base.get_submodule(self._head_name)
                params = dict(head.named_parameters())
                theta = {name: params[name].detach().requires_grad_() for name in self._scope}
                features = self._head_features(base, inputs) if features is None else features
                logits = functional_call(head, theta, (features.detach(),))
            else:
                frozen = {name: p.detach() for name, p in base.named_parameters()}
                theta = {name: frozen[name].detach().requires_grad_() for name in self._scope}
                buffers = {name: b.clone() for name, b in base.named_buffers()}  # a virtual step updates no stats
                logits = functional_call(base, {**frozen, **theta, **buffers}, kwargs=inputs)["logits"]
            losses = F.cross_entropy(_upcast(logits), labels, reduction="none", ignore_index=IGNORE_INDEX)
            weights = self._normalise(self._meta_weights(losses) * (labels != IGNORE_INDEX), labels)
            grads = torch.autograd.grad(
                (weights * losses).sum(), list(theta.values()), create_graph=True, allow_unused=True
            )
            step = self.args.clid_lookahead_lr
            lookahead = {name: p if g is None else p - step * g for (name, p), g in zip(theta.items(), grads)}
            was_training = base.training
            base.eval()  # the meta forward scores the virtual model as evaluation does: no dropout, no stat updates
            try:
                if head_only:
                    meta_features = self._head_features(base, meta_inputs)
                    meta_logits = functional_call(head, lookahead, (meta_features,))
                else:
                    with HeadFeatureCapture(base, self._head_name) as capture:
                        meta_logits = functional_call(base, {**frozen, **lookahead}, kwargs=meta_inputs)["logits"]
                    meta_features = sample_features(capture.features, meta_inputs.get("attention_mask"))
            finally:
                base.train(was_training)
        return clid(meta_features, meta_logits, self.args.clid_temperature)

    def meta_batch(self) -> dict[str, Any]:
        """A meta batch for this optimiser step, on the training device: `clid_meta_batch_size` distinct samples of
        the meta set, drawn from (seed, global step, process) so that a resumed run draws the same batches."""
        args = self.args
        rng = np.random.default_rng([args.seed, self.context.global_step, args.process_index])
        size = min(args.clid_meta_batch_size, len(self._meta_dataset))
        positions = rng.choice(len(self._meta_dataset), size, replace=False).tolist()
        fetch_rows = getattr(self._meta_dataset, "__getitems__", None)  # one batched read, as a DataLoader does
        rows = fetch_rows(positions) if fetch_rows else [self._meta_dataset[i] for i in positions]
        return self.context.collate(rows)

    def _meta_update(
        self, model: nn.Module, inputs: dict[str, Any], labels: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor:
        """One step of the meta network; returns the meta loss (CLID after the look-ahead), detached."""
        meta_loss = self.lookahead_meta_loss(model, inputs, labels, self.meta_batch(), features)
        params = list(self.meta_net.parameters())
        grads = torch.autograd.grad(meta_loss, params)
        flat = torch.cat([g.reshape(-1) for g in grads] + [meta_loss.detach().reshape(1)])
        all_reduce_mean_([flat])  # one collective: the meta gradients and the logged meta loss
        flat = torch.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)  # an overflowing look-ahead must not poison V
        for p, g in zip(params, flat[:-1].split([p.numel() for p in params])):
            p.grad = g.view_as(p)
        self.meta_optimizer.step()
        self.meta_optimizer.zero_grad(set_to_none=True)
        return meta_loss.detach()

    def _normalise(self, weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`w / Σ w` over the batch, or per labelled class with `clid_class_balanced` (each class keeps its share).

        Class-balanced: `w~_i = share_c * w_i / Σ_{j in c} w_j`, where `share_c` is the class's share of the batch. A
        class with a single sample in the batch would always get its whole share whatever its weight (the meta network
        could neither learn from it nor down-weight it), so such a sample is normalised by the batch's mean weight
        instead: `w~_i = share_c * w_i / mean(w) = w_i / Σ w`, the paper's normalisation (with one sample per class,
        the two coincide).
        """
        if not self.args.clid_class_balanced:
            return weights / (weights.sum() + WEIGHT_NORM_EPS)
        kept = (labels != IGNORE_INDEX).to(weights.dtype)
        weights, classes = weights * kept, labels.clamp_min(0)
        zeros = weights.new_zeros(self._num_classes)
        class_total = zeros.index_add(0, classes, weights)
        class_count = zeros.index_add(0, classes, kept)
        class_share = class_count / kept.sum().clamp_min(1)
        batch_mean = weights.sum() / kept.sum().clamp_min(1)
        denominator = torch.where(class_count[classes] > 1, class_total[classes], batch_mean)
        return weights / (denominator + WEIGHT_NORM_EPS) * class_share[classes]

    def _meta_weights(self, losses: torch.Tensor) -> torch.Tensor:
        """The meta network's raw weights for per-sample losses (outside autocast, in its own dtype)."""
        dtype = next(self.meta_net.parameters()).dtype
        with torch.autocast(device_type=losses.device.type, enabled=False):
            return self.meta_net(losses.detach().to(dtype))

    def _head_features(self, base: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """The head's input for a batch, from a no-grad forward."""
        with torch.no_grad(), HeadFeatureCapture(base, self._head_name) as capture:
            base(**inputs)
        return sample_features(capture.features, inputs.get("attention_mask"))

    def _track(
        self, sample_index: torch.Tensor | None, raw_weights: torch.Tensor, keep: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Store each sample's latest raw weight (identical on every process); returns the batch's statistics."""
        if sample_index is None:
            return {}
        index, weights, kept = gather_rows(sample_index, raw_weights, keep)
        index = index.to(self.meta_weight.device)
        fresh = kept.to(index.device) & first_occurrence(index)  # a repeated (padding) sample is written once
        target = torch.where(fresh, index, torch.full_like(index, len(self.meta_weight) - 1))
        self.meta_weight[target] = weights.to(device=index.device, dtype=self.meta_weight.dtype)
        count = kept.sum().clamp_min(1)
        mean = (weights * kept).sum() / count
        std = ((weights - mean).square() * kept).sum().div(count).sqrt()
        return {"meta_weight_mean": mean, "meta_weight_std": std}

    @property
    def decision_epoch(self) -> float:
        """The first epoch end at which the disputed-label safeguard may decide: the end of the cross-entropy
        warm-up when there is one (the beliefs it reads then come from a model the weighting has not shaped), and
        not before `MIN_DECISION_EPOCH` (its flags need two epochs of wrong events)."""
        epochs = warmup_epochs(self.args)
        if epochs is None:  # a third of max_steps: its end in epochs is known once it has passed
            epochs = math.inf if self._warmup_end_epoch is None else self._warmup_end_epoch
        return max(MIN_DECISION_EPOCH, math.ceil(epochs)) if math.isfinite(epochs) else math.inf

    @property
    def premise_epoch(self) -> float:
        """The epoch end at which the premise safeguard decides: `decision_epoch`, and not before
        `MIN_PREMISE_EPOCH` (a fresh head's first epoch is wrong on most samples, clean or not)."""
        return max(self.decision_epoch, MIN_PREMISE_EPOCH)

    def _warming_up(self) -> bool:
        """Whether this step is still the cross-entropy warm-up (`warmup_epochs`, or a third of `max_steps`)."""
        epochs = warmup_epochs(self.args)
        if epochs is None:
            return self.context.global_step < round(self.args.max_steps * WARMUP_SHARE)
        return (self.context.epoch or 0.0) < epochs

    @property
    def _disputed_undecided(self) -> bool:
        return self.believed_share is None and not self.premise_failed

    def _check_safeguards(self) -> dict[str, float]:
        """The premise safeguard (once, at `premise_epoch`) and the disputed-label safeguard (from `decision_epoch`
        on), on one fit of IDO's stage-1 mixture (per class) to the wrong events counted so far; the premise first."""
        epoch = round(self.context.epoch or 0)
        premise_due = (
            self.args.clid_premise_safeguard and self.clean_error_rate is None and epoch >= self.premise_epoch
        )
        disputed_due = self.label_belief is not None and self._disputed_undecided and epoch >= self.decision_epoch
        if not (premise_due or disputed_due):
            return {}
        counts, labels = self.context.counts(), self.context.label_info.labels
        mixture = ClassConditionalBetaMixture(self._num_classes).fit(counts, labels)
        logs = self._check_premise(mixture, epoch) if premise_due else {}
        if disputed_due and not self.premise_failed:
            logs.update(self._check_disputed(mixture.predict_stats(counts, labels)[:, 1], epoch))
        return logs

    def _check_premise(self, mixture: ClassConditionalBetaMixture, epoch: int) -> dict[str, float]:
        """The premise safeguard: CLID-MU down-weights the samples a model has not learnt, which presumes a model that
        has learnt the clean ones (a pretrained backbone). If the samples the wrong-event mixture would trust were
        still predicted wrongly in more than `PREMISE_MAX_CLEAN_ERROR_RATE` of the epochs so far (IDO's premise
        statistic) and the last epoch still changed more than `PREMISE_MIN_PREDICTION_CHANGE` of the predictions
        (the model is still learning, not settled on what it has learnt), it has not, and the rest of the run is
        plain cross-entropy on every label."""
        self.clean_error_rate = clean_component_error_rate(mixture)
        changes = self.context.prediction_changes
        change_share = changes[-1] / max(len(self.context.label_info.labels), 1) if changes else 0.0
        logs = {"clid_clean_component_error_rate": self.clean_error_rate, "clid_prediction_change_share": change_share}
        if self.clean_error_rate <= PREMISE_MAX_CLEAN_ERROR_RATE or change_share <= PREMISE_MIN_PREDICTION_CHANGE:
            return logs
        self.premise_failed = True
        note = (
            f"after epoch {epoch} the samples its wrong-event mixture would trust were still predicted wrongly in "
            f"{self.clean_error_rate:.0%} of the epochs (above {PREMISE_MAX_CLEAN_ERROR_RATE:.0%}) and the last epoch "
            f"changed {change_share:.0%} of the predictions (above {PREMISE_MIN_PREDICTION_CHANGE:.0%}), so the model "
            "had not learnt them and was still learning (typical of a network trained from scratch), and the rest of "
            "the run trained with plain cross-entropy on every label (clid_premise_safeguard)"
        )
        self.safeguards.append(note)
        logger.warning(f"CLID-MU safeguard: {note}.")
        return logs

    def _check_disputed(self, p_noisy: np.ndarray, epoch: int) -> dict[str, float]:
        """The disputed-label safeguard, at the first epoch end from `decision_epoch` on whose wrong-event mixture
        flags enough samples (`p_noisy`)."""
        flagged_share = float((p_noisy > 0.5).mean())
        if flagged_share < MIN_FLAGGED_SHARE:
            return {}
        share = believed_share(p_noisy, self.label_belief.cpu().numpy())
        self.believed_share = share
        if share >= DISPUTED_BELIEVED_SHARE:
            self.disputed = True
            response = (
                "the rest of the run trained on every label (clid_disputed_response='stop')"
                if self.weighting_off
                else "from then on each sample's weight rose towards the batch's largest by the probability the model "
                "gave its label then (clid_disputed_response='belief')"
            )
            note = (
                f"after epoch {epoch} the model still gave {share:.0%} of the labels its wrong events flag at least "
                f"even odds (at least {DISPUTED_BELIEVED_SHARE:.0%}), so they look like disputed labels rather than "
                f"flips, and {response} (clid_disputed_safeguard)"
            )
            self.safeguards.append(note)
            logger.warning(f"CLID-MU safeguard: {note}.")
        return {"clid_believed_share": share, "clid_flagged_share": flagged_share}

    # ------------------------------------------------------------------------------------------------ epochs
    def on_epoch_end(self) -> dict[str, float]:
        """Mean meta weight of the clean and of the mislabelled samples (when clean labels are known)."""
        weights = self.meta_weight[:-1].float()
        seen = ~torch.isnan(weights)
        posterior, contrast = split_weights(weights.cpu().numpy())  # one mixture fit for both uses below
        self.contrast = None if math.isnan(contrast) else contrast
        scores = _noise_scores(posterior, contrast)
        if self._corrects:  # the next epoch's correction strength per sample: its noise score
            self.noisy_probability = torch.as_tensor(scores, dtype=torch.float32).to(self.noisy_probability.device)
        logs = {} if self.contrast is None else {"meta_weight_contrast": self.contrast}
        logs.update(self._check_safeguards())
        if self._noisy is None:
            return logs
        for name, members in (("meta_weight_clean", seen & ~self._noisy), ("meta_weight_noisy", seen & self._noisy)):
            if bool(members.any()):
                logs[name] = float(weights[members].mean())
        return logs

    # ------------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        tensors = {
            "meta_weight": self.meta_weight[:-1],
            "meta_set_indices": torch.from_numpy(self.meta_set_indices),
        }
        tensors.update({f"meta_net.{name}": p.detach() for name, p in self.meta_net.named_parameters()})
        if self._corrects:
            tensors.update(self.previous_predictions.state_dict(PREVIOUS_PREFIX))
            tensors["noisy_probability"] = self.noisy_probability
        if self.label_belief is not None:
            tensors["label_belief"] = self.label_belief
        for param_id, state in self.meta_optimizer.state_dict()["state"].items():
            for key, value in state.items():
                if value is not None:
                    tensors[f"meta_optimizer.{param_id}.{key}"] = torch.as_tensor(value)
        return tensors

    def metadata(self) -> dict[str, Any]:
        return {
            "meta_hidden_size": self.args.clid_meta_hidden_size,
            "meta_optimizer": self.args.clid_meta_optimizer,
            "scope": self.args.clid_scope,
            "contrast": self.contrast,
            "believed_share": self.believed_share,
            "disputed": self.disputed,
            "clean_error_rate": self.clean_error_rate,
            "premise_failed": self.premise_failed,
            "safeguards": list(self.safeguards),
            "warmup_end_epoch": self._warmup_end_epoch,
        }

    def card_notes(self) -> list[str]:
        notes = [f"CLID-MU safeguard fired: {note}." for note in self.safeguards]
        epochs = warmup_epochs(self.args)
        if epochs is None or epochs > 0:
            length = "the first third of the steps" if epochs is None else f"the first {epochs:g} epoch(s)"
            notes.append(
                f"CLID-MU trained {length} with plain cross-entropy while its meta network learnt, then weighted "
                "each sample's loss (clid_warmup_epochs; by default a third of the run, 0 is the paper's CLID-MU)."
            )
        if self.weighting_off or self.contrast is None or self.contrast >= MIN_WEIGHT_CONTRAST:
            return notes
        return notes + [
            f"CLID-MU's weighting had not switched on when this card was written: at the last epoch end its "
            f"low-weight samples still weighed {1 - self.contrast:.0%} of what its high-weight samples did "
            f"(meta_weight_contrast {self.contrast:.2f}, under {MIN_WEIGHT_CONTRAST:g}), so the loss was close to "
            f"class-balanced cross-entropy, and the noise report's scores, scaled by that contrast, stay under "
            f"{self.contrast:.2f}: its flags say little about which labels are wrong."
        ]

    def load_state(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        saved = (metadata.get("meta_hidden_size"), metadata.get("meta_optimizer"))
        if saved != (self.args.clid_meta_hidden_size, self.args.clid_meta_optimizer):
            raise ValueError(
                f"The checkpoint's CLID-MU meta network has clid_meta_hidden_size={saved[0]} and "
                f"clid_meta_optimizer={saved[1]!r}; resume with the same settings."
            )
        if metadata.get("scope", self.args.clid_scope) != self.args.clid_scope:  # its meta network learnt that scope
            raise ValueError(
                f"The checkpoint's CLID-MU run used clid_scope={metadata['scope']!r}, this run clid_scope="
                f"{self.args.clid_scope!r}; resume with clid_scope={metadata['scope']!r}."
            )
        self.meta_weight[:-1] = tensors["meta_weight"].to(self.meta_weight.device, self.meta_weight.dtype)
        self.contrast = metadata.get("contrast")  # written since meta_weight_contrast (hf_lnl 0.3)
        self.believed_share = metadata.get("believed_share")  # written since clid_disputed_safeguard (hf_lnl 0.3)
        self.disputed = bool(metadata.get("disputed", metadata.get("weighting_off", False)))  # was "weighting_off"
        self.clean_error_rate = metadata.get("clean_error_rate")  # written since clid_premise_safeguard (hf_lnl 0.3)
        self.premise_failed = bool(metadata.get("premise_failed", False))
        self.safeguards = list(metadata.get("safeguards", []))
        self._warmup_end_epoch = metadata.get("warmup_end_epoch")  # written since hf_lnl 0.3 (matters under max_steps)
        if self.label_belief is not None:
            if "label_belief" not in tensors:
                raise ValueError(
                    "The checkpoint's CLID-MU run did not record the labels' belief; resume with "
                    "clid_disputed_safeguard=False."
                )
            self.label_belief = tensors["label_belief"].to(self.label_belief.device, torch.float32)
        if self._corrects:
            if "noisy_probability" not in tensors:
                raise ValueError(
                    "The checkpoint's CLID-MU run had no label correction; resume with clid_correction='none'."
                )
            self.previous_predictions.load_state_dict(tensors, PREVIOUS_PREFIX)
            self.noisy_probability = tensors["noisy_probability"].to(self.noisy_probability.device, torch.float32)
        self.meta_set_indices = tensors["meta_set_indices"].numpy().astype(np.int64)
        self._prepare_meta_set()
        with torch.no_grad():
            for name, p in self.meta_net.named_parameters():
                p.copy_(tensors[f"meta_net.{name}"])
        optimizer_state = self.meta_optimizer.state_dict()
        optimizer_state["state"] = {}
        for key, value in tensors.items():
            if key.startswith("meta_optimizer."):
                _, param_id, name = key.split(".", 2)
                optimizer_state["state"].setdefault(int(param_id), {})[name] = value
        self.meta_optimizer.load_state_dict(optimizer_state)

    # ------------------------------------------------------------------------------------------------ report
    def noise_scores(self) -> np.ndarray:
        """The meta weights decide: a sample is flagged where the low-weight posterior of its meta weight times the
        weights' contrast (`split_weights`) is above `noise_score_threshold`. With `clid_noise_score="wrong_events"`
        each side of that decision is ranked by the wrong events counted over the run (`flag_ordered_scores`, as IDO's
        score); with `"meta_weight"` the score is that product itself."""
        scores = meta_weight_noise_scores(self.meta_weight[:-1].float().cpu().numpy())
        if self.args.clid_noise_score == "meta_weight":
            return scores
        threshold = self.args.noise_score_threshold
        return flag_ordered_scores(scores > threshold, self.context.counts(), self.max_wrong_events(), threshold)

    def report_values(self) -> dict[str, np.ndarray]:
        columns = {"meta_weight": self.meta_weight[:-1].float().cpu().numpy()}
        if self._corrects:
            columns.update(
                corrected_label=self.corrected_labels(),
                correction_confidence=self.previous_predictions.confidence.cpu().numpy().astype(np.float32),
            )
        return columns


def split_weights(
    weights: np.ndarray, min_relative_spread: float = 0.01, max_fit_samples: int = 100_000, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Split the meta weights in two with a two-component Gaussian mixture.

    Returns, per sample, the posterior of the lower-mean component, and the contrast `1 - mu_low / mu_high` (0: one
    weight for all, the loss is cross-entropy; near 1: the low group is switched off). NaN (never seen) weights score
    0 and are left out of the fit (at most `max_fit_samples` of them, a seeded draw). Fewer than two seen: all 0 and
    a NaN contrast; weights spanning less than `min_relative_spread` of the largest: all 0 and contrast 0.

    Example:
        >>> posterior, contrast = split_weights(np.array([0.9, 0.85, 0.88, 0.05, 0.08, np.nan]))
        >>> posterior.round(2), round(contrast, 2)
        (array([0., 0., 0., 1., 1., 0.]), 0.93)
    """
    from sklearn.mixture import GaussianMixture

    weights = np.asarray(weights, dtype=np.float64)
    posterior = np.zeros_like(weights)
    seen = ~np.isnan(weights)
    values = weights[seen]
    if values.size < 2:
        return posterior, float("nan")
    if values.max() - values.min() <= min_relative_spread * abs(values.max()):
        return posterior, 0.0
    # Only the weights' ratios matter (they are normalised before they weigh a loss), and the meta network's sigmoid
    # can sit anywhere from 1 to 1e-7: fit on the weights over the largest, so that the mixture's variance floor
    # (reg_covar) is relative too and cannot swallow a split between 1e-7 and 1e-5.
    values = values / np.abs(values).max()
    fitted = values
    if values.size > max_fit_samples:
        fitted = np.random.default_rng(seed).choice(values, max_fit_samples, replace=False)
    mixture = GaussianMixture(n_components=2, reg_covar=1e-6, random_state=seed).fit(fitted[:, None])
    means = mixture.means_.ravel()
    low, high = int(np.argmin(means)), int(np.argmax(means))
    posterior[seen] = mixture.predict_proba(values[:, None])[:, low]
    contrast = float(1.0 - means[low] / means[high]) if means[high] > 0 else 0.0
    return posterior, contrast


def weight_contrast(weights: np.ndarray, seed: int = 0) -> float:
    """How far the meta weights have split: `split_weights`' contrast.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> round(weight_contrast(np.concatenate([rng.normal(0.9, 0.02, 50), rng.normal(0.05, 0.01, 50)])), 2)
        0.94
        >>> weight_contrast(rng.normal(0.5, 0.02, 100)) < 0.1  # one group: any split of it is a small contrast
        True
    """
    return split_weights(weights, seed=seed)[1]


def meta_weight_noise_scores(weights: np.ndarray) -> np.ndarray:
    """CLID-MU's noise score from the meta weights alone: the low-weight posterior of `split_weights` times the
    weights' contrast (a NaN weight, never seen, scores 0).

    Example:
        >>> meta_weight_noise_scores(np.array([0.9, 0.85, 0.88, 0.05, 0.08, np.nan])).round(2)
        array([0.  , 0.  , 0.  , 0.93, 0.93, 0.  ])
    """
    return _noise_scores(*split_weights(weights))


def _noise_scores(posterior: np.ndarray, contrast: float) -> np.ndarray:
    """`noise_score` from `split_weights`' output: the low-weight posterior times the contrast (0 when undefined)."""
    return posterior * (0.0 if math.isnan(contrast) else contrast)


def _last_blocks(model: nn.Module, k: int, trainable: list[str]) -> list[str]:
    """Trainable parameters of the last `k` blocks of the model's block list and of everything registered after it.

    The block list is the longest `nn.ModuleList` not nested in another one (so not a list of experts inside a
    block); on a tie the later one (a decoder after its encoder).
    """
    lists: list[tuple[int, int, str]] = []
    for order, (name, module) in enumerate(model.named_modules()):
        nested = any(name.startswith(f"{outer}.") for _, _, outer in lists)
        if isinstance(module, nn.ModuleList) and len(module) and not nested:
            lists.append((len(module), order, name))
    if not lists:
        raise ValueError(
            f"clid_scope='last_k' found no list of blocks (nn.ModuleList) in {type(model).__name__}. "
            "Use clid_scope='head' or 'all'."
        )
    blocks, _, list_name = max(lists)
    kept = tuple(f"{list_name}.{i}." for i in range(max(blocks - k, 0), blocks))
    names = [name for name, _ in model.named_parameters()]
    end = max(i for i, name in enumerate(names) if name.startswith(f"{list_name}."))
    after = set(names[end + 1 :])
    return [name for name in trainable if name.startswith(kept) or name in after]


def _upcast(tensor: torch.Tensor) -> torch.Tensor:
    """At least float32 (CE and CLID are computed in float32 even under bf16)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))
