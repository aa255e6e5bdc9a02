"""What both recipes share, the way transformers' `run_glue.py` and TRL's scripts do it: the model arguments,
flags and YAML files, logging, the splits (a validation split carved from the noisy training split, subsets,
synthetic noise) and the ending (model and processor saved, metrics files, trainer state, the card or a push, and
the plain-`Trainer` comparison from `reference_runs.jsonl`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
import yaml
from data import add_source_index, take_subset
from transformers import HfArgumentParser

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer
from hf_lnl.human_noise import attach_human_noise
from hf_lnl.metrics import noise_detection_metrics
from hf_lnl.noise import add_label_noise

logger = logging.getLogger(__name__)

# Recorded recipe runs: after a method's run, the recorded plain-`Trainer` run (lnl_method none) with the same
# signature is printed beside it. Maintainers append a run with HF_LNL_RECORD_REFERENCE=1.
REFERENCE_RUNS = Path(__file__).resolve().with_name("reference_runs.jsonl")
RECORD_REFERENCE_ENV = "HF_LNL_RECORD_REFERENCE"
# With the model and data arguments, the training settings that make two runs comparable (the methods' own
# settings are what differs).
SIGNATURE_TRAINING_FIELDS = (
    "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
    "weight_decay", "warmup_steps", "lr_scheduler_type", "seed", "world_size", "bf16", "fp16",
)  # fmt: skip

NOISE_TYPES = ("none", "symmetric", "asymmetric", "instance")
VALIDATION_SPLIT_SEED = 0  # the validation split carved from the training split is the same for every run
LOG_FORMAT = "%(asctime)s - %(levelname)s - %(name)s - %(message)s"  # run_glue's


@dataclass
class ModelArguments:
    """The model to fine-tune (run_glue's names) and, optionally, LoRA adapters instead of every weight (TRL's)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model path or Hub id; default: the recipe's offline model."}
    )
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the model on the Hub."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run a Hub model's own modelling code."})
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters (and the head), not every weight."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules that get adapters; default: the attention's query and value."}
    )
    lora_modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules trained in full and saved with the adapters; default: the head."}
    )


@dataclass
class NoiseArguments:
    """Synthetic label noise on the training and validation labels (the test set stays clean)."""

    noise_type: str = field(
        default="symmetric", metadata={"help": "Synthetic label noise.", "choices": NOISE_TYPES}
    )
    noise_rate: float = field(default=0.4, metadata={"help": "Synthetic noise rate in [0, 1]."})
    noise_class_map: str | None = field(
        default=None,
        metadata={"help": "Asymmetric noise map: a named map (cifar10, fashion_mnist) or JSON; default i -> i+1."},
    )
    human_noise_file: str | None = field(
        default=None, metadata={"help": "CIFAR-N style label file (hf_lnl.human_noise); needs noise_type none."}
    )
    human_noise_key: str = field(default="aggre_label", metadata={"help": "Which labels of human_noise_file."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise_rate <= 1.0:
            raise ValueError(f"noise_rate must lie in [0, 1], got {self.noise_rate}.")
        if self.human_noise_file is not None and self.noise_type != "none":
            raise ValueError("human_noise_file replaces the labels: add --noise_type none to use it alone.")


# ------------------------------------------------------------------------------------------- arguments
def parse_args(
    data_class: type, defaults: dict[str, Any], argv: list[str] | None = None
) -> tuple[ModelArguments, Any, NoisyLabelConfig]:
    """`(model_args, data_args, training_args)` from flags, a YAML file, or `--config FILE` plus overriding flags;
    the recipe's `defaults` underneath. A wrong value of an enumerated setting is refused with argparse's
    "invalid choice" message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((ModelArguments, data_class, NoisyLabelConfig))
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


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true / false. YAML 1.1 (PyYAML's default) also reads yes / no / on / off as booleans,
    which turned `save_strategy: no` into False."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(path: str, parser: HfArgumentParser) -> dict[str, Any]:
    """A YAML mapping of argument names (or their aliases: `train_subset` for `max_train_samples`) to values, read
    with YAML 1.2 booleans (`save_strategy: no` stays "no"); unknown keys are an error naming them.

    String values reach argparse as if given on the command line, so `bf16: yes` and `learning_rate: 5e-5` work."""
    with open(path, encoding="utf-8") as handle:
        values = yaml.load(handle, Loader=_Yaml12Loader) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"{path}: expected a mapping of argument names to values.")
    names = {option.lstrip("-"): action.dest for action in parser._actions for option in action.option_strings}
    unknown = sorted(key for key in values if key not in names)
    if unknown:
        raise SystemExit(f"{path}: unknown keys {unknown}; keys are the recipe's and NoisyLabelConfig's arguments.")
    return {names[key]: value for key, value in values.items()}


def resume_argument(value: str | None) -> str | bool | None:
    """`--resume_from_checkpoint last` (or true) resumes from the newest checkpoint in output_dir."""
    return True if value in ("true", "True", "last") else value


# ---------------------------------------------------------------------------------------------- logging
def setup_logging(args: NoisyLabelConfig) -> None:
    """run_glue's logging: each message with its time, level and logger name; hf_lnl's, the recipe's, transformers'
    and datasets' messages at `--log_level` (`--log_level_replica` on the other processes)."""
    logging.basicConfig(format=LOG_FORMAT, datefmt="%m/%d/%Y %H:%M:%S", handlers=[logging.StreamHandler(sys.stdout)])
    level = args.get_process_log_level()
    for name in ("hf_lnl", "__main__", __name__):
        logging.getLogger(name).setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.info(f"Training arguments: {args}")


# ----------------------------------------------------------------------------------------------- splits
def prepare_splits(
    data: datasets.DatasetDict,
    data_args: Any,
    *,
    validation_fraction: float,
    seed: int,
    noise_options: Callable[[datasets.Dataset], dict[str, Any]] = lambda pool: {},
) -> tuple[dict[str, datasets.Dataset], str]:
    """The training, validation and test splits, and a one-line description of the label noise.

    Every row keeps its position in the split it came from as `source_index` (hf_lnl's noise report carries it).
    Without a validation split in `data`, `validation_fraction` of the training split becomes one: carved before
    any noise, then noised with the training rows, so it is what a user with noisy labels has; the test split stays
    clean and is evaluated once, at the end. Then `max_train_samples` / `max_eval_samples` / `max_predict_samples`.

    `noise_options(pool)` gives `add_label_noise`'s extra arguments for the rows being noised (instance noise needs
    their features).
    """
    train = data["train"]
    if data_args.human_noise_file is not None:  # before any split or subset: the file follows the original row order
        train = attach_human_noise(train, data_args.human_noise_file, data_args.human_noise_key)
    train = add_source_index(train)
    validation = add_source_index(data["validation"]) if "validation" in data else None
    if validation is None and validation_fraction > 0:
        carved = train.train_test_split(test_size=validation_fraction, seed=VALIDATION_SPLIT_SEED)
        train, validation = carved["train"], carved["test"]
    splits = {
        "train": take_subset(train, data_args.max_train_samples),
        "validation": take_subset(validation, data_args.max_eval_samples) if validation is not None else None,
        "test": take_subset(add_source_index(data["test"]), data_args.max_predict_samples) if "test" in data else None,
    }
    if data_args.noise_type == "none":
        return splits, "human labels" if data_args.human_noise_file is not None else "labels as given"
    noised = [splits["train"]] + ([splits["validation"]] if splits["validation"] is not None else [])
    pool = datasets.concatenate_datasets(noised) if len(noised) > 1 else noised[0]
    pool, summary = add_label_noise(
        pool, data_args.noise_type, data_args.noise_rate, seed=seed, return_summary=True, **noise_options(pool)
    )
    size = len(splits["train"])
    splits["train"] = pool.select(range(size))
    if splits["validation"] is not None:
        splits["validation"] = pool.select(range(size, len(pool)))
    which = "training and validation" if splits["validation"] is not None else "training"
    note = (
        f"{data_args.noise_type} {data_args.noise_rate:.0%} requested, {summary.realized_rate:.1%} of the {which} "
        f"labels flipped (seed {seed})"
    )
    return splits, note


def check_evaluation(args: NoisyLabelConfig, validation: datasets.Dataset | None) -> None:
    """A clear error when evaluation during training is asked for without a validation split."""
    if validation is None and args.eval_strategy != "no" and not args.clid_eval:
        raise SystemExit(
            f"eval_strategy={args.eval_strategy.value!r} needs a validation split: keep a validation share of the "
            "training split (--validation_split_percentage / --train_val_split), give one, or add --eval_strategy no."
        )


def apply_peft(
    model: Any, model_args: ModelArguments, *, task_type: str | None, target_modules: list[str],
    modules_to_save: list[str] | None = None,
) -> Any:  # fmt: skip
    """`model` with LoRA adapters when `--use_peft` (TRL's flags), else `model` itself."""
    if not model_args.use_peft:
        return model
    try:
        import peft
    except ImportError as error:
        raise SystemExit("--use_peft needs the peft package: pip install peft") from error
    config = peft.LoraConfig(
        task_type=task_type,
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=model_args.lora_target_modules or target_modules,
        modules_to_save=model_args.lora_modules_to_save or modules_to_save,
    )
    return peft.get_peft_model(model, config)


# ----------------------------------------------------------------------------------------------- ending
def run_signature(recipe: str, model_args: Any, data_args: Any, args: NoisyLabelConfig) -> dict[str, Any]:
    """What two recipe runs must share to be compared: the recipe, every model and data argument, and the training
    settings of `SIGNATURE_TRAINING_FIELDS` (not `lnl_method` or the methods' settings), as plain JSON values."""
    signature = {"recipe": recipe, **dataclasses.asdict(model_args), **dataclasses.asdict(data_args)}
    signature.update({name: getattr(args, name, None) for name in SIGNATURE_TRAINING_FIELDS})
    return json.loads(json.dumps(signature, default=str))


def recorded_test_accuracy(signature: dict[str, Any], lnl_method: str) -> float | None:
    """The test accuracy of the last run of `lnl_method` with this signature in `REFERENCE_RUNS`, or None."""
    if not REFERENCE_RUNS.is_file():
        return None
    rows = [json.loads(line) for line in REFERENCE_RUNS.read_text().splitlines() if line.strip()]
    matches = [r for r in rows if r["lnl_method"] == lnl_method and r["signature"] == signature]
    return matches[-1]["test_accuracy"] if matches else None


def _comparison_line(signature: dict[str, Any] | None, args: NoisyLabelConfig, results: dict) -> str | None:
    if signature is None or "test_accuracy" not in results or args.lnl_method == "none":
        return None
    plain = recorded_test_accuracy(signature, "none")
    if plain is None:
        return "plain Trainer: no run with these settings is recorded; run again with --lnl_method none to compare"
    gain = 100 * (results["test_accuracy"] - plain)
    return (
        f"plain Trainer (lnl_method none), same data, model, schedule and seed: {100 * plain:.1f}% "
        f"(recorded in recipes/{REFERENCE_RUNS.name}); {args.lnl_method}: {gain:+.1f} points"
    )


def _record_reference(signature: dict[str, Any], args: NoisyLabelConfig, results: dict, detection: dict) -> None:
    row = {
        "lnl_method": args.lnl_method,
        "test_accuracy": results["test_accuracy"],
        "noise_detection": {k: detection[k] for k in ("f1", "auroc") if k in detection},
        "signature": signature,
    }
    with REFERENCE_RUNS.open("a") as handle:
        handle.write(json.dumps(row, sort_keys=True) + "\n")
    print(f"recorded in {REFERENCE_RUNS}")


def train_and_save(
    trainer: NoisyLabelTrainer,
    splits: dict[str, datasets.Dataset | None],
    *,
    card: dict[str, Any],
    summary: list[str],
    signature: dict[str, Any] | None = None,
) -> dict[str, float]:
    """run_glue's ending: train (resuming when asked), save the model and its processor, the metrics
    (`train_results.json`, `eval_results.json`, `test_results.json`, `all_results.json`) and the trainer state,
    evaluate the validation split, then the test split once, and write the model card or push everything to the Hub.
    Prints the summary on the main process (the test accuracy last, then the recorded plain-`Trainer` run with the
    same `signature` when there is one) and returns the metrics."""
    args = trainer.args
    result = trainer.train(resume_from_checkpoint=resume_argument(args.resume_from_checkpoint))
    if not args.push_to_hub:  # with it, Trainer.save_model would push at once; push_to_hub saves it at the end
        trainer.save_model()
    metrics = {**result.metrics, "train_samples": len(splits["train"])}
    detection: dict[str, float] = {}
    if trainer.tracker is not None and trainer.label_info.clean_labels is not None:
        detection = noise_detection_metrics(trainer.noise_report(), threshold=args.noise_score_threshold)
        metrics.update({f"noise_detection_{k}": float(v) for k, v in detection.items()})
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    results = dict(metrics)
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if splits[split] is not None:
            metrics = trainer.evaluate(splits[split] if prefix == "test" else None, metric_key_prefix=prefix)
            metrics[f"{prefix}_samples"] = len(splits[split])
            trainer.log_metrics(prefix, metrics)
            trainer.save_metrics(prefix, metrics)
            results.update(metrics)
    if args.push_to_hub:
        trainer.push_to_hub(**card)
    else:
        trainer.create_model_card(**card)
    if trainer.is_world_process_zero():
        _print_summary(args, summary, detection, results)
        comparison = _comparison_line(signature, args, results)
        if comparison is not None:
            print(comparison)
        if signature is not None and os.environ.get(RECORD_REFERENCE_ENV) == "1" and "test_accuracy" in results:
            _record_reference(signature, args, results, detection)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Leave together: a process whose gloo group outlives the store's host (rank 0) aborts at exit.
        trainer.accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()
    return results


def _print_summary(args: NoisyLabelConfig, lines: list[str], detection: dict[str, float], results: dict) -> None:
    print()
    for line in [*lines, f"lnl_method: {args.lnl_method}", f"output: {args.output_dir}"]:
        print(line)
    if detection:
        print(
            "noise detection: "
            f"precision {detection['precision']:.3f}, recall {detection['recall']:.3f}, "
            f"f1 {detection['f1']:.3f}, auroc {detection['auroc']:.3f} ({detection['num_flagged']} of "
            f"{detection['num_samples']} flagged, true noise rate {detection['true_noise_rate']:.1%})"
        )
    if "eval_accuracy" in results:
        print(f"validation accuracy: {100 * results['eval_accuracy']:.1f}%")
    if "test_accuracy" in results:
        print(f"clean test accuracy: {100 * results['test_accuracy']:.1f}%")
