"""What a CLID-MU step costs: optimiser-step time of `NoisyLabelTrainer(lnl_method="clid_mu")` for each look-ahead
scope and meta-update interval, relative to a cross-entropy step (`lnl_method="none"`) of the same model and data.

MiniLM-L6 (CPU), BBC News texts (random tokens when the corpus is missing), batch 32, sequence 64, meta batch =
train batch (32). Scopes: `head` (the classifier), `last_k` with k = 1 block (+ head), `all` (every trainable
parameter); meta update every 1, 2 and 4 optimiser steps. A callback times each optimiser step (`on_step_begin` ->
`on_step_end`) in process CPU time and in wall time; a configuration's value is the *mean* over its timed steps
(with k = 2 or 4 only every k-th step carries the meta update, so the mean is the amortised cost per step). The
cross-entropy baseline is timed before and after the CLID-MU runs; ratios divide by the mean of the two. Use
`--threads 1` on a machine shared with other jobs: CPU time then barely depends on their load.

Usage:
    python benchmarks/clid_cost.py --threads 1            # writes benchmarks/results/clid_cost.md
    python benchmarks/clid_cost.py --steps 4 --scopes head --intervals 1 --output /tmp/clid_cost.md  # quick
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import statistics
import tempfile
import time

import datasets
import torch
import transformers
from overhead import REPO, StepTimer, add_timing_arguments, build_model_and_data, machine_info, timing_args
from report import publish, script_command

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "clid_cost.md"
SCOPES = ("head", "last_k", "all")
GOALS = {("head", 1): 2.2, ("all", 1): 4.5}


def time_config(model: torch.nn.Module, data: datasets.Dataset, options: argparse.Namespace, out: str,
                scope: str | None, interval: int = 1) -> dict[str, float]:  # fmt: skip
    """Mean CPU and wall time per timed optimiser step; `scope=None` is the cross-entropy baseline."""
    method = dict(lnl_method="none") if scope is None else dict(
        lnl_method="clid_mu", clid_scope=scope, clid_last_k=1, clid_update_every=interval,
        clid_meta_batch_size=options.batch_size, clid_meta_set_size=options.batch_size * 4,
    )  # fmt: skip
    args = NoisyLabelConfig(**timing_args(options, out), **method)
    timer = StepTimer()
    NoisyLabelTrainer(model=copy.deepcopy(model), args=args, train_dataset=data, callbacks=[timer]).train()
    keep = slice(options.warmup, None)
    return {"cpu": statistics.fmean(timer.cpu_steps[keep]), "wall": statistics.fmean(timer.steps[keep])}


def measure(options: argparse.Namespace) -> tuple[dict, str]:
    num_rows = options.batch_size * (options.warmup + options.steps)
    model, data, note = build_model_and_data(num_rows, options.seq_len)
    results: dict = {}
    with tempfile.TemporaryDirectory() as out:
        results["ce_before"] = time_config(model, data, options, out, None)
        print(f"cross-entropy: {results['ce_before']}", flush=True)
        for scope in options.scopes:
            for interval in options.intervals:
                results[(scope, interval)] = time_config(model, data, options, out, scope, interval)
                print(f"{scope} k={interval}: {results[(scope, interval)]}", flush=True)
        results["ce_after"] = time_config(model, data, options, out, None)
        print(f"cross-entropy (again): {results['ce_after']}", flush=True)
    return results, note


def render(options: argparse.Namespace, results: dict, note: str, load: tuple, seconds: float) -> str:
    ce = {m: statistics.fmean([results["ce_before"][m], results["ce_after"][m]]) for m in ("cpu", "wall")}
    lines = ["# CLID-MU step cost", "", f"Command: `{options.command}`", ""]
    lines += [f"Machine: {line}  " for line in machine_info()]
    lines += [f"Date: {datetime.date.today().isoformat()}; load average {load[0]:.2f} before, {load[1]:.2f} after; "
              f"{seconds / 60:.1f} min in all.", ""]  # fmt: skip
    lines += [
        f"{note}; batch {options.batch_size}, sequence {options.seq_len}, meta batch {options.batch_size}; "
        f"{options.steps} timed optimiser steps per configuration after {options.warmup} warm-up steps; mean per "
        "step (the meta update runs on every k-th step, so this is the amortised cost).",
        "",
        f"Cross-entropy step (`lnl_method=\"none\"`): {1e3 * ce['cpu']:.0f} ms CPU "
        f"({1e3 * results['ce_before']['cpu']:.0f} before, {1e3 * results['ce_after']['cpu']:.0f} after), "
        f"{1e3 * ce['wall']:.0f} ms wall.",
        "",
        "| scope | meta update every k steps | CPU ms / step | × cross-entropy (CPU) | wall ms / step "
        "| × cross-entropy (wall) | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for scope in options.scopes:
        for interval in options.intervals:
            row = results[(scope, interval)]
            goal = GOALS.get((scope, interval))
            verdict = "" if goal is None else f"< {goal}× ({'met' if row['cpu'] / ce['cpu'] < goal else 'missed'})"
            lines.append(f"| {scope} | {interval} | {1e3 * row['cpu']:.0f} | {row['cpu'] / ce['cpu']:.2f} "
                         f"| {1e3 * row['wall']:.0f} | {row['wall'] / ce['wall']:.2f} | {verdict} |")  # fmt: skip
    lines += ["", "`last_k` uses `clid_last_k=1`: the last encoder block and the head."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_arguments(parser, steps=12, warmup=2, output=DEFAULT_OUTPUT)  # --batch-size is the meta batch too
    parser.add_argument("--scopes", nargs="+", choices=SCOPES, default=list(SCOPES))
    parser.add_argument("--intervals", type=int, nargs="+", default=[1, 2, 4], help="Meta update every k steps.")
    options = parser.parse_args(argv)
    options.command = script_command(__file__, argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    results, note = measure(options)
    report = render(options, results, note, (load_before, os.getloadavg()[0]), time.perf_counter() - start)
    publish(report, options.output)


if __name__ == "__main__":
    main()
