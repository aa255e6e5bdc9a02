"""What both recipes share: argument parsing with YAML configs, synthetic noise, and the closing summary."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import yaml
from transformers import HfArgumentParser

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer
from hf_lnl.metrics import noise_detection_metrics
from hf_lnl.noise import add_label_noise

NOISE_TYPES = ("none", "symmetric", "asymmetric", "instance")


def parse_args(
    script_class: type, defaults: dict[str, Any], argv: list[str] | None = None
) -> tuple[Any, NoisyLabelConfig]:
    """Flags, a YAML file, or `--config FILE` plus overriding flags; the recipe's `defaults` underneath."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((script_class, NoisyLabelConfig))
    config_file = None
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        config_file, argv = argv[0], []
    elif "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise SystemExit("--config needs a YAML file.")
        config_file, argv = argv[at + 1], argv[:at] + argv[at + 2 :]
    defaults = dict(defaults)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
        # Several processes without GPUs (a gloo test run): without use_cpu, TrainingArguments sees an initialised
        # process group but no distributed mode, and every process trains on its own.
        defaults["use_cpu"] = True
    if config_file is not None:
        defaults.update(read_yaml(config_file, parser))
    parser.set_defaults(**defaults)
    return tuple(parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False))


def read_yaml(path: str, parser: HfArgumentParser) -> dict[str, Any]:
    """A YAML mapping of argument names to values; unknown keys are an error naming them."""
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"{path}: expected a mapping of argument names to values.")
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SystemExit(f"{path}: unknown keys {unknown}; keys are ScriptArguments / NoisyLabelConfig fields.")
    return values


def check_noise_arguments(noise_type: str, noise_rate: float, human_noise_file: str | None) -> None:
    """Clear errors for the recipes' noise flags."""
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"noise_type={noise_type!r}; choose one of {', '.join(NOISE_TYPES)}.")
    if not 0.0 <= noise_rate <= 1.0:
        raise ValueError(f"noise_rate must lie in [0, 1], got {noise_rate}.")
    if human_noise_file is not None and noise_type != "none":
        raise ValueError("human_noise_file replaces the labels: add --noise_type none to use it alone.")


def add_noise(train, kind: str, rate: float, seed: int, human_noise: bool, **extra: Any):
    """Synthetic noise on the training split; returns (dataset, a one-line description)."""
    if kind == "none":
        return train, "labels as given" if not human_noise else "human labels"
    train, summary = add_label_noise(train, kind, rate, seed=seed, return_summary=True, **extra)
    return train, f"{kind} {rate:.0%} requested, {summary.realized_rate:.1%} of the labels flipped (seed {seed})"


def report_results(
    trainer: NoisyLabelTrainer, test_metrics: dict[str, float], lines: list[str]
) -> dict[str, float]:
    """Print the run's summary on the main process (the accuracy last) and return test + detection metrics."""
    args = trainer.args
    detection: dict[str, float] = {}
    if trainer.tracker is not None and trainer.label_info.clean_labels is not None:
        detection = noise_detection_metrics(trainer.noise_report(), threshold=args.noise_score_threshold)
    if trainer.is_world_process_zero():
        print()
        for line in [*lines, f"lnl_method: {args.lnl_method}"]:
            print(line)
        if detection:
            print(
                "noise detection: "
                f"precision {detection['precision']:.3f}, recall {detection['recall']:.3f}, "
                f"f1 {detection['f1']:.3f}, auroc {detection['auroc']:.3f} ({detection['num_flagged']} of "
                f"{detection['num_samples']} flagged, true noise rate {detection['true_noise_rate']:.1%})"
            )
        print(f"clean test accuracy: {100 * test_metrics['test_accuracy']:.1f}%")
    return {**test_metrics, **{f"noise_detection_{k}": float(v) for k, v in detection.items()}}


def resume_argument(value: str | None) -> str | bool | None:
    """`--resume_from_checkpoint last` (or true) resumes from the newest checkpoint in output_dir."""
    return True if value in ("true", "True", "last") else value
