"""IDO: instance-level difficulty modelling and dynamic optimisation (Zhang et al., NeurIPS 2025, arXiv 2505.00812).

Stage 1 fine-tunes with cross-entropy on the weak view while counting wrong events, and picks a base model by
prediction change. Stage 2 restarts from the base model with a fresh optimiser and schedule, fits a beta mixture on
the counts (refitted every epoch) and trains on a weak and a strong view with a per-sample, hyper-parameter-free
weighted loss:

    L = mean_i p_clean_i (CE_w + CE_s)  +  mean_i eps_i mean_c (z_w - z_s)^2  +  mean_i (1 - p_clean_i) conf_i H_i
    eps_i = p_clean_i cdf0_i + (1 - p_noisy_i)(1 - cdf1_i)
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..features import unwrap_model
from ..mixture import BetaMixture, ClassConditionalBetaMixture
from ..state import CheckpointStateError, load_state, save_state
from ..tracking import select_base_epoch
from ..views import ImageViews, TextMasker
from .base import LNLMethod

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
PROBABILITY_CLAMP = 1e-4  # q = clamp(softmax(z), 1e-4, 1 - 1e-4) before the entropy term
STAGE1_REFIT_ITERATIONS = 20
STAGE2_REFIT_ITERATIONS = {"global": 1, "per_class": 2}
BASE_MODEL_FILE = "ido_base_model.safetensors"
STAGE1_FOLDER = "ido_stage1"
WEAK_BASE_NOISE_RATE = 0.5  # more labels than this judged noisy after stage 1 means the base model learnt little
STRONG_SUFFIX = "_strong"  # a collator may supply its own strong view as `<input>_strong`


class IDO(LNLMethod):
    """`lnl_method="ido"`: both stages in one `trainer.train()`; stage lengths from `args.ido_stage_epochs`."""

    name = "ido"
    requires_class_labels = True
    num_views = 2

    # ------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        trainer = self.trainer
        if trainer.optimizer is not None and trainer.optimizer_cls_and_kwargs is None:
            raise ValueError(
                "lnl_method='ido' builds a fresh optimiser for stage 2, so it cannot use an optimiser instance "
                "passed as `optimizers=`. Pass `optimizer_cls_and_kwargs=(cls, kwargs)` or set `optim` instead."
            )
        self.stage1_epochs, self.stage2_epochs = self.args.ido_stage_epochs
        self.stage = 1
        self.base_epoch: int | None = None
        self.search_done = False
        self.base_state: dict[str, torch.Tensor] | None = None
        self.stage1_counts: torch.Tensor | None = None
        self._stage1_epochs_from_disk = 0
        self.num_classes = int(self.trainer.model.config.num_labels)
        if self.args.ido_mixture == "per_class":
            self.mixture = ClassConditionalBetaMixture(
                self.num_classes, min_class_samples=self.args.ido_min_class_samples
            )
        else:
            self.mixture = BetaMixture()
        self.lookup: torch.Tensor | None = None
        self._views: ImageViews | TextMasker | None = None
        self._labels = torch.as_tensor(trainer.label_info.labels, device=trainer.tracker.wrong_events.device)
        if self.args.ido_stage1_dir is not None:
            self._load_stage1(self.args.ido_stage1_dir)

    @property
    def max_count(self) -> int:
        """Largest wrong-event count possible: one per stage-1 epoch, two per stage-2 epoch."""
        return self.stage1_epochs + self.stage2_epochs * self.num_views + self._stage1_epochs_from_disk

    def training_steps(self, num_training_steps: int) -> int:
        total_epochs = self.stage1_epochs + self.stage2_epochs
        epochs = self.stage1_epochs if self.stage == 1 else self.stage2_epochs
        return max(1, round(num_training_steps * epochs / total_epochs))

    # ------------------------------------------------------------------------------------------ loss
    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], sample_index: torch.Tensor | None, num_items_in_batch: Any
    ) -> tuple[torch.Tensor, Any]:
        labels = inputs.pop("labels")
        views = self._views_for(inputs)
        strong = {k[: -len(STRONG_SUFFIX)]: inputs.pop(k) for k in list(inputs) if k.endswith(STRONG_SUFFIX)}
        weak = self._weak(inputs)
        if self.stage == 1:
            outputs = model(**weak)
            losses = F.cross_entropy(outputs["logits"].float(), labels, reduction="none", ignore_index=IGNORE_INDEX)
            keep = (labels != IGNORE_INDEX).float()
            self.trainer.record_predictions(sample_index, outputs["logits"], labels, per_sample_loss=losses)
            self.trainer.log_metric("ido_stage", 1.0)
            return losses.sum() / keep.sum().clamp_min(1.0), outputs
        strong = {**weak, **strong} if strong else self._strong(inputs, views)
        size = labels.shape[0]
        batch = {k: torch.cat([v, strong[k]]) if _is_per_sample(v, size) else v for k, v in weak.items()}
        outputs = model(**batch)
        logits_weak, logits_strong = outputs["logits"].float().chunk(2)
        stats = self._mixture_stats(sample_index, labels)
        losses, parts = ido_loss(logits_weak, logits_strong, labels, stats, self.args.ido_entropy == "confidence")
        self.trainer.record_predictions(sample_index, logits_weak, labels, view=0, per_sample_loss=losses)
        self.trainer.record_predictions(sample_index, logits_strong, labels, view=1, per_sample_loss=losses)
        for name in ("ce", "consistency", "entropy"):
            self.trainer.log_metric(f"ido_{name}", parts[name])
        self.trainer.log_metric("ido_stage", 2.0)
        outputs["logits"] = logits_weak
        return parts["loss"], outputs

    def _views_for(self, inputs: dict[str, Any]) -> ImageViews | TextMasker | None:
        if self._views is None:
            processor = self.trainer.processing_class
            if "pixel_values" in inputs:
                image_processor = getattr(processor, "image_processor", processor)
                if image_processor is None or not hasattr(image_processor, "image_mean"):
                    raise ValueError(
                        "lnl_method='ido' augments images with the processor's normalisation: pass the image "
                        "processor as `processing_class=`, or supply `pixel_values_strong` from your collator."
                    )
                self._views = ImageViews.from_processor(image_processor)
            elif "input_ids" in inputs:
                tokenizer = getattr(processor, "tokenizer", processor)
                self._views = _text_masker(tokenizer, self.args, self.trainer.model.config)
        return self._views

    def _weak(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self._views, ImageViews):
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

    def _mixture_stats(self, sample_index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        counts = self.trainer.tracker.wrong_events[sample_index.to(self.lookup.device)].long()
        counts = counts.clamp_max(self.lookup.shape[-2] - 1)
        if self.lookup.dim() == 3:
            rows = self._labels[sample_index.to(self._labels.device)].clamp_min(0)
            return self.lookup[rows, counts]
        return self.lookup[counts]

    # ------------------------------------------------------------------------------------- epoch ends
    def on_epoch_end(self) -> dict[str, float]:
        tracker = self.trainer.tracker
        if self.stage == 1:
            if not self.search_done:
                if select_base_epoch(tracker.prediction_changes) == tracker.epochs_completed:
                    self._snapshot_base(tracker.epochs_completed)  # prediction change still falling
                else:
                    self.search_done = True
            if tracker.epochs_completed >= self.stage1_epochs:
                return self._start_stage2()
            return {"ido_stage": 1.0}
        self._refit(STAGE2_REFIT_ITERATIONS[self.args.ido_mixture])
        return {"ido_stage": 2.0, **self._mixture_logs()}

    def _snapshot_base(self, epoch: int) -> None:
        model = unwrap_model(self.trainer.model)
        self.base_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.base_epoch = epoch

    def _start_stage2(self) -> dict[str, float]:
        trainer = self.trainer
        self.stage1_counts = trainer.tracker.wrong_events[:-1].to(torch.int16).clone()
        if trainer.args.should_save:
            self.save_stage1(os.path.join(trainer.args.output_dir, STAGE1_FOLDER))
        unwrap_model(trainer.model).load_state_dict(self.base_state)
        self.base_state = None
        self.stage = 2
        self._refit(STAGE1_REFIT_ITERATIONS)
        trainer.restart_optimization()
        logger.info(f"IDO stage 2 starts from the base model of epoch {self.base_epoch}.")
        flagged = float((self.noise_scores() > self.args.noise_score_threshold).mean())
        if flagged > WEAK_BASE_NOISE_RATE:
            logger.warning(
                f"IDO's mixture marks {flagged:.0%} of the training labels as noisy after stage 1: the base model is "
                "probably too weak (IDO assumes a pretrained backbone), and stage 2 will mostly minimise entropy. "
                "Start from a pretrained model; for a network trained from scratch prefer lnl_method='gce' or "
                "'none' (on a from-scratch ViT a longer stage 1 did not help: benchmarks/results/ablations)."
            )
        return {"ido_stage": 2.0, "ido_base_epoch": float(self.base_epoch), **self._mixture_logs()}

    def _refit(self, iterations: int) -> None:
        counts = self.trainer.tracker.counts()
        if isinstance(self.mixture, ClassConditionalBetaMixture):
            self.mixture.fit(counts, self.trainer.label_info.labels, n_iter=iterations)
        else:
            self.mixture.fit(counts, n_iter=iterations)
        table = torch.as_tensor(self.mixture.lookup_table(self.max_count), dtype=torch.float32)
        self.lookup = table.to(self.trainer.tracker.wrong_events.device)

    def _mixture_logs(self) -> dict[str, float]:
        params = self.mixture.get_params()
        logger.info(f"IDO beta mixture: {params}")
        source = params.get("global", params)
        logs = {"ido_estimated_noise_rate": float((self.noise_scores() > self.args.noise_score_threshold).mean())}
        for k, (name, key) in enumerate([("alpha", "alphas"), ("beta", "betas"), ("pi", "weights")] * 2):
            logs[f"ido_mixture_{name}{k // 3}"] = float(source[key][k // 3])
        return logs

    # ------------------------------------------------------------------------------------------ report
    def _stats_now(self) -> np.ndarray:
        counts = self.trainer.tracker.counts()
        if isinstance(self.mixture, ClassConditionalBetaMixture):
            return self.mixture.predict_stats(counts, self.trainer.label_info.labels)
        return self.mixture.predict_stats(counts)

    def noise_scores(self) -> np.ndarray:
        """`p_noisy` of the current beta mixture (stage 2); wrong events / maximum during stage 1."""
        if self.stage == 1:
            return super().noise_scores()
        return self._stats_now()[:, 1]

    def report_columns(self) -> dict[str, np.ndarray]:
        counts = self.trainer.tracker.counts()
        columns: dict[str, np.ndarray] = {}
        if self.stage == 2:
            stats = self._stats_now()
            columns.update(p_clean=stats[:, 0].astype(np.float32), p_noisy=stats[:, 1].astype(np.float32))
        if self.stage1_counts is not None:
            stage1 = self.stage1_counts.cpu().numpy().astype(np.int64)
            columns.update(stage1_wrong_events=stage1, stage2_wrong_events=counts - stage1)
        return columns

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.stage1_counts is None else {"stage1_counts": self.stage1_counts}

    def metadata(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "base_epoch": self.base_epoch,
            "search_done": self.search_done,
            "mixture": self.mixture.get_params() if self.stage == 2 else None,
            "stage1_epochs_from_disk": self._stage1_epochs_from_disk,
        }

    def load_state(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        self.stage = int(metadata["stage"])
        self.base_epoch = metadata["base_epoch"]
        self.search_done = bool(metadata["search_done"])
        self._stage1_epochs_from_disk = int(metadata["stage1_epochs_from_disk"])
        if "stage1_counts" in tensors:
            self.stage1_counts = tensors["stage1_counts"].to(self.trainer.tracker.wrong_events.device)
        if metadata["mixture"] is not None:
            self.mixture.set_params_from(metadata["mixture"])
            table = torch.as_tensor(self.mixture.lookup_table(self.max_count), dtype=torch.float32)
            self.lookup = table.to(self.trainer.tracker.wrong_events.device)

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
        """Save a finished stage 1 (counts, base model, dataset size, label checksum) for `ido_stage1_dir`."""
        trainer = self.trainer
        tensors = {f"tracker.{k}": v for k, v in trainer.tracker.state_dict().items()}
        metadata = {
            "lnl_method": "ido",
            "num_samples": trainer.tracker.num_samples,
            "labels_sha256": trainer._labels_checksum(),
            "tracker": trainer.tracker.metadata(),
            "base_epoch": self.base_epoch,
            "stage1_epochs": self.stage1_epochs + self._stage1_epochs_from_disk,
        }
        save_state(folder, tensors, metadata)
        save_file({k: v.contiguous() for k, v in self.base_state.items()}, os.path.join(folder, BASE_MODEL_FILE))

    def _load_stage1(self, folder: str) -> None:
        trainer = self.trainer
        tensors, metadata = load_state(folder)
        try:
            trainer.check_state_matches(folder, metadata)
        except CheckpointStateError as error:
            raise ValueError(f"ido_stage1_dir does not match this training set: {error}") from error
        trainer.tracker.load_state_dict({k[len("tracker.") :]: v for k, v in tensors.items()}, metadata["tracker"])
        unwrap_model(trainer.model).load_state_dict(load_file(os.path.join(folder, BASE_MODEL_FILE)))
        self._stage1_epochs_from_disk = int(metadata["stage1_epochs"])
        self.base_epoch = metadata["base_epoch"]
        self.search_done = True
        self.stage1_counts = trainer.tracker.wrong_events[:-1].to(torch.int16).clone()
        self.stage = 2
        self._refit(STAGE1_REFIT_ITERATIONS)


def ido_loss(
    logits_weak: torch.Tensor,
    logits_strong: torch.Tensor,
    labels: torch.Tensor,
    stats: torch.Tensor,
    use_confidence: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IDO's stage-2 loss. Returns per-sample losses and the batch parts (`loss`, `ce`, `consistency`, `entropy`).

    Args:
        logits_weak / logits_strong: (B, C) logits of the two views.
        labels: (B,) given labels; -100 samples contribute nothing.
        stats: (B, 4) mixture outputs `p_clean, p_noisy, cdf0, cdf1` (constants).
        use_confidence: Weight the entropy by the confidence `max_c q̄` (default) or not.

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
    weight = p_clean * cdf0 + (1.0 - p_noisy) * (1.0 - cdf1)
    consistency = (z_w - z_s).pow(2).mean(dim=-1)
    q_w = F.softmax(z_w, dim=-1).clamp(PROBABILITY_CLAMP, 1 - PROBABILITY_CLAMP)
    q_s = F.softmax(z_s, dim=-1).clamp(PROBABILITY_CLAMP, 1 - PROBABILITY_CLAMP)
    q_mean = (q_w + q_s) / 2
    entropy = -(q_mean * q_mean.log()).sum(dim=-1)
    if use_confidence:
        entropy = entropy * q_mean.max(dim=-1).values.detach()  # the confidence weights the term; no gradient
    parts_per_sample = {
        "ce": p_clean * ce,
        "consistency": weight * consistency,
        "entropy": (1.0 - p_clean) * entropy,
    }
    count = keep.float().sum().clamp_min(1.0)
    per_sample = sum(parts_per_sample.values()) * keep
    parts = {name: (value * keep).sum() / count for name, value in parts_per_sample.items()}
    parts["loss"] = per_sample.sum() / count
    return per_sample, parts


def _is_per_sample(value: Any, batch_size: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size


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
