"""The benchmark report: a suite's JSONL rows -> a Markdown table and two plots (accuracy vs noise rate, time).

Pure functions of the rows (no torch, no training), so the report can be rebuilt at any time, with the suite's
planned run count and method descriptions, by the harness:

    python benchmarks/run.py --suite headline --max-runs 0   # rewrites headline.md and the plots, trains nothing
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shlex
import statistics
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

KEY_FIELDS = ("task", "noise_kind", "noise_rate", "method", "seed")
BASELINE = "trainer"  # deltas and ratios refer to the plain Trainer on the noisy labels of the same cell
KIND_ORDER = {"symmetric": 0, "asymmetric": 1, "instance": 2}
KIND_MARKERS = {"symmetric": "o", "asymmetric": "s", "instance": "^"}
NOISE_RATE_AXIS = (0, 70)  # percent: the protocol's rates are 20-60
DODGE_PTS = 0.6  # horizontal offset between methods in the accuracy plot, in noise-rate points


def run_key(row: dict[str, Any]) -> tuple:
    """A run's identity: (task, noise kind, noise rate, method, seed)."""
    return (row["task"], row["noise_kind"], round(float(row["noise_rate"]), 4), row["method"], int(row["seed"]))


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a suite's JSONL file, in file order; a line cut short by an interrupted write is skipped.

    Example:
        >>> rows = read_rows("benchmarks/results/quick.jsonl")
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s:%d is not valid JSON (an interrupted write?); skipped.", path, number)
    return rows


def latest_rows(rows: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """The last row of each run key (a later success replaces an earlier error, a re-run replaces a run)."""
    return {run_key(row): row for row in rows}


# ------------------------------------------------------------------------------------------------ summary
@dataclass
class Summary:
    """One table row: a method on one noise cell of one task, over the seeds it has."""

    task: str
    cell: str
    noise_kind: str
    noise_rate: float
    method: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted(int(row["seed"]) for row in self.rows)

    def values(self, name: str) -> list[float]:
        """A numeric field (dotted path, e.g. "detection.f1") over the seeds, NaN and missing left out."""
        found = [_lookup(row, name) for row in self.rows]
        return [float(v) for v in found if _is_finite_number(v)]

    def by_seed(self, name: str) -> dict[int, float]:
        found = {int(row["seed"]): _lookup(row, name) for row in self.rows}
        return {s: float(v) for s, v in found.items() if _is_finite_number(v)}


def summarize(rows: Iterable[dict[str, Any]], method_order: Sequence[str] = ()) -> list[Summary]:
    """Group the successful rows by (task, cell, method), ordered by task, cell (kind, rate) and method."""
    groups: dict[tuple, Summary] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        key = (row["task"], row["noise_kind"], round(float(row["noise_rate"]), 4), row["method"])
        if key not in groups:
            groups[key] = Summary(row["task"], row["cell"], row["noise_kind"], float(row["noise_rate"]), row["method"])
        groups[key].rows.append(row)
    rank = {name: i for i, name in enumerate(method_order)}
    return sorted(
        groups.values(),
        key=lambda s: (s.task, KIND_ORDER.get(s.noise_kind, 9), s.noise_rate, rank.get(s.method, len(rank)), s.method),
    )


def time_ratio(summary: Summary, baseline: Summary | None, name: str = "wall_s") -> float:
    """Mean over the method's runs of its time / the `baseline`'s time on the same machine; NaN if none.

    Each run is divided by the baseline run of the same seed when that one ran on the same machine (the row's
    `machine` string), else by the mean of the baseline's runs on that machine: a suite resumed on another machine
    never divides one machine's seconds by another's. Runs with no baseline on their machine are left out.

    Example:
        >>> rows = [{"seed": 0, "machine": "m1", "wall_s": 10.0}, {"seed": 1, "machine": "m2", "wall_s": 40.0}]
        >>> base = Summary("A", "sym40", "symmetric", 0.4, "trainer", rows)
        >>> ido = Summary("A", "sym40", "symmetric", 0.4, "ido", [{"seed": 0, "machine": "m2", "wall_s": 60.0}])
        >>> time_ratio(ido, base)
        1.5
    """
    if baseline is None:
        return float("nan")
    ratios = []
    for row in summary.rows:
        value = _lookup(row, name)
        peers = [b for b in baseline.rows if b.get("machine") == row.get("machine")]
        same_seed = [_lookup(b, name) for b in peers if int(b["seed"]) == int(row["seed"])]
        reference = same_seed or [_lookup(b, name) for b in peers]
        reference = [float(v) for v in reference if _is_finite_number(v) and v > 0]
        if _is_finite_number(value) and reference:
            ratios.append(float(value) / statistics.fmean(reference))
    return statistics.fmean(ratios) if ratios else float("nan")


def paired_delta(summary: Summary, baseline: Summary | None, name: str) -> float:
    """Mean over the seeds both have of (method - baseline); NaN if none."""
    if baseline is None:
        return float("nan")
    mine, theirs = summary.by_seed(name), baseline.by_seed(name)
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return float("nan")
    return statistics.fmean(mine[s] - theirs[s] for s in shared)


# ------------------------------------------------------------------------------------------------ Markdown
def render_markdown(
    suite: str,
    rows: list[dict[str, Any]],
    *,
    commands: Sequence[str],
    planned: int | None = None,
    method_order: Sequence[str] = (),
    method_descriptions: dict[str, str] | None = None,
    task_titles: dict[str, str] | None = None,
    task_recipes: dict[str, str] | None = None,
    plots: Sequence[str] = (),
) -> str:
    """The suite's Markdown report: header (command, machine, versions), one table per task, notes, errors."""
    latest = list(latest_rows(rows).values())
    ok = [row for row in latest if row.get("status") == "ok"]
    errors = [row for row in latest if row.get("status") != "ok"]
    lines = [f"# hf_lnl benchmark: `{suite}` suite", ""]
    lines += [f"Command: `{command}`  " for command in commands] + [""]
    lines += _header(ok, planned, len(errors))
    summaries = summarize(ok, method_order)
    for task in sorted({s.task for s in summaries}):
        title = (task_titles or {}).get(task, "")
        lines += [f"## Task {task}{': ' + title if title else ''}", ""]
        if (task_recipes or {}).get(task):
            lines += [f"Every method: {task_recipes[task]}.", ""]
        lines += _noise_line(ok, task)
        lines += _backbone_line(ok, task)
        lines += _table([s for s in summaries if s.task == task])
        lines.append("")
        lines += _meta_weight_lines([s for s in summaries if s.task == task])
    lines += _settings_lines(ok)
    lines += [f"![{Path(plot).stem}]({Path(plot).name})" for plot in plots]
    lines += ["", *_notes(method_order, method_descriptions or {})]
    if errors:
        lines += ["", "## Runs that failed (re-run the same command to retry them)", ""]
        for row in sorted(errors, key=run_key):
            message = str(row.get("error", "unknown error")).strip().splitlines()
            lines.append(f"- Task {row['task']} {row['cell']} `{row['method']}` seed {row['seed']}: "
                         f"{message[-1] if message else 'unknown error'}")  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def _header(ok: list[dict[str, Any]], planned: int | None, num_errors: int) -> list[str]:
    done = f"{len(ok)} runs done" + (f" of {planned} planned" if planned is not None else "")
    done += f", {num_errors} failed" if num_errors else ""
    lines = [f"Status: {done}.  "]
    if ok:
        dates = sorted(row.get("finished_at", "") for row in ok)
        loads = [v for row in ok for v in (row.get("loadavg_start"), row.get("loadavg_end")) if v is not None]
        threads = sorted({row.get("torch_threads") for row in ok if row.get("torch_threads") is not None})
        load = f"; 1-min load average during runs {min(loads):.1f}–{max(loads):.1f}" if loads else ""
        lines.append(f"Runs: {dates[0][:16]} to {dates[-1][:16]} UTC{load}; torch threads {threads}.  ")
        machines = sorted({row.get("machine", "") for row in ok} - {""})
        versions = sorted({_versions(row.get("versions", {})) for row in ok} - {""})
        lines += [f"Machine: {machine}  " for machine in machines]
        lines += [f"Versions: {version}  " for version in versions]
        sources = sorted({row.get("hf_lnl_source", "") for row in ok} - {""})
        if sources:
            lines.append(
                f"hf_lnl source digest(s) (SHA-256 of hf_lnl/**/*.py, per run in the JSONL): {', '.join(sources)}  "
            )
    return lines + [""]


def _noise_line(ok: list[dict[str, Any]], task: str) -> list[str]:
    realised: dict[str, list[float]] = {}
    for row in ok:
        rate = row["noise"].get("realized_rate")
        if row["task"] == task and row["method"] != "oracle" and rate is not None:
            realised.setdefault(row["cell"], []).append(100 * float(rate))
    if not realised:
        return []
    parts = [f"{cell} {statistics.fmean(v):.1f}%" for cell, v in realised.items()]
    return [f"Realised share of flipped training labels (mean over seeds): {', '.join(parts)}.", ""]


def _backbone_line(ok: list[dict[str, Any]], task: str) -> list[str]:
    """The builds of a harness-pretrained backbone (a row's `backbone`) that the task's rows fine-tuned: a build is not
    bit-identical across machines, so rows of two builds (or of a build and an unrecorded one) do not compare."""
    builds = Counter(row.get("backbone") for row in ok if row["task"] == task)
    if set(builds) <= {None}:
        return []
    if len(builds) == 1:
        (build,) = builds
        return [f"Backbone build of every run: `{build}`.", ""]
    named = [f"`{build}` ({_runs(count)})" for build, count in sorted(builds.items(), key=str) if build]
    if builds.get(None):
        named.append(f"not recorded ({_runs(builds[None])}, made before rows recorded their build)")
    return [f"**Backbone builds differ between runs**: {', '.join(named)}; compare only runs of one build "
            "(each row's `backbone` in the JSONL).", ""]  # fmt: skip


def _runs(count: int) -> str:
    return f"{count} run" + ("s" if count != 1 else "")


def _table(summaries: list[Summary]) -> list[str]:
    lines = [
        "| cell | method | seeds | best acc. (%) | last acc. (%) | CLID-chosen acc. (%) | Δ vs trainer, best / last "
        "(pts) | precision | recall | F1 | AUROC | wall (s) | wall / trainer | s / step | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    baselines = {(s.task, s.cell): s for s in summaries if s.method == BASELINE}
    for s in summaries:
        base = baselines.get((s.task, s.cell))
        if s.method == BASELINE:
            delta, ratio = "—", "1"
        else:
            best = paired_delta(s, base, "best_accuracy")
            last = paired_delta(s, base, "last_accuracy")
            delta = f"{_signed(100 * best)} / {_signed(100 * last)}"
            ratio = _number(time_ratio(s, base), 2)
        seeds = ",".join(map(str, s.seeds))
        reused = _reuse_marks(s.rows)
        lines.append(
            f"| {s.cell} | {s.method}{reused} | {seeds} | {_mean_std(s.values('best_accuracy'), 100, 1)} | "
            f"{_mean_std(s.values('last_accuracy'), 100, 1)} | {_mean_std(s.values('clid_accuracy'), 100, 1)} | "
            f"{delta} | "
            f"{_mean_std(s.values('detection.precision'), 1, 3)} | {_mean_std(s.values('detection.recall'), 1, 3)} | "
            f"{_mean_std(s.values('detection.f1'), 1, 3)} | {_mean_std(s.values('detection.auroc'), 1, 3)} | "
            f"{_mean_std(s.values('wall_s'), 1, 0)} | {ratio} | {_mean_std(s.values('s_per_step'), 1, 3)} | "
            f"{_mean_std(s.values('peak_rss_mb'), 1, 0)} |"
        )
    return lines


def _settings_lines(ok: list[dict[str, Any]]) -> list[str]:
    """Runs made with `run.py --set` overrides (copied in from an ablation folder), each with its settings and note."""
    lines = []
    for row in sorted((row for row in ok if row.get("settings")), key=run_key):
        settings = ", ".join(f"`{key}={json.dumps(value)}`" for key, value in row["settings"].items())
        note = f": {row['note']}" if row.get("note") else ""
        run = f"Task {row['task']} {row['cell']} `{row['method']}` seed {row['seed']}"
        lines.append(f"- {run} ran with {settings}{note}")
    return ["Runs with explicit settings:", "", *lines, ""] if lines else []


def _reuse_marks(rows: list[dict[str, Any]]) -> str:
    """" ¹" for an oracle row shown in another cell of its task, " ²" for a row copied from another suite."""
    sources = [row["reused_from"] for row in rows if row.get("reused_from")]
    copied = [source.endswith(" suite") for source in sources]
    marks = ("¹" if not all(copied) else "") + ("²" if any(copied) else "")
    return f" {marks}" if marks else ""


def _meta_weight_lines(summaries: list[Summary]) -> list[str]:
    """CLID-MU's mean meta weight on clean and on flipped samples (each sample's weight at its last visit)."""
    lines = []
    for s in summaries:
        clean, flipped = s.by_seed("meta_weight.clean"), s.by_seed("meta_weight.flipped")
        if clean and flipped:
            ratios = [flipped[seed] / clean[seed] for seed in clean if seed in flipped and clean[seed] > 0]
            clean, flipped = list(clean.values()), list(flipped.values())
            lines.append(f"- {s.cell} `{s.method}`: mean `meta_weight` clean {_mean_std(clean, 1, 3)}, flipped "
                         f"{_mean_std(flipped, 1, 3)}; flipped / clean {_mean_std(ratios, 1, 2)}")  # fmt: skip
    return ["CLID-MU's sample weights at the end of training:", "", *lines, ""] if lines else []


def _notes(method_order: Sequence[str], descriptions: dict[str, str]) -> list[str]:
    lines = [
        "## How to read this",
        "",
        "- Accuracy: clean test accuracy after each epoch; *best* = the maximum over epochs (an oracle choice of "
        "the epoch, as in the LNL literature), *last* = the final epoch. Where a method has several seeds: mean ± "
        "sample standard deviation (n − 1) over seeds.",
        "- Δ vs trainer: the method minus `trainer` (plain `transformers.Trainer` on the same noisy labels), paired "
        "by seed and averaged, in percentage points. *wall / trainer*: each run's wall time over `trainer`'s on the "
        "same machine (same seed where it ran there, else the mean of its runs there), averaged over the runs: a "
        "suite resumed on another machine never divides one machine's seconds by another's.",
        "- Detection: a training sample is flagged when its `noise_score` > 0.5 (hf_lnl methods: the noise "
        "report's score); precision / recall / F1 of the flags against the truly flipped labels; AUROC of the "
        "score. cleanlab: P/R/F1 of `find_label_issues`' mask; its AUROC uses the self-confidence score "
        "`1 - pred_probs[i, label_i]` of the same out-of-sample probabilities (our choice of score). Blank: the "
        "method has no score (`oracle`, `trainer`).",
        "- wall: the whole pipeline of the method (model building, every training incl. per-epoch evaluation, "
        "cleanlab's K + 1 trainings and its filter, the noise report), without the shared data loading and noise "
        "injection. s / step = Σ `train_runtime` / Σ optimiser steps over the method's trainings (per-epoch "
        "evaluation inside `train()` included, as for every method).",
        "- peak RSS: `resource.getrusage(RUSAGE_SELF).ru_maxrss` of the run's own process, forked from the suite "
        "process after the libraries and the task's data were loaded (so it includes that shared baseline, the "
        "same for every method of a task). RSS, not tracemalloc: torch's tensors are not seen by tracemalloc.",
        "- ¹ `oracle` does not depend on the noise cell: it is trained once per task and seed and its row is shown "
        "in every cell of the task. ² measured by another suite in the same folder (same task, cell, method and "
        "seed; the row's `reused_from` names it) and copied, not trained again.",
        "- Timings come from 2-core machines shared with other jobs (see the load average above), one torch "
        "thread per run unless the header says otherwise. Where the header lists several machines (a suite "
        "resumed elsewhere), *wall (s)* and *s / step* mix them; compare costs with *wall / trainer*, which "
        "does not.",
        "- Differences that belong to the methods: IDO trains on augmented views (images: random crop + flip in "
        "both stages, RandAugment + cutout for the strong view; text: 15% token masking) and restarts its "
        "optimiser and schedule for stage 2; CLID-MU draws its label-free meta set from the training data. No "
        "other method augments.",
    ]
    if descriptions:
        lines += ["", "Methods (same model, data, epochs, optimiser and schedule for all):", ""]
        lines += [f"- `{name}`: {descriptions[name]}" for name in method_order if name in descriptions]
    return lines


def _mean_std(values: list[float], scale: float, digits: int) -> str:
    if not values:
        return ""
    mean = scale * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {scale * statistics.stdev(values):.{digits}f}"


def _signed(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.1f}"


def _number(value: float, digits: int) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))


def _is_finite_number(value: Any) -> bool:
    """A measured number: int or float, not NaN or infinite (a missing field or a None is not)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def _lookup(row: dict[str, Any], name: str) -> Any:
    value: Any = row
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# ------------------------------------------------------------------------------------------------ plots
def plot_accuracy(rows: list[dict[str, Any]], path: str | Path, method_order: Sequence[str] = ()) -> str:
    """Best clean test accuracy vs noise rate, one panel per task, one colour per method, one marker per kind."""
    plt = _pyplot()
    summaries = summarize(rows, method_order)
    tasks = sorted({s.task for s in summaries}) or ["-"]
    methods = [m for m in method_order if any(s.method == m for s in summaries)]
    methods += sorted({s.method for s in summaries} - set(methods))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    dodge = {m: DODGE_PTS * (i - (len(methods) - 1) / 2) for i, m in enumerate(methods)}  # equal values stay visible
    figure, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        for method in methods:
            mine = [s for s in summaries if s.task == task and s.method == method]
            if method == "oracle" and mine:  # clean labels: one level per task, whatever the cell
                level = statistics.fmean(v for s in mine for v in s.values("best_accuracy"))
                axis.axhline(100 * level, color=colours[method], linestyle="--", label="oracle (clean labels)")
                continue
            label = method  # the method's first kind carries its legend entry
            for kind in sorted({s.noise_kind for s in mine}, key=lambda k: KIND_ORDER.get(k, 9)):
                points = sorted((s for s in mine if s.noise_kind == kind), key=lambda s: s.noise_rate)
                accuracies = [[100 * v for v in s.values("best_accuracy")] for s in points]
                axis.errorbar(
                    [100 * s.noise_rate + dodge[method] for s in points],
                    [statistics.fmean(a) for a in accuracies],
                    yerr=[statistics.stdev(a) if len(a) > 1 else 0.0 for a in accuracies],
                    color=colours[method],
                    marker=KIND_MARKERS.get(kind, "x"),
                    linestyle="-" if kind == "symmetric" else "none",
                    capsize=3,
                    label=label,
                )
                label = None
        axis.set_title(f"Task {task}")
        axis.set_xlim(*NOISE_RATE_AXIS)
        axis.set_xlabel("noise rate (%)  ·  ● symmetric  ■ asymmetric  ▲ instance")
        axis.set_ylabel("best clean test accuracy (%)")
        axis.grid(alpha=0.3)
    legend: dict[str, Any] = {}
    for axis in axes[0]:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        figure.legend(list(legend.values()), list(legend), loc="center right", fontsize=8)
    figure.tight_layout(rect=(0, 0, 0.85, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)


def plot_time(rows: list[dict[str, Any]], path: str | Path, method_order: Sequence[str] = ()) -> str:
    """Mean wall time per method (over cells and seeds), one panel per task, with the ratio to `trainer`."""
    plt = _pyplot()
    summaries = summarize(rows, method_order)
    tasks = sorted({s.task for s in summaries}) or ["-"]
    figure, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        walls: dict[str, list[float]] = {}
        ratios: dict[str, list[float]] = {}
        baselines = {s.cell: s for s in summaries if s.task == task and s.method == BASELINE}
        for s in summaries:
            if s.task == task:
                walls.setdefault(s.method, []).extend(s.values("wall_s"))
                ratio = time_ratio(s, baselines.get(s.cell))
                ratios.setdefault(s.method, []).extend([ratio] if math.isfinite(ratio) else [])
        names = [m for m in method_order if m in walls] + sorted(set(walls) - set(method_order))
        means = [statistics.fmean(walls[m]) for m in names]
        axis.barh(names, means, color="#4c72b0")
        for i, (name, mean) in enumerate(zip(names, means, strict=True)):
            label = f"{mean:.0f} s" + (f"  ({statistics.fmean(ratios[name]):.1f}×)" if ratios[name] else "")
            axis.text(mean, i, " " + label, va="center", fontsize=8)
        axis.invert_yaxis()
        axis.set_xlabel("wall time of the whole pipeline (s), mean over cells and seeds")
        axis.set_title(f"Task {task}")
        axis.set_xlim(0, 1.35 * max(means, default=1))
    figure.suptitle("in brackets: wall time / trainer's on the same machine, mean over cells", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------------------ writing
def write_report(
    jsonl: str | Path,
    *,
    suite: str | None = None,
    command: str | None = None,
    planned: int | None = None,
    method_order: Sequence[str] = (),
    method_descriptions: dict[str, str] | None = None,
    task_titles: dict[str, str] | None = None,
    task_recipes: dict[str, str] | None = None,
) -> list[str]:
    """Rewrite `<suite>.md`, `<suite>_accuracy.png` and `<suite>_time.png` beside the suite's JSONL file.

    The header lists `command` and every other command recorded in the rows. Returns the written paths.
    """
    jsonl = Path(jsonl)
    suite = suite or jsonl.stem
    rows = read_rows(jsonl)
    commands = list(dict.fromkeys([*(row.get("command") for row in rows if row.get("command")), command or ""]))
    commands = [c for c in commands if c] or ["(unknown)"]
    ok = [row for row in latest_rows(rows).values() if row.get("status") == "ok"]
    plots: list[str] = []
    if ok:
        try:
            plots.append(plot_accuracy(ok, jsonl.with_name(f"{suite}_accuracy.png"), method_order))
            plots.append(plot_time(ok, jsonl.with_name(f"{suite}_time.png"), method_order))
        except ImportError:
            logger.warning("matplotlib is not installed: the report is written without plots.")
    text = render_markdown(
        suite,
        rows,
        commands=commands,
        planned=planned,
        method_order=method_order,
        method_descriptions=method_descriptions,
        task_titles=task_titles,
        task_recipes=task_recipes,
        plots=plots,
    )
    markdown = jsonl.with_name(f"{suite}.md")
    temporary = markdown.with_name(markdown.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, markdown)  # readers never see a half-written table
    return [str(markdown), *plots]


def script_command(script: str, argv: list[str] | None) -> str:
    """The command line that ran `script` (relative to the repository), for a report's header."""
    arguments = sys.argv[1:] if argv is None else argv
    return "python " + shlex.join([os.path.relpath(script, Path(__file__).resolve().parent.parent), *arguments])


def publish(text: str, path: str | Path) -> None:
    """Print a Markdown report and write it to `path` (folders created)."""
    print(text)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text + "\n")
    print(f"written to {path}")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else the platform's (e.g. "AMD EPYC")."""
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or "unknown CPU"


def machine_line() -> str:
    """CPU model, cores, memory and OS, in one line (recorded with every run)."""
    cpu = cpu_model()
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    return f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}"
