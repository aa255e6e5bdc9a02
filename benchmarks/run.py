"""Benchmark suites of PROTOCOL.md: accuracy, noise detection and cost of hf_lnl's methods against plain Trainer,
the clean-label oracle and cleanlab, with the same model, data, epochs, optimiser and schedule for every method.

Each run (task, noise cell, method, seed) is appended as one JSON line to `<output>/<suite>.jsonl` as soon as it
ends, and `<suite>.md` (table) and `<suite>_accuracy.png` / `<suite>_time.png` are rebuilt after every run. Running
the same command again resumes: a run already in the JSONL with status "ok" is skipped, a failed one is retried.
A run another suite already measured in the same folder (the `full` suite's seed 0 of a headline cell) is copied
with `reused_from`, not trained again; so is `oracle` from another cell of its task (it ignores the noise).
Runs are ordered so that every method gets seed 0 on every cell first, cheap before expensive: a partial suite is
already a useful table.

Each run trains in its own process, forked from this one once the libraries and the task's data are loaded, so
its peak RSS is its own and a crash costs one run; it uses one torch thread unless `--threads` says otherwise. The
run's full log goes to `<output>/logs/<suite>/`.

Suites:
    quick     Task C (digits + tiny ViT, sym 40), 8 methods, seed 0. The CI smoke test; a few minutes on 2 cores.
    headline  Task A sym40 and asym40, Task B sym40, Task B2 sym40 and asym40, Task R (real crowd noise); seeds 0-2
              for oracle, trainer, ido, clid_mu_head, cleanlab_k3, seed 0 for none, gce, sce, clid_mu_all,
              cleanlab_k5 (oracle and clean_subset not on Task R: it has no clean labels). Hours on 2 CPU cores.
    full      Every cell of Tasks A, B, B2 and R, every method, seed 0.

Usage:
    python benchmarks/run.py --suite quick
    python benchmarks/run.py --suite headline --dry-run          # list the runs: done / copy / pending
    nohup python benchmarks/run.py --suite headline > benchmarks/results/headline.log 2>&1 &
    python benchmarks/run.py --suite full --tasks B --methods trainer,ido --seeds 0 1 2
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed CPU, spinning threads of a 2-thread
# torch slow a tiny model down 10-50x (measured here) and steal the other jobs' cores. Read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, str(BENCHMARKS))

from methods import METHODS  # noqa: E402
from report import machine_line, read_rows, run_key, write_report  # noqa: E402
from tasks import TASKS, TaskData, load_task  # noqa: E402

from hf_lnl import NoisyLabelConfig  # noqa: E402

DEFAULT_OUTPUT = BENCHMARKS / "results"
QUICK_METHODS = ("oracle", "trainer", "none", "ido", "clid_mu_head", "gce", "sce", "cleanlab_k3")
HEADLINE_SEEDED = ("oracle", "trainer", "ido", "clid_mu_head", "cleanlab_k3")  # 3 seeds; the others seed 0
RESULT_POLL_S = 1.0
# One torch thread per run: on the shared 2-core machine a MiniLM step took 1.7 s with 1 thread, 2.7 s with 2
# (passive OpenMP) and 5-12 s with 2 spinning threads, while other jobs ran. Use --threads 0 on an idle machine.
DEFAULT_THREADS = 1
IDENTITY = ("suite", "task", "cell", "noise_kind", "noise_rate", "method", "seed")  # a row's, set by make_row
VERSIONED = ("hf_lnl", "torch", "transformers", "datasets", "cleanlab")


@dataclass(frozen=True)
class Suite:
    """A suite: the (task, cell) pairs and, per method, the seeds it runs."""

    name: str
    cells: tuple[tuple[str, str], ...]
    seeds: dict[str, tuple[int, ...]]


SUITES: dict[str, Suite] = {
    "quick": Suite("quick", (("C", "sym40"),), {m: (0,) for m in QUICK_METHODS}),
    "headline": Suite(
        "headline",
        (("A", "sym40"), ("A", "asym40"), ("B", "sym40"), ("B2", "sym40"), ("B2", "asym40"), ("R", "real")),
        {m: (0, 1, 2) if m in HEADLINE_SEEDED else (0,) for m in METHODS},
    ),
    "full": Suite(
        "full",
        tuple((task, cell.name) for task in ("A", "B", "B2", "R") for cell in TASKS[task].cells),
        {m: (0,) for m in METHODS},
    ),
}


@dataclass(frozen=True)
class Run:
    """One benchmark run: a method on a task's noise cell with one seed."""

    task: str
    cell: str
    method: str
    seed: int

    @property
    def key(self) -> tuple:
        cell = TASKS[self.task].cell(self.cell)
        return (self.task, cell.kind, round(cell.rate, 4), self.method, self.seed)

    @property
    def label(self) -> str:
        return f"Task {self.task} {self.cell} {self.method} seed {self.seed}"

    @property
    def cost(self) -> float:
        return TASKS[self.task].cost * METHODS[self.method].cost


# ------------------------------------------------------------------------------------------------ planning
def plan_runs(
    suite: Suite,
    tasks: list[str] | None = None,
    methods: list[str] | None = None,
    seeds: list[int] | None = None,
    cells: list[str] | None = None,
) -> list[Run]:
    """The suite's runs in execution order: by seed (seed 0 of everything first), then cheap before expensive.

    `tasks` / `methods` / `cells` keep only those; `seeds` replaces every method's seeds.

    Example:
        >>> [run.method for run in plan_runs(SUITES["quick"])][:3]
        ['oracle', 'trainer', 'none']
    """
    runs = []
    for task, cell in suite.cells:
        if (tasks and task not in tasks) or (cells and cell not in cells):
            continue
        for method, method_seeds in suite.seeds.items():
            if methods and method not in methods:
                continue
            if METHODS[method].needs_clean_labels and not TASKS[task].cell(cell).has_clean_labels:
                continue  # the oracle and the clean subset need clean labels, which real noise does not have
            runs += [Run(task, cell, method, seed) for seed in (seeds if seeds is not None else method_seeds)]
    cell_rank = {pair: i for i, pair in enumerate(suite.cells)}
    method_rank = {name: i for i, name in enumerate(METHODS)}
    return sorted(runs, key=lambda r: (r.seed, r.cost, cell_rank[(r.task, r.cell)], method_rank[r.method]))


def completed_keys(rows: list[dict[str, Any]]) -> set[tuple]:
    """Keys of the runs with a successful row (failed runs are not completed: they are retried)."""
    return {run_key(row) for row in rows if row.get("status") == "ok"}


# ------------------------------------------------------------------------------------------------ one run
def run_in_child(run: Run, data: TaskData, options: argparse.Namespace, log_path: Path) -> dict[str, Any]:
    """Fork a process for `run` and return its result row (status "error" when it raised or died)."""
    context = multiprocessing.get_context("fork")  # the child shares the loaded libraries and data
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(run, data, options.threads, log_path, sender, options.settings),
                              daemon=True)  # fmt: skip
    process.start()
    sender.close()
    result = None
    try:
        while result is None:
            if receiver.poll(RESULT_POLL_S):
                result = receiver.recv()
            elif not process.is_alive():
                break
    except EOFError:
        result = None
    except KeyboardInterrupt:
        process.terminate()
        raise
    process.join()
    if result is None:
        result = {"status": "error", "error": f"run process ended with exit code {process.exitcode} (killed?)"}
    return result


def _child(run: Run, data: TaskData, threads: int | None, log_path: Path, sender: Any,
           settings: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Body of a run's process: logs to `log_path`, progress lines to the suite's stdout, result to `sender`."""
    progress_fd = os.dup(1)
    sys.stdout.flush()
    sys.stderr.flush()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)

    def progress(message: str) -> None:
        os.write(progress_fd, f"      {message}\n".encode())
        print(message, flush=True)

    try:
        import datasets
        import torch
        import transformers
        from methods import run_method

        transformers.logging.set_verbosity_warning()
        datasets.disable_progress_bars()
        if threads:
            torch.set_num_threads(threads)
        result = {"status": "ok", **run_method(run.method, TASKS[run.task], data, TASKS[run.task].cell(run.cell),
                                                run.seed, progress, settings)}  # fmt: skip
    except Exception as error:  # noqa: BLE001 - a failed run is recorded and the suite goes on
        text = traceback.format_exc()
        print(text, flush=True)
        result = {"status": "error", "error": f"{type(error).__name__}: {error}", "traceback": text[-4000:]}
    sender.send(result)
    sender.close()


def reused_oracle(run: Run, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An `oracle` row of the same task and seed from another cell: the oracle ignores the noise cell."""
    for row in reversed(rows):
        if (row.get("status") == "ok" and row["method"] == "oracle" and row["task"] == run.task
                and int(row["seed"]) == run.seed):  # fmt: skip
            return row
    return None


def reused_from_other_suite(run: Run, other_rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The same run (task, cell, method, seed; `--set` overrides only of default values) measured by another suite,
    e.g. the `full` suite's seed 0 of a headline cell: suites differ only in the runs they plan, so none trains twice.

    Example:
        >>> reused_from_other_suite(Run("A", "sym40", "ido", 0), {"headline": read_rows("headline.jsonl")})
    """
    for rows in other_rows.values():
        for row in reversed(rows):
            if run_key(row) == run.key and row.get("status") == "ok" and _are_defaults(row.get("settings") or {}):
                return row
    return None


def _are_defaults(settings: dict[str, Any]) -> bool:
    """Whether every `--set` override equals `NoisyLabelConfig`'s default now (an ablation of today's default)."""
    defaults = _config_defaults()
    return all(key in defaults and defaults[key] == value for key, value in settings.items())


@functools.cache
def _config_defaults() -> dict[str, Any]:
    return {field.name: field.default for field in dataclasses.fields(NoisyLabelConfig)}


def make_row(run: Run, suite: str, command: str, result: dict[str, Any], started: str, loads: tuple,
             settings: dict[str, Any] | None = None) -> dict:  # fmt: skip
    """The JSONL row of a finished run: its identity, its measurements, and when, where and how it ran (a reused
    result keeps those of the run that measured it: its machine decides its time ratios)."""
    cell = TASKS[run.task].cell(run.cell)
    provenance = {
        "started_at": started,
        "finished_at": _now(),
        "loadavg_start": loads[0],
        "loadavg_end": loads[1],
        "command": command,
        **({"settings": settings} if settings else {}),
        "machine": machine_line(),
        "versions": _versions(),
        "hf_lnl_source": _source_digest(),
    }
    return {
        "suite": suite,
        "task": run.task,
        "cell": run.cell,
        "noise_kind": cell.kind,
        "noise_rate": cell.rate,
        "method": run.method,
        "seed": run.seed,
        **result,
        **{key: value for key, value in provenance.items() if key not in result},
    }


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (an interrupted suite loses at most the run in progress)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(row, sort_keys=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# ------------------------------------------------------------------------------------------------ the suite
def run_suite(options: argparse.Namespace) -> int:
    """Plan, skip what is done, run the rest one by one, and rewrite the report after each run."""
    suite = SUITES[options.suite]
    output = Path(options.output)
    jsonl = output / f"{suite.name}.jsonl"
    plan = plan_runs(suite, options.tasks, options.methods, options.seeds, options.cells)
    if not plan:  # before anything is written: an empty plan is a mistyped filter, not a finished suite
        cells = [f"{task} {cell}" for task, cell in suite.cells if not options.tasks or task in options.tasks]
        print(f"error: no run of the {suite.name} suite matches --tasks / --cells / --methods; its cells"
              f"{' for those tasks' if options.tasks else ''}: {', '.join(cells) or 'none'}. Choose among them, or "
              "use --suite full, which has every task's cells and methods.", file=sys.stderr)  # fmt: skip
        return 2
    rows = read_rows(jsonl)
    # Runs other suites measured, to copy instead of training; none under --set (an ablation measures its own).
    other_rows = {} if options.settings else {
        name: read_rows(output / f"{name}.jsonl") for name in SUITES if name != suite.name
    }  # fmt: skip
    done = completed_keys(rows)
    pending = [run for run in plan if run.key not in done]
    print(f"suite {suite.name}: {len(plan)} runs planned, {len(plan) - len(pending)} already in {jsonl}, "
          f"{len(pending)} to run", flush=True)  # fmt: skip
    if options.dry_run:
        for number, run in enumerate(plan, start=1):
            copied = reused_from_other_suite(run, other_rows) is not None
            state = "done   " if run.key in done else "copy   " if copied else "pending"
            print(f"  [{number:>3}/{len(plan)}] {state} {run.label}")
        return 0
    report_kwargs = dict(
        suite=suite.name,
        command=options.command,
        planned=len(plan),
        method_order=list(METHODS),
        method_descriptions={name: spec.description for name, spec in METHODS.items()},
        task_titles={name: spec.title for name, spec in TASKS.items()},
        task_recipes={name: spec.recipe for name, spec in TASKS.items()},
    )
    start, failures, cache, executed = time.perf_counter(), 0, {}, 0
    for run in pending:
        if options.max_runs is not None and executed >= options.max_runs:
            print(f"stopping after --max-runs {options.max_runs}", flush=True)
            break
        executed += 1
        number = plan.index(run) + 1
        print(f"[{number:>3}/{len(plan)}] {run.label}: start (suite elapsed {_clock(time.perf_counter() - start)})",
              flush=True)  # fmt: skip
        started, load_start = _now(), os.getloadavg()[0]
        copied = reused_from_other_suite(run, other_rows)
        oracle = reused_oracle(run, rows) if copied is None and run.method == "oracle" else None
        if copied is not None or oracle is not None:
            source = copied or oracle
            result = {k: v for k, v in source.items() if k not in IDENTITY}
            result["reused_from"] = f"{source['suite']} suite" if copied else source["cell"]
        else:
            try:
                if run.task not in cache:
                    cache[run.task] = load_task(run.task, output / "cache")
                data = cache[run.task]
                log_path = output / "logs" / suite.name / f"{run.task}_{run.cell}_{run.method}_seed{run.seed}.log"
                result = run_in_child(run, data, options, log_path)
                if data.backbone is not None:  # which build of a backbone pretrained here (not bit-identical
                    result["backbone"] = data.backbone  # across machines): rows of two builds are not comparable
            except Exception as error:  # noqa: BLE001 - e.g. a data set that is not installed
                result = {"status": "error", "error": f"{type(error).__name__}: {error}"}
        row = make_row(run, suite.name, options.command, result, started, (load_start, os.getloadavg()[0]),
                       options.settings)  # fmt: skip
        append_row(jsonl, row)
        rows.append(row)
        write_report(jsonl, **report_kwargs)
        print(f"[{number:>3}/{len(plan)}] {run.label}: {_outcome(row)} (suite elapsed "
              f"{_clock(time.perf_counter() - start)})", flush=True)  # fmt: skip
        failures += row["status"] != "ok"
    write_report(jsonl, **report_kwargs)  # also when nothing ran (e.g. after changing the report code)
    print(f"suite {suite.name}: report in {output / (suite.name + '.md')}; {failures} failed run(s) this time",
          flush=True)  # fmt: skip
    return 1 if failures else 0


def _outcome(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"ERROR {row.get('error', '')}".splitlines()[0]
    text = (f"best {100 * row['best_accuracy']:.1f}%, last {100 * row['last_accuracy']:.1f}%, "
            f"wall {row['wall_s']:.0f} s, {row['s_per_step']:.3f} s/step")  # fmt: skip
    if row.get("detection"):
        text += f", detection F1 {row['detection']['f1']:.3f}"
    return text + (f" (reused from {row['reused_from']})" if row.get("reused_from") else "")


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _source_digest() -> str:
    """First 12 hex digits of a SHA-256 over hf_lnl's Python files: which code a run used (the tree may be dirty)."""
    import hashlib

    import hf_lnl

    digest = hashlib.sha256()
    package = Path(hf_lnl.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; `command` is the exact command, for the report's header."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--suite", choices=sorted(SUITES), required=True)
    parser.add_argument("--tasks", type=_names(TASKS), default=None, help="Only these tasks, e.g. A,B.")
    parser.add_argument("--cells", type=_cell_names, default=None, help="Only these noise cells, e.g. sym40,asym40.")
    parser.add_argument("--methods", type=_names(METHODS), default=None, help=f"Only these, from {list(METHODS)}.")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Use these seeds for every method.")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="Folder of <suite>.jsonl / .md / plots.")
    parser.add_argument("--max-runs", type=int, default=None, help="Stop after this many runs (for testing).")
    parser.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[], metavar="KEY=VALUE",
                        help="A NoisyLabelConfig override for the hf_lnl methods, a method's setting or one of the "
                        "task's training settings (warmup_steps=0); an ablation: repeatable, needs --output "
                        "(ablations stay out of the suite's own results).")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true",
                        help="List the runs in order (done / copied from another suite / pending); exit.")  # fmt: skip
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="torch threads per run; 0 keeps torch's default (one per core).")  # fmt: skip
    options = parser.parse_args(argv)
    options.settings = dict(options.settings)
    if options.settings and Path(options.output).resolve() == DEFAULT_OUTPUT.resolve():
        parser.error("--set makes an ablation: give it its own --output folder (e.g. --output /tmp/ablation).")
    arguments = sys.argv[1:] if argv is None else argv
    options.command = "python " + shlex.join([os.path.relpath(__file__, REPO), *arguments])
    return options


def parse_setting(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as JSON when it parses (1.0, true, "x"), else as a string."""
    key, separator, value = text.partition("=")
    if not separator or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. clid_lookahead_lr=0.1), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _cell_names(value: str) -> list[str]:
    known = {cell.name for task in TASKS.values() for cell in task.cells}
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown cell(s) {unknown}; choose from {', '.join(sorted(known))}")
    return names


def _names(choices: dict[str, Any]) -> Any:
    def parse(value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(choices)}")
        return names

    return parse


def main(argv: list[str] | None = None) -> int:
    return run_suite(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
