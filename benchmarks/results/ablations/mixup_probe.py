"""Screen (not part of hf_lnl): IDO's stage 2 with a mixup strong view that teaches the flagged samples too.

Runs `benchmarks/run.py` unchanged except for IDO's stage-2 loss (stage 1, the wrong events, the mixture, the base
model and the premise fallback are untouched). In stage 2 the strong view of each batch becomes a within-batch mixup
of the strong view (`lam x_i + (1 - lam) x_perm(i)`, one `lam ~ Beta(a, a)` per batch, `lam = max(lam, 1 - lam)`;
on text the word embeddings are mixed and the attention masks joined), and the loss is

    L = mean_i p_keep_i CE(z_w,i, y_i)  +  mean_i CE(z_mix,i, lam t_i + (1 - lam) t_perm(i))
    t_i = sharpen(p_keep_i onehot(y_i) + (1 - p_keep_i) softmax(z_w,i), T)         (detached; DivideMix's refinement)

`p_keep` is what IDO keeps of each label (the mixture's `p_clean`, or with `ido_correction="base_belief"` plus the
believed share). A flagged sample is taught the weak view's own (sharpened) prediction on a mixed input instead of
only sharpening it; a clean one its label, softened where the model disagrees. The weak and mixed views are one
forward (two where the model has no dropout, since then IDO's two views were one): no pass over the data is added.
Wrong events are counted on the weak view only (twice, to keep the count's scale). Settings by environment:
`MIX_ALPHA` (a, default 1), `MIX_T` (T, default 0.5), `MIX_CLEAN_CE` (1: keep the first term, default).

    python benchmarks/results/ablations/mixup_probe.py -- --suite headline --tasks A --cells sym40 --methods ido \
        --seeds 0 --output DIR

With the EMA probe's base model as well (`ema_probe.py`, `EMA_BASE_H`), from `benchmarks/`:

    EMA_BASE_H=0.5 python -c "import sys, runpy; sys.path.insert(0, 'results/ablations'); import mixup_probe; \
        mixup_probe.install(); sys.argv = ['ema_probe.py', *sys.argv[1:]]; \
        runpy.run_path('results/ablations/ema_probe.py', run_name='__main__')" RESULT.jsonl -- <run.py arguments>
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
import run  # noqa: E402

from hf_lnl.methods.base import MethodOutput  # noqa: E402
from hf_lnl.methods.ido import IDO, IGNORE_INDEX, STRONG_SUFFIX, _is_per_sample  # noqa: E402

ALPHA = float(os.environ.get("MIX_ALPHA", "1"))
TEMPERATURE = float(os.environ.get("MIX_T", "0.5"))
CLEAN_CE = os.environ.get("MIX_CLEAN_CE", "1") == "1"
original_compute_loss = IDO.compute_loss


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    powered = probs.clamp_min(1e-12) ** (1.0 / temperature)
    return powered / powered.sum(dim=-1, keepdim=True)


def mixup_compute_loss(self, model, inputs, sample_index, num_items_in_batch):
    if self.stage == 1 or self.fallback:
        return original_compute_loss(self, model, inputs, sample_index, num_items_in_batch)
    labels = inputs.pop("labels")
    self._resolve_views(inputs)
    views = self._views_for(inputs) if self._augments else None
    strong = {k[: -len(STRONG_SUFFIX)]: inputs.pop(k) for k in list(inputs) if k.endswith(STRONG_SUFFIX)}
    weak = self._weak(inputs)
    if not self._augments:
        strong = weak
    else:
        strong = {**weak, **strong} if strong else self._strong(inputs, views)
    size = labels.shape[0]
    lam = float(np.random.beta(ALPHA, ALPHA)) if ALPHA > 0 else 1.0
    lam = max(lam, 1.0 - lam)
    perm = torch.randperm(size, device=labels.device)
    if "pixel_values" in weak:
        mixed = dict(strong)
        x = strong["pixel_values"]
        mixed["pixel_values"] = lam * x + (1.0 - lam) * x[perm]
        batch = {k: torch.cat([v, mixed[k]]) if _is_per_sample(v, size) else v for k, v in weak.items()}
    else:
        embed = model.get_input_embeddings()
        e_w = embed(weak["input_ids"])
        e_s = embed(strong["input_ids"])
        e_mix = lam * e_s + (1.0 - lam) * e_s[perm]
        batch = {k: v for k, v in weak.items() if k != "input_ids"}
        mask = weak.get("attention_mask")
        if mask is not None:
            batch["attention_mask"] = torch.cat([mask, torch.maximum(mask, mask[perm])])
        for k, v in weak.items():
            if k not in ("input_ids", "attention_mask") and _is_per_sample(v, size):
                batch[k] = torch.cat([v, strong.get(k, v)])
        batch["inputs_embeds"] = torch.cat([e_w, e_mix])
    if not getattr(self, "_mix_announced", False):
        self._mix_announced = True
        print(f"mixup probe: stage 2 mixes the strong view ({sorted(batch)}, lam={lam:.2f})", flush=True)
    outputs = model(**batch)
    logits_weak, logits_mix = outputs["logits"].float().chunk(2)
    batch_events = None
    if self.args.ido_lookup_after_counting:
        batch_events = 2 * (
            (logits_weak.argmax(-1) != labels) & (labels != IGNORE_INDEX) & self.context.first_visit(sample_index, 0)
        )
    stats = self._mixture_stats(sample_index, labels, batch_events)
    p_clean = stats.float().detach()[:, 0].to(labels.device)
    if self._keeps_belief:
        belief = self.base_label_belief[sample_index.to(self.base_label_belief.device)].to(labels.device).float()
        p_keep = p_clean + (1.0 - p_clean) * (belief / self.args.ido_belief_full_at).clamp(max=1.0)
    else:
        p_keep = p_clean
    keep = labels != IGNORE_INDEX
    p_keep = torch.where(keep, p_keep, torch.zeros_like(p_keep))
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    q_w = F.softmax(logits_weak.detach(), dim=-1)
    onehot = F.one_hot(safe, q_w.shape[-1]).float()
    target = sharpen(p_keep[:, None] * onehot + (1.0 - p_keep[:, None]) * q_w, TEMPERATURE)
    mixed_target = lam * target + (1.0 - lam) * target[perm]
    mix_loss = -(mixed_target * F.log_softmax(logits_mix, dim=-1)).sum(-1)
    clean_loss = p_keep * F.cross_entropy(logits_weak, safe, reduction="none") if CLEAN_CE else 0.0 * mix_loss
    per_sample = (clean_loss + mix_loss) * keep.float()
    count = keep.float().sum().clamp_min(1.0)
    loss = per_sample.sum() / count
    metrics = {
        "ido_ce": (clean_loss * keep).sum().detach() / count,
        "ido_mix": (mix_loss * keep).sum().detach() / count,
        "ido_stage": 2.0,
    }
    outputs["logits"] = logits_weak
    return MethodOutput(loss, outputs, (logits_weak, logits_weak), labels, per_sample, metrics)


def install() -> None:
    """Replace IDO's stage-2 loss in this process (and the runs it forks)."""
    print(f"mixup probe: alpha={ALPHA} T={TEMPERATURE} clean_ce={CLEAN_CE}", flush=True)
    IDO.compute_loss = mixup_compute_loss


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--":
        sys.exit("usage: mixup_probe.py -- <benchmarks/run.py arguments>")
    install()
    sys.exit(run.main(sys.argv[2:]))
