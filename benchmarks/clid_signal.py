"""Does CLID's meta-gradient tell flipped labels from clean ones, and at which look-ahead step size?

The measurement behind `clid_lookahead_lr`'s default. PROTOCOL Task A (BBC News + MiniLM-L6, batch 32) with a noise
cell: the model is fine-tuned with plain cross-entropy on the noisy labels, and at a few optimiser steps the head-
scope look-ahead of CLID-MU is taken with unit per-sample weights `w`: `θ' = θ - α ∂(Σ w̃ ℓ)/∂θ`,
`w̃ = w / Σ w`, then `CLID(h_meta, f_θ'(h_meta))` on a fixed 100-sample meta batch. Its derivative `∂CLID/∂w_i` is
the signal the meta network learns from: positive = giving sample i more weight raises CLID (the meta network
should down-weight it). Reported per step and α: the mean derivative on clean and on flipped samples of 8 training
batches, and the AUROC of the derivative as a detector of the flipped labels (0.5 = no signal).

Usage:
    python benchmarks/clid_signal.py --threads 1                 # sym40 and asym40, writes results/clid_signal.md
    python benchmarks/clid_signal.py --cells sym40 --steps 0 20 --output /tmp/clid_signal.md  # quicker
"""

from __future__ import annotations

import argparse
import datetime
import time

import numpy as np
import torch
import torch.nn.functional as F
from report import publish, script_command
from sklearn.metrics import roc_auc_score
from tasks import REPO, TASKS, load_task
from torch.func import functional_call

from hf_lnl.clid import clid
from hf_lnl.features import HeadFeatureCapture, find_classification_head, sample_features

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "clid_signal.md"
BATCH_SIZE, META_BATCH_SIZE, LEARNING_RATE = 32, 100, 5e-5


def head_features(model: torch.nn.Module, head_name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad(), HeadFeatureCapture(model, head_name) as capture:
        model(**batch)
    return sample_features(capture.features, batch.get("attention_mask"))


def weight_derivatives(head: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor,
                       meta_features: torch.Tensor, alpha: float, temperature: float) -> np.ndarray:  # fmt: skip
    """∂CLID(look-ahead head on the meta batch)/∂w at w = 1 for one training batch."""
    weights = torch.ones(len(labels), requires_grad=True)
    theta = {name: p.detach().requires_grad_() for name, p in head.named_parameters()}
    losses = F.cross_entropy(functional_call(head, theta, (features,)), labels, reduction="none")
    grads = torch.autograd.grad((weights / weights.sum() * losses).sum(), list(theta.values()), create_graph=True)
    lookahead = {name: p - alpha * g for (name, p), g in zip(theta.items(), grads)}
    meta_loss = clid(meta_features, functional_call(head, lookahead, (meta_features,)), temperature)
    return torch.autograd.grad(meta_loss, weights)[0].numpy()


def measure_cell(cell_name: str, options: argparse.Namespace) -> list[dict]:
    task = TASKS["A"]
    data = load_task("A", REPO / "benchmarks" / "results" / "cache")
    train = task.cell(cell_name).apply(data.train, options.seed)
    inputs = {name: torch.tensor(train[name]) for name in ("input_ids", "attention_mask")}
    labels, flipped = torch.tensor(train["label"]), np.asarray(train["label"]) != np.asarray(train["clean_label"])
    model = data.make_model(options.seed)
    head_name, head = find_classification_head(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    generator = torch.Generator().manual_seed(options.seed)
    order = torch.randperm(len(labels), generator=generator)
    meta_rows = torch.randperm(len(labels), generator=generator)[:META_BATCH_SIZE]
    steps_per_epoch = len(labels) // BATCH_SIZE
    rows, step = [], 0
    for target in sorted(options.steps):
        model.train()
        while step < target:  # plain cross-entropy fine-tuning on the noisy labels
            rows_now = order[(step % steps_per_epoch) * BATCH_SIZE:][:BATCH_SIZE]
            loss = model(**{k: v[rows_now] for k, v in inputs.items()}, labels=labels[rows_now]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
        meta_features = head_features(model, head_name, {k: v[meta_rows] for k, v in inputs.items()})
        batches = [order[b * BATCH_SIZE:(b + 1) * BATCH_SIZE] for b in range(options.batches)]
        features = [head_features(model, head_name, {k: v[b] for k, v in inputs.items()}) for b in batches]
        is_flipped = np.concatenate([flipped[b.numpy()] for b in batches])
        for alpha in options.alphas:
            derivative = np.concatenate([
                weight_derivatives(head, f, labels[b], meta_features, alpha, options.temperature)
                for f, b in zip(features, batches)
            ])  # fmt: skip
            rows.append({"cell": cell_name, "step": step, "alpha": alpha,
                         "clean": float(derivative[~is_flipped].mean()),
                         "flipped": float(derivative[is_flipped].mean()),
                         "auroc": float(roc_auc_score(is_flipped, derivative))})  # fmt: skip
            print(f"{cell_name} step {step} alpha {alpha}: {rows[-1]}", flush=True)
    return rows


def render(options: argparse.Namespace, rows: list[dict], seconds: float) -> str:
    lines = ["# Does CLID's meta-gradient separate flipped labels? (head-scope look-ahead, Task A)", "",
             f"Command: `{options.command}`", "",
             f"Date: {datetime.date.today().isoformat()}; {seconds / 60:.1f} min; seed {options.seed}; "
             f"{options.batches} training batches of {BATCH_SIZE} per point, meta batch {META_BATCH_SIZE}, "
             f"temperature {options.temperature}; the model is fine-tuned with plain cross-entropy (AdamW "
             f"{LEARNING_RATE}) between points (about 56 steps = one epoch).", "",
             "| cell | step | look-ahead lr α | mean ∂CLID/∂w clean | mean ∂CLID/∂w flipped | AUROC (flipped) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['cell']} | {r['step']} | {r['alpha']} | {r['clean']:+.2e} | {r['flipped']:+.2e} | "
              f"{r['auroc']:.3f} |" for r in rows]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=["sym40", "asym40"])
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 20, 56, 112], help="Optimiser steps to probe.")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.01, 0.1, 1.0, 10.0])
    parser.add_argument("--batches", type=int, default=8, help="Training batches per probe.")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    options = parser.parse_args(argv)
    options.command = script_command(__file__, argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    start = time.perf_counter()
    rows = [row for cell in options.cells for row in measure_cell(cell, options)]
    report = render(options, rows, time.perf_counter() - start)
    publish(report, options.output)


if __name__ == "__main__":
    main()
