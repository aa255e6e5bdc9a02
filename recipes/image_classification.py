"""Fine-tune an image classifier (ViT) on noisy labels with `NoisyLabelTrainer`, then print the clean test accuracy.

Offline defaults: Fashion-MNIST from the Debian package `dataset-fashion-mnist` (scikit-learn's digits when it is
absent), the small ViT of the benchmark protocol built from a config, 40% symmetric noise on 10,000 training images,
3 epochs, `lnl_method=none`. About a minute on 2 CPU cores. Images are transformed on the fly (`with_transform`),
so the recipe sets `remove_unused_columns=False`.

Usage:

    # the quick default run
    python recipes/image_classification.py

    # the benchmark setting (PROTOCOL Task B) with IDO
    python recipes/image_classification.py --config recipes/configs/image_fashion_mnist_vit.yaml --lnl_method ido

    # a pretrained ViT on CIFAR-10 with 40% asymmetric noise (needs network)
    python recipes/image_classification.py --model_name_or_path google/vit-base-patch16-224 --dataset_name cifar10 \\
        --image_column img --noise_type asymmetric --noise_class_map cifar10 --noise_rate 0.4 \\
        --per_device_train_batch_size 128 --learning_rate 1e-2 --optim sgd --bf16 true

    # CIFAR-10N human noise: the label file of the CIFAR-N release and the key to use
    python recipes/image_classification.py --model_name_or_path google/vit-base-patch16-224 --dataset_name cifar10 \\
        --image_column img --noise_type none --human_noise_file CIFAR-10_human.pt --human_noise_key worse_label

    # many GPUs; on CPU the same command runs 2 gloo processes, for testing
    accelerate launch --multi_gpu --num_processes 2 recipes/image_classification.py --lnl_method ido

Every `NoisyLabelConfig` (and so every `TrainingArguments`) field is a flag or a YAML key.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipes/*.py, also under `accelerate launch`

from common import add_noise, check_noise_arguments, parse_args, report_results, resume_argument  # noqa: E402
from data import parse_class_map, take_subset  # noqa: E402
from image_data import fashion_mnist_available, load_digits, load_fashion_mnist, to_pixel_values  # noqa: E402
from transformers import (  # noqa: E402
    AutoImageProcessor,
    AutoModelForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
    set_seed,
)

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer  # noqa: E402
from hf_lnl.human_noise import attach_human_noise  # noqa: E402
from hf_lnl.metrics import compute_accuracy_metrics  # noqa: E402

OFFLINE_DATASETS = ("fashion_mnist", "digits")
SMALL_VIT = dict(  # PROTOCOL Task B: a small ViT trained from scratch on 32×32 grey images
    image_size=32, patch_size=4, num_channels=1, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
    intermediate_size=128,
)
RECIPE_DEFAULTS = {
    "output_dir": "outputs/image_classification",
    "num_train_epochs": 3,
    "learning_rate": 1e-3,
    "weight_decay": 0.05,
    "per_device_train_batch_size": 128,
    "per_device_eval_batch_size": 256,
    "warmup_steps": 0.05,
    "logging_steps": 20,
    "save_strategy": "no",
    "seed": 0,
}


@dataclass
class ScriptArguments:
    """What to train on: the model, the data and the label noise (training settings are `NoisyLabelConfig`'s)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Model path or Hub id (e.g. google/vit-base-patch16-224); default: a small ViT."},
    )
    dataset_name: str = field(
        default="fashion_mnist",
        metadata={"help": "'fashion_mnist' or 'digits' (offline), or a `datasets.load_dataset` name (network)."},
    )
    image_column: str = field(default="image", metadata={"help": "Column with the images (PIL or arrays)."})
    train_split: str = field(default="train", metadata={"help": "Training split of a Hub dataset."})
    test_split: str = field(default="test", metadata={"help": "Test split of a Hub dataset."})
    noise_type: str = field(default="symmetric", metadata={"help": "none, symmetric, asymmetric or instance."})
    noise_rate: float = field(default=0.4, metadata={"help": "Synthetic noise rate in [0, 1]."})
    noise_class_map: str | None = field(
        default=None, metadata={"help": "Asymmetric map: 'cifar10', 'fashion_mnist' or JSON; default i -> i+1."}
    )
    human_noise_file: str | None = field(
        default=None, metadata={"help": "CIFAR-N label file (needs noise_type none)."}
    )
    human_noise_key: str = field(default="aggre_label", metadata={"help": "Which labels of human_noise_file."})
    train_subset: int | None = field(default=10000, metadata={"help": "Training images kept (0: all)."})
    eval_subset: int | None = field(default=None, metadata={"help": "Test images kept (default: all)."})

    def __post_init__(self) -> None:
        check_noise_arguments(self.noise_type, self.noise_rate, self.human_noise_file)
        if self.train_subset == 0:
            self.train_subset = None


def main(script_args: ScriptArguments, training_args: NoisyLabelConfig) -> dict[str, float]:
    """Train, evaluate on the clean test set, print the accuracy (main process) and return the metrics."""
    set_seed(training_args.seed)
    training_args.remove_unused_columns = False  # with_transform datasets: the trainer must not drop columns
    with training_args.main_process_first(desc="load and noise the data"):
        data, name = _load(script_args)
        train = data["train"]
        if script_args.human_noise_file is not None:  # before any subset: the file follows the original row order
            train = attach_human_noise(train, script_args.human_noise_file, script_args.human_noise_key)
        train = take_subset(train, script_args.train_subset)
        test = take_subset(data["test"], script_args.eval_subset)
        extra: dict[str, Any] = {}
        if script_args.noise_type == "asymmetric":
            extra["class_map"] = parse_class_map(script_args.noise_class_map)
        elif script_args.noise_type == "instance":
            extra["image_column"] = "image"
        train, noise_note = add_noise(
            train, script_args.noise_type, script_args.noise_rate, training_args.seed,
            script_args.human_noise_file is not None, **extra,
        )
    classes = train.features["label"].names
    model, processor = _model_and_processor(script_args.model_name_or_path, classes)
    transform = _transform(processor, offline=name in OFFLINE_DATASETS)
    trainer = NoisyLabelTrainer(
        model=model,
        args=training_args,
        train_dataset=train.with_transform(transform),
        eval_dataset=test.with_transform(transform),
        processing_class=processor,
        compute_metrics=compute_accuracy_metrics,
    )
    trainer.train(resume_from_checkpoint=resume_argument(training_args.resume_from_checkpoint))
    metrics = trainer.evaluate(test.with_transform(transform), metric_key_prefix="test")
    if training_args.save_strategy != "no":
        trainer.save_model()
    lines = [
        f"model: {script_args.model_name_or_path or 'small ViT from a config (PROTOCOL Task B)'}",
        f"data: {name}, {len(train)} train / {len(test)} test",
        f"noise: {noise_note}",
    ]
    return report_results(trainer, metrics, lines)


def _load(script_args: ScriptArguments) -> tuple[datasets.DatasetDict, str]:
    name = script_args.dataset_name
    if name == "fashion_mnist" and not fashion_mnist_available():
        print("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): using scikit-learn's digits.")
        name = "digits"
    if name == "fashion_mnist":
        return load_fashion_mnist(), name
    if name == "digits":
        return load_digits(), name
    raw = datasets.load_dataset(name)
    splits = {"train": raw[script_args.train_split], "test": raw[script_args.test_split]}
    for key, split in splits.items():
        if script_args.image_column != "image":
            split = split.rename_column(script_args.image_column, "image")
        label = next(c for c in ("label", "labels", "fine_label") if c in split.column_names)
        splits[key] = split.rename_column(label, "label") if label != "label" else split
    return datasets.DatasetDict(splits), name


def _model_and_processor(model_name_or_path: str | None, classes: list[str]):
    labels = {"num_labels": len(classes), "id2label": dict(enumerate(classes)),
              "label2id": {c: i for i, c in enumerate(classes)}}
    if model_name_or_path is None:
        model = ViTForImageClassification(ViTConfig(**SMALL_VIT, **labels))
        processor = ViTImageProcessor(image_mean=[0.5], image_std=[0.5], size={"height": 32, "width": 32})
        return model, processor
    model = AutoModelForImageClassification.from_pretrained(model_name_or_path, ignore_mismatched_sizes=True, **labels)
    return model, AutoImageProcessor.from_pretrained(model_name_or_path)


def _transform(processor, offline: bool):
    """Batch transform: uint8 arrays (offline sets) or PIL images → `pixel_values`; keeps the label."""

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        if offline:
            pixels = torch.from_numpy(to_pixel_values(np.stack([np.asarray(i) for i in batch["image"]])))
        else:
            images = [image.convert("RGB") for image in batch["image"]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": torch.as_tensor(batch["label"])}

    return transform


if __name__ == "__main__":
    main(*parse_args(ScriptArguments, RECIPE_DEFAULTS))
