"""`NoisyLabelConfig`: every hf_lnl knob, as `TrainingArguments` fields (so CLI flags and YAML keys come free)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from transformers import TrainingArguments

from .methods import METHOD_NAMES, get_method
from .methods.clid_mu import CLID_CORRECTIONS, CLID_SCOPES, DISPUTED_RESPONSES, META_OPTIMIZERS, NOISE_SCORES
from .methods.ido import CORRECTIONS, ENTROPY_TERMS, FALLBACK_LOSSES, MIXTURES, VIEWS

LABEL_FREE_METRICS = ("clid", "eval_clid")  # metric_for_best_model values that select without clean labels


@dataclass
class NoisyLabelConfig(TrainingArguments):
    """Configuration for [`NoisyLabelTrainer`]: `TrainingArguments` plus the learning-with-noisy-labels settings.

    Parameters that choose the method:
        lnl_method: A registered method: `"none"` (plain cross-entropy, with wrong-event tracking and a noise
            report), `"ido"`, `"clid_mu"`, `"gce"`, `"sce"`, or one registered with `hf_lnl.register_method`.
        lnl_method_kwargs: Settings of a method registered outside hf_lnl (its `settings_class`): a mapping in YAML,
            a JSON object on the command line (`--lnl_method_kwargs '{"beta": 0.8}'`).
        sample_index_column: Per-sample id column (row position in the training set); added when missing.
        label_column: Label column of the training set; `None` picks `label`, then `labels`.
        clean_label_column: Column with the true labels, when known (synthetic noise): used for metrics only.
        noise_score_threshold: A sample with `noise_score` above it counts as flagged in the detection metrics.

    Parameters of IDO (Zhang et al., NeurIPS 2025):
        ido_stage1_epochs / ido_stage2_epochs: Stage lengths; by default a third of `num_train_epochs` (at least
            2) for stage 1 and the rest for stage 2. If both are given they must sum to `num_train_epochs`.
        ido_mixture: `"per_class"` beta mixtures (default, falls back to the global one for small classes) or
            `"global"`.
        ido_entropy: `"confidence"` (per-sample `conf * H`, default) or `"plain"` (entropy without confidence).
        ido_stage1_dir: A finished stage 1 saved by an earlier run; the run is then stage 2 only
            (`num_train_epochs` is stage 2's length).
        ido_mask_rate / ido_mask_token_id: Text strong view: share of tokens replaced by the mask token, and an
            override for the tokenizer's mask id.
        ido_randaugment_magnitude: Image strong view: the magnitude of its two RandAugment operations on kornia's
            0-30 scale (10 by default; the authors draw each operation with probability 0.5 at a random magnitude
            below 5 of 10, a weaker view).
        ido_stage1_constant_lr: Stage 1's learning-rate schedule. `None` (default): the authors' choice by backbone
            (their `stage_1.py`), the config's rate constant for a pretrained model (one whose weights came from
            `from_pretrained`: its `name_or_path` is set; the base model is trained further, which is what wins on
            real crowd noise), and for a model built from a config (trained from scratch) the run's own schedule, as
            a plain run of all the epochs would have it, so that when the premise safeguard fires the run goes on
            as exactly that plain run. `True`: constant for every model (hf_lnl 0.3's default). `False`: the
            config's schedule within stage 1's own epochs (e.g. warm-up and linear decay to 0). Stage 2 always has
            the config's schedule over its own epochs.
        ido_stage2_learning_rate: Stage 2's peak learning rate (`None`, the default: `learning_rate`). Stage 2 restarts
            its optimiser and schedule; with a value, every parameter group's rate is scaled by
            `ido_stage2_learning_rate / learning_rate` (stage 1 and the premise fallback keep `learning_rate`). On
            Task A (MiniLM-L6, 4 stage-2 epochs at 5e-5) twice the rate with `ido_correction="pseudo_label"` was
            measured above IDO's default (benchmarks/results/ablations/README.md, "IDO's stage 2 at twice the
            learning rate").
        ido_extend_stage1: Safeguard for a base model still learning at the planned end of stage 1 (e.g. a network
            trained from scratch): while the last epoch changed fewer predictions than the one before, stage 1 goes on
            for one more epoch (taken from stage 2, which keeps at least one). Logged and named in the model card when
            it fires. Needs a stage-1 schedule that has not decayed to 0 (not `ido_stage1_constant_lr=False`).
        ido_lookup_after_counting: Stage 2 looks each sample's mixture statistics up after adding the current
            batch's wrong events, as the authors' code does (default False: before, one visit of lag).
        ido_correction: What stage 2 teaches a sample in proportion to its `p_noisy`: `"auto"` (default:
            `"base_belief"` when the base model still gives at least 20% of the flagged labels even odds or better,
            as on real crowd noise, else `"mixup"` for images and `"entropy"` for text; decided as stage 2 starts,
            logged as `ido_believed_share`, named in the model card unless it is `"entropy"`), `"entropy"` (the
            paper: the confidence-weighted entropy of its own prediction), `"pseudo_label"` (label correction:
            cross-entropy of the strong view against the weak view's prediction when that is at least
            `ido_pseudo_label_threshold` confident, as FixMatch; the corrected label and its confidence go into the
            noise report),
            `"base_belief"` (the entropy term, but a flagged sample keeps the share of its given label that the base
            model believed: its cross-entropy weighs `p_clean + (1 - p_clean) q_y`, where `q_y` is the stage-1
            model's probability of the given label at the base epoch; ambiguous labels stay partly taught, confident
            disagreements are dropped), `"base_prediction"` (soft-label correction: a flagged sample learns, on both
            views and in proportion to `p_noisy`, the distribution the base model predicted for it at the base epoch,
            instead of the entropy term; its most probable class is the report's corrected label), `"discard"` (no
            target: a flagged sample only loses weight) or `"mixup"` (label refinement on a mixed view: the strong view
            becomes a within-batch mixup of the inputs, word embeddings for text, taught the mixed refined targets
            `sharpen(p_clean onehot(y) + (1 - p_clean) softmax(z_weak))`, while the weak view keeps `p_clean` of its
            cross-entropy; the refined target's most probable class is the report's corrected label; two forwards
            per stage-2 step also for a model without dropout).
        ido_mixup_alpha / ido_mixup_temperature: With `"mixup"`, the mixing weight's `Beta(a, a)` (default 1: uniform,
            folded onto [1/2, 1]) and the sharpening temperature of the refined targets (default 0.5, MixMatch's).
        ido_belief_full_at: With `"base_belief"`, the base model's probability of a label from which the label is kept
            whole: a sample's cross-entropy weighs `p_clean + (1 - p_clean) min(1, q_y / ido_belief_full_at)`
            (default 1.0: in proportion to `q_y`; 0.5 keeps whole every label the base model gave even odds).
        ido_pseudo_label_threshold: Smallest weak-view confidence that makes a pseudo-label (`0` corrects every
            flagged sample, as dynamic hard bootstrapping).
        ido_views: `"dropout"` (both views are the inputs as given, so stage 1 trains on them and the two stage-2
            forwards differ by dropout only, the consistency term being R-Drop's; a model without dropout runs one
            forward for both; no processor or mask token needed), `"augmented"` (the paper: weak = crop + flip for
            images, the text as it is; strong = weak + RandAugment + cutout, or 15% of the tokens masked) or `"auto"`
            (default: `"dropout"` for images and for texts whose median length is under 48 tokens, `"augmented"` for
            longer texts). Chosen by measurement: on a pretrained ViT (Task B2) the augmentations cost IDO 8 points at
            sym40 and 6 at asym40; on Task A's 64-token news excerpts token masking gains 0.4 (sym40) and 2.1
            (asym40), on Task R's 34-token tweets it costs 1.1 (benchmarks/results/ablations/README.md, "IDO's
            views").
        ido_premise_safeguard: Check IDO's premise at the end of stage 1: when the samples the mixture would trust
            were still predicted wrongly in more than a third of the stage-1 epochs (the base model has not learnt
            them, e.g. a network trained from scratch), stage 2 trains with `ido_fallback_loss`
            (`"cross_entropy"` by default, or `"gce"` with `gce_q`) on the unaugmented inputs instead of IDO's
            weighted loss. On by default; logged and named in the model card when it fires. A fallback after a
            stage 1 on the run's schedule (a model trained from scratch, see `ido_stage1_constant_lr`) keeps the
            optimiser and that schedule, so the whole run is the plain run; otherwise stage 2 restarts them.

    Parameters of CLID-MU (Hu et al., KDD 2025):
        clid_scope: Parameters of the look-ahead: `"head"`, `"last_k"` (the last `clid_last_k` blocks + head) or
            `"all"` trainable parameters.
        clid_lookahead_lr: Step size of the virtual SGD step (its own setting: at fine-tuning learning rates a
            look-ahead barely moves the weights and the meta-gradient vanishes).
        clid_meta_lr / clid_meta_optimizer / clid_meta_weight_decay: The meta-weight network's optimiser.
        clid_meta_set_size / clid_meta_batch_size: Label-free meta set drawn from the training data.
        clid_update_every: Meta update every k optimiser steps.
        clid_temperature: Temperature of the feature graph.
        clid_head_module: Name of the classification head for architectures hf_lnl does not recognise.
        clid_class_balanced: Normalise the weights within each (given) class of a batch, so that each class keeps
            its share of the batch's loss and the meta network only moves weight between samples of one class
            (a loss-only weighting can otherwise starve a class the model has not learnt yet: every sample of it
            has a high loss; measured on BBC News at 40% asymmetric noise: 95.3% test accuracy after epoch 2 with
            it, 57.3% without). `False` gives the paper's `w / Σ w` over the whole batch. Either way the batch is
            what one process sees in one forward (a micro-batch under gradient accumulation or DDP).
        clid_warmup_epochs: Epochs at the start whose real step is unweighted cross-entropy; the meta network is
            trained from the first step all the same. Default None: a third of `num_train_epochs` in whole epochs
            (6 -> 2, 8 -> 3; with `max_steps`, its first third), measured better than none on real crowd noise, a
            pretrained ViT and a ViT from scratch and level on BBC News; `0` is the paper's CLID-MU.
        clid_correction: `"none"` (the paper: a flagged sample keeps only its small weight) or `"pseudo_label"`
            (label correction: a sample also learns, in proportion to its `noise_score` of the last epoch end, the
            prediction the model made at its previous visit when that was at least `clid_pseudo_label_threshold`
            confident; the corrected label and its confidence go into the noise report).
        clid_pseudo_label_threshold: Smallest confidence of the previous visit's prediction that makes a pseudo-label.
        clid_premise_safeguard: At the end of the warm-up, and not before epoch 3 (a fresh head's first epoch is
            wrong on most samples), fit IDO's stage-1 beta mixture (per class) to the wrong events counted so far;
            when the samples it would trust were predicted wrongly in more than a third of the epochs
            (`clid_clean_component_error_rate`, logged; IDO's premise statistic) and the last epoch still changed
            more than a quarter of the predictions (`clid_prediction_change_share`, logged), the model has not learnt
            the clean labels yet and is still learning (a network trained from scratch), and down-weighting what it
            has not learnt would discard them, so the rest of the run is plain cross-entropy on every label. Logged
            and named in the model card when it fires. On by default since hf_lnl 0.3: on a ViT trained from scratch
            (Task B) it brings CLID-MU to plain training's level, and it fires on no pretrained run measured (a
            pretrained model at 60% noise can read like one from scratch on the first statistic, but its
            predictions have settled: benchmarks/results/ablations/README.md, "CLID-MU's premise safeguard with the
            prediction change").
        clid_disputed_safeguard: At the first epoch end from epoch 2 on (from the end of the warm-up, when there is
            one: the beliefs then come from cross-entropy training), fit IDO's stage-1 beta mixture (per class) to the
            wrong events counted so far and measure the share of the labels it flags (`clid_flagged_share`, logged)
            that the model still gave even odds or better at their last visit (`clid_believed_share`, logged); at
            30% or more they look like labels the model believes (disputed crowd labels: wrong early, accepted since;
            or clean labels at low noise) rather than flips, and the rest of the run responds as
            `clid_disputed_response` says. Logged and named in the model card when it fires. On by default since
            hf_lnl 0.3: with the `"belief"` response it lifted real crowd noise to plain training's level and Task A
            sym20 / sym0 above CLID-MU without it, and where it does not fire training is unchanged (measurements:
            the ablations README).
        clid_disputed_response: What the rest of the run does once `clid_disputed_safeguard` fires: `"belief"`
            (each sample's weight rises towards the batch's largest by the probability `q_y` the model gave its label
            at that moment, `w + (max w - w) q_y`: believed labels are trained on, rejected flips stay down-weighted)
            or `"stop"` (plain cross-entropy on every label; the meta network stops).
        clid_noise_score: How the noise report's `noise_score` ranks the samples. The meta weights decide which are
            flagged either way (the low-weight posterior of a two-Gaussian mixture on `meta_weight`, times the
            weights' contrast, above `noise_score_threshold`); `"wrong_events"` (the default since hf_lnl 0.3) ranks
            each side of that decision by the wrong events counted over the run, as IDO's score does, and
            `"meta_weight"` scores by that product itself. Training does not read it.
        clid_eval: Compute `eval_clid` (label-free model selection); on automatically when
            `metric_for_best_model="clid"`, which keeps only models the method builds on (with IDO, none of stage 1:
            stage 2 restarts from the base model).

    Parameters of the robust-loss baselines:
        gce_q: Generalized cross-entropy exponent (Zhang & Sabuncu, 2018).
        sce_alpha / sce_beta / sce_log_clamp: Symmetric cross-entropy weights and the clamp of log 0
            (Wang et al., 2019).

    Defaults that differ from `TrainingArguments`:
        average_tokens_across_devices: `False` (with `True`, transformers 5 doubles the loss and gradients of
            classifiers under DDP).
        ddp_find_unused_parameters: `False` (classifiers use all their parameters; saves a graph traversal).

    Each method validates its own settings (`LNLMethod.check_args`) when the config is built. FSDP and DeepSpeed are
    refused for every method (`check_parallelism`): hf_lnl trains on one device or with DDP.

    Example:
        >>> args = NoisyLabelConfig(output_dir="out", lnl_method="ido", num_train_epochs=6)
        >>> args.lnl_method
        'ido'
    """

    lnl_method: str = field(
        default="none", metadata={"help": "Noisy-label method (a registered name).", "choices": METHOD_NAMES}
    )
    lnl_method_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "Settings of a user-registered method, as a JSON object."}
    )
    sample_index_column: str = field(default="sample_index", metadata={"help": "Per-sample id column."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (default: label, then labels)."})
    clean_label_column: str = field(default="clean_label", metadata={"help": "True labels, when known."})
    noise_score_threshold: float = field(default=0.5, metadata={"help": "noise_score above this flags a sample."})

    ido_stage1_epochs: int | None = field(default=None, metadata={"help": "IDO stage-1 epochs."})
    ido_stage2_epochs: int | None = field(default=None, metadata={"help": "IDO stage-2 epochs."})
    ido_mixture: str = field(default="per_class", metadata={"help": "Beta mixtures per class.", "choices": MIXTURES})
    ido_min_class_samples: int = field(default=50, metadata={"help": "Smaller classes use the global mixture."})
    ido_entropy: str = field(default="confidence", metadata={"help": "Entropy term.", "choices": ENTROPY_TERMS})
    ido_stage1_dir: str | None = field(default=None, metadata={"help": "Reuse a finished stage 1 from here."})
    ido_mask_rate: float = field(default=0.15, metadata={"help": "Text strong view: share of masked tokens."})
    ido_mask_token_id: int | None = field(default=None, metadata={"help": "Override the tokenizer's mask id."})
    ido_randaugment_magnitude: float = field(
        default=10.0, metadata={"help": "Image strong view: RandAugment magnitude on kornia's 0-30 scale."}
    )
    ido_stage1_constant_lr: bool | None = field(
        default=None,
        metadata={"help": "IDO's stage 1 at a constant rate (default: if pretrained; else the run's schedule)."},
    )
    ido_stage2_learning_rate: float | None = field(
        default=None, metadata={"help": "IDO's stage-2 peak learning rate (default: learning_rate)."}
    )
    ido_extend_stage1: bool = field(
        default=False, metadata={"help": "Safeguard: extend stage 1 while the prediction change is still falling."}
    )
    ido_lookup_after_counting: bool = field(
        default=False, metadata={"help": "Stage 2: look the mixture up after counting the batch's wrong events."}
    )
    ido_correction: str = field(
        default="auto", metadata={"help": "Stage 2's target for flagged samples.", "choices": CORRECTIONS}
    )
    ido_mixup_alpha: float = field(default=1.0, metadata={"help": "'mixup': Beta(a, a) of the mixing weight."})
    ido_mixup_temperature: float = field(
        default=0.5, metadata={"help": "'mixup': sharpening temperature of the refined targets."}
    )
    ido_belief_full_at: float = field(
        default=1.0, metadata={"help": "'base_belief': the base model's probability that keeps a label whole."}
    )
    ido_pseudo_label_threshold: float = field(
        default=0.95, metadata={"help": "Smallest weak-view confidence for an IDO pseudo-label."}
    )
    ido_views: str = field(
        default="auto", metadata={"help": "IDO's views: auto, dropout only, or augmented.", "choices": VIEWS}
    )
    ido_premise_safeguard: bool = field(
        default=True, metadata={"help": "Fall back to a plain loss when stage 1 did not learn the trusted samples."}
    )
    ido_fallback_loss: str = field(
        default="cross_entropy", metadata={"help": "The premise safeguard's loss.", "choices": FALLBACK_LOSSES}
    )

    clid_scope: str = field(default="head", metadata={"help": "Parameters of the look-ahead.", "choices": CLID_SCOPES})
    clid_last_k: int = field(default=1, metadata={"help": "Blocks in the look-ahead for scope 'last_k'."})
    clid_lookahead_lr: float = field(default=1.0, metadata={"help": "Step size of the virtual SGD step."})
    clid_meta_lr: float = field(default=1e-3, metadata={"help": "Learning rate of the meta-weight network."})
    clid_meta_optimizer: str = field(
        default="adam", metadata={"help": "Optimiser of the meta network.", "choices": META_OPTIMIZERS}
    )
    clid_meta_weight_decay: float = field(default=0.0, metadata={"help": "Weight decay of the meta network."})
    clid_meta_hidden_size: int = field(default=100, metadata={"help": "Hidden units of the meta network."})
    clid_meta_set_size: int = field(default=1000, metadata={"help": "Samples in the label-free meta set."})
    clid_meta_batch_size: int = field(default=100, metadata={"help": "Meta batch size (also eval_clid chunk)."})
    clid_update_every: int = field(default=1, metadata={"help": "Meta update every k optimiser steps."})
    clid_temperature: float = field(default=0.5, metadata={"help": "Temperature of CLID's feature graph."})
    clid_head_module: str | None = field(default=None, metadata={"help": "Name of the classification head."})
    clid_class_balanced: bool = field(
        default=True, metadata={"help": "Normalise the sample weights within each labelled class of a batch."}
    )
    clid_warmup_epochs: float | None = field(
        default=None,
        metadata={"help": "Epochs of unweighted training (the meta network already learns); default a third."},
    )
    clid_correction: str = field(
        default="none", metadata={"help": "Target for flagged samples.", "choices": CLID_CORRECTIONS}
    )
    clid_pseudo_label_threshold: float = field(
        default=0.95, metadata={"help": "Smallest confidence for a CLID-MU pseudo-label."}
    )
    clid_premise_safeguard: bool = field(
        default=True, metadata={"help": "Train with cross-entropy when the model has not learnt the trusted samples."}
    )
    clid_disputed_safeguard: bool = field(
        default=True, metadata={"help": "Respond when the down-weighted labels look disputed, not flipped."}
    )
    clid_disputed_response: str = field(
        default="belief",
        metadata={"help": "Once the disputed-label check fires.", "choices": DISPUTED_RESPONSES},
    )
    clid_noise_score: str = field(
        default="wrong_events", metadata={"help": "How the noise report ranks the flags.", "choices": NOISE_SCORES}
    )
    clid_eval: bool = field(default=False, metadata={"help": "Compute eval_clid during evaluation."})

    gce_q: float = field(default=0.7, metadata={"help": "GCE exponent q in (0, 1]."})
    sce_alpha: float = field(default=0.1, metadata={"help": "SCE weight of cross-entropy."})
    sce_beta: float = field(default=1.0, metadata={"help": "SCE weight of reverse cross-entropy."})
    sce_log_clamp: float = field(default=-4.0, metadata={"help": "SCE: value of log 0 for the one-hot label."})

    average_tokens_across_devices: bool = field(
        default=False, metadata={"help": "Kept False: True doubles classifier losses under DDP in transformers 5."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Classifiers use all their parameters."}
    )

    def __post_init__(self) -> None:
        # Before TrainingArguments builds the FSDP / DeepSpeed plugins: refused from the arguments alone.
        check_parallelism(
            self.lnl_method,
            fsdp=bool(self.fsdp) or _env_flag("ACCELERATE_USE_FSDP"),
            deepspeed=bool(self.deepspeed) or _env_flag("ACCELERATE_USE_DEEPSPEED"),
        )
        if self.metric_for_best_model in LABEL_FREE_METRICS and self.greater_is_better is None:
            self.greater_is_better = False  # lower CLID is better; Trainer would guess True for a non-loss name
        super().__post_init__()
        method = get_method(self.lnl_method)
        if isinstance(self.lnl_method_kwargs, str):
            try:
                self.lnl_method_kwargs = json.loads(self.lnl_method_kwargs)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"lnl_method_kwargs must be a JSON object, e.g. '{{\"beta\": 0.8}}'; got "
                    f"{self.lnl_method_kwargs!r} ({error})."
                ) from error
        if self.lnl_method_kwargs is not None and not isinstance(self.lnl_method_kwargs, dict):
            raise ValueError(f"lnl_method_kwargs must be a mapping, got {type(self.lnl_method_kwargs).__name__}.")
        method.parse_settings(self.lnl_method_kwargs)
        own = {f.name for f in fields(self)}
        missing = [name for name in method.config_fields if name not in own]
        if missing:
            raise ValueError(
                f"lnl_method={method.name!r} declares config_fields {missing} that NoisyLabelConfig does not have; "
                "put a method's own settings in its settings_class (read from lnl_method_kwargs)."
            )
        if not 0.0 <= self.noise_score_threshold <= 1.0:
            raise ValueError(f"noise_score_threshold must lie in [0, 1], got {self.noise_score_threshold}.")
        if self.clid_meta_set_size < 1:
            raise ValueError(f"clid_meta_set_size must be at least 1, got {self.clid_meta_set_size}.")
        if self.clid_meta_batch_size < 2:
            raise ValueError("clid_meta_batch_size must be at least 2: CLID compares samples with each other.")
        if not (self.clid_temperature > 0 and math.isfinite(self.clid_temperature)):  # eval_clid uses it too
            raise ValueError(f"clid_temperature must be a positive number, got {self.clid_temperature}.")
        if self.metric_for_best_model in LABEL_FREE_METRICS:
            self.clid_eval = True
            if self.greater_is_better:
                raise ValueError("metric_for_best_model='clid' needs greater_is_better=False (lower CLID is better).")
        method.check_args(self)


def check_parallelism(lnl_method: str, *, fsdp: bool, deepspeed: bool) -> None:
    """Refuse FSDP and DeepSpeed, which no `lnl_method` has been tested with (README, "Many GPUs", has the table).

    Raises:
        ValueError: `fsdp` or `deepspeed` is on; the message names the method and the supported alternative.

    Example:
        >>> check_parallelism("gce", fsdp=False, deepspeed=False)  # DDP or one device: fine
    """
    if not (fsdp or deepspeed):
        return
    what = "FSDP" if fsdp else "DeepSpeed"
    raise ValueError(
        f"lnl_method={lnl_method!r} has not been tested under {what}, so hf_lnl refuses it before training (IDO's "
        "optimiser restart and base-model snapshot and CLID-MU's look-ahead need whole, unsharded parameters and an "
        "optimiser of hf_lnl's own; the per-sample tracking of the other methods is untested there). Train on one "
        f"device or with DDP (`accelerate launch --multi_gpu`): remove {'fsdp' if fsdp else 'deepspeed'} from the "
        "arguments or the accelerate config."
    )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes")
