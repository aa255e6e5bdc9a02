"""Fine-tune an image classifier (ViT) on noisy labels with `NoisyLabelTrainer`, as transformers'
`run_image_classification.py` does with `Trainer`: the model and image processor, the metrics files, the trainer
state, the noise report and the model card end up in `output_dir` (or on the Hub with `--push_to_hub`), and the clean
test accuracy is printed last.

Offline defaults: Fashion-MNIST from the Debian package `dataset-fashion-mnist`, 40% symmetric noise on 10,000
training images, 10% of the training split held out as the validation set (`--train_val_split`; its labels noised
like the training labels), 3 epochs, `lnl_method=none`, and a *pretrained* small ViT (PROTOCOL Task B2): pretrained
on the 50,000 Fashion-MNIST training images outside the labelled 10,000 with a coarse 5-class label space, by
`benchmarks/pretrain_vit.py`. It is built on first use (about 25 minutes on 2 CPU cores, with a progress bar; or
beforehand with `python benchmarks/pretrain_vit.py`) and cached in `~/.cache/hf_lnl/pretrained_vit`;
`--offline_model scratch` trains the same ViT from scratch instead (PROTOCOL Task B). Without Fashion-MNIST the recipe
falls back to scikit-learn's digits and a ViT from scratch, and says so. The clean test set is evaluated once, at the
end: about a minute on 2 CPU cores once the backbone exists. Images are transformed on the fly (`with_transform`),
so the recipe sets `remove_unused_columns=False`.

Usage:

    # the quick default run
    python recipes/image_classification.py

    # the benchmark settings with IDO: PROTOCOL Task B2 (the pretrained ViT) and Task B (the same ViT from scratch)
    python recipes/image_classification.py --config recipes/configs/image_fashion_mnist_pretrained_vit.yaml \
        --lnl_method ido
    python recipes/image_classification.py --config recipes/configs/image_fashion_mnist_vit.yaml --lnl_method ido

    # your own images: one folder per class under train/ (and validation/, test/)
    python recipes/image_classification.py --train_dir images/train --validation_dir images/validation \\
        --test_dir images/test --noise_type none

    # a pretrained ViT on CIFAR-10 with 40% asymmetric noise (needs network), LoRA adapters on the attention
    python recipes/image_classification.py --model_name_or_path google/vit-base-patch16-224 --dataset_name cifar10 \\
        --image_column img --noise_type asymmetric --noise_class_map cifar10 --noise_rate 0.4 \\
        --per_device_train_batch_size 128 --learning_rate 1e-2 --optim sgd --bf16 true --use_peft true

    # CIFAR-10N human noise: the label file of the CIFAR-N release and the key to use
    python recipes/image_classification.py --model_name_or_path google/vit-base-patch16-224 --dataset_name cifar10 \\
        --image_column img --noise_type none --human_noise_file CIFAR-10_human.pt --human_noise_key worse_label

    # many GPUs; on CPU the same command runs 2 gloo processes, for testing
    accelerate launch --multi_gpu --num_processes 2 recipes/image_classification.py --lnl_method ido

Every `NoisyLabelConfig` (and so every `TrainingArguments`) field is a flag or a YAML key. Older flag names still
work: `--train_subset` (`--max_train_samples`), `--eval_subset` (the test images, `--max_predict_samples`).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipes/*.py, also under `accelerate launch`

from common import (  # noqa: E402
    ModelArguments,
    NoiseArguments,
    apply_peft,
    check_evaluation,
    parse_args,
    prepare_splits,
    run_signature,
    setup_logging,
    train_and_save,
)
from data import parse_class_map  # noqa: E402
from image_data import fashion_mnist_available, load_digits, load_fashion_mnist, to_pixel_values  # noqa: E402
from transformers import (  # noqa: E402
    AutoImageProcessor,
    AutoModelForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
    set_seed,
)
from transformers.utils import logging as transformers_logging  # noqa: E402

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer  # noqa: E402
from hf_lnl.metrics import compute_accuracy_metrics  # noqa: E402

logger = logging.getLogger(__name__)

OFFLINE_DATASETS = ("fashion_mnist", "digits")
OFFLINE_MODELS = ("pretrained", "scratch")  # --offline_model, without --model_name_or_path
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"  # pretrain_vit.py builds the pretrained ViT
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
    "eval_strategy": "epoch",
    "save_strategy": "no",
    "seed": 0,
}


@dataclass
class DataTrainingArguments(NoiseArguments):
    """What to train on and evaluate with (run_image_classification's names), and the label noise."""

    dataset_name: str | None = field(
        default="fashion_mnist",
        metadata={"help": "'fashion_mnist' or 'digits' (offline), or a `datasets.load_dataset` name (network)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration name for load_dataset."})
    train_dir: str | None = field(default=None, metadata={"help": "Folder of training images, one folder per class."})
    validation_dir: str | None = field(default=None, metadata={"help": "Folder of validation images (same layout)."})
    test_dir: str | None = field(default=None, metadata={"help": "Folder of test images (same layout)."})
    image_column: str = field(
        default="image", metadata={"help": "Column with the images.", "aliases": ["--image_column_name"]}
    )
    train_split: str = field(default="train", metadata={"help": "Training split of a Hub dataset."})
    validation_split: str = field(default="validation", metadata={"help": "Validation split of a Hub dataset."})
    test_split: str = field(default="test", metadata={"help": "Test split of a Hub dataset."})
    train_val_split: float = field(
        default=0.1,
        metadata={"help": "Without a validation split or folder: this share of the training split becomes one."},
    )
    max_train_samples: int | None = field(
        default=10000, metadata={"help": "Training images kept (0: all).", "aliases": ["--train_subset"]}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Validation images kept (default: all)."})
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Test images kept (default: all).", "aliases": ["--eval_subset"]}
    )
    offline_model: str = field(
        default="pretrained",
        metadata={
            "help": "Without --model_name_or_path, on Fashion-MNIST: the ViT pretrained offline by "
            "benchmarks/pretrain_vit.py (built on first use, ~25 min on 2 CPU cores, then cached) or the same ViT "
            "from scratch.",
            "choices": OFFLINE_MODELS,
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_train_samples == 0:
            self.max_train_samples = None
        if not 0.0 <= self.train_val_split < 1.0:
            raise ValueError(f"train_val_split must lie in [0, 1), got {self.train_val_split}.")


def main(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: NoisyLabelConfig
) -> dict[str, float]:
    """Train, evaluate on the validation split and once on the clean test set, save everything, print the test
    accuracy (main process) and return the metrics."""
    setup_logging(training_args)
    set_seed(training_args.seed)
    training_args.remove_unused_columns = False  # with_transform datasets: the trainer must not drop columns
    with training_args.main_process_first(desc="load, split and noise the data"):
        data, name = _load(data_args)
        extra: dict[str, Any] = {}
        if data_args.noise_type == "asymmetric":
            extra["class_map"] = parse_class_map(data_args.noise_class_map)
        elif data_args.noise_type == "instance":
            extra["image_column"] = "image"
        splits, noise_note = prepare_splits(
            data, data_args, validation_fraction=data_args.train_val_split, seed=training_args.seed,
            noise_options=lambda pool: extra,
        )  # fmt: skip
    check_evaluation(training_args, splits["validation"])
    classes = splits["train"].features["label"].names
    backbone = None
    if model_args.model_name_or_path is None and name == "fashion_mnist" and data_args.offline_model == "pretrained":
        with training_args.main_process_first(desc="build the pretrained ViT"):
            backbone = pretrained_backbone(show_progress=not training_args.disable_tqdm)
    elif model_args.model_name_or_path is None and name == "digits":
        logger.warning("Fashion-MNIST is not installed: the small ViT trains from scratch on digits.")
    model, processor = _model_and_processor(model_args, classes, backbone)
    model = apply_peft(
        model, model_args, task_type=None, target_modules=["query", "value"], modules_to_save=["classifier"]
    )
    from_config = model_args.model_name_or_path is None  # the protocol's ViT sees the protocol's 32×32 pixels
    transform = _transform(processor, model.config.num_channels, protocol_pixels=from_config)
    transformed = {key: None if split is None else split.with_transform(transform) for key, split in splits.items()}
    trainer = NoisyLabelTrainer(
        model=model,
        args=training_args,
        train_dataset=transformed["train"],
        eval_dataset=transformed["validation"],
        processing_class=processor,
        compute_metrics=compute_accuracy_metrics,
    )
    sizes = " / ".join(f"{len(split)} {key}" for key, split in splits.items() if split is not None)
    if backbone is not None:
        described = f"small ViT pretrained offline on Fashion-MNIST's unlabelled pool (PROTOCOL Task B2), {backbone}"
    else:
        described = model_args.model_name_or_path or "small ViT from scratch (PROTOCOL Task B)"
    summary = [
        f"model: {described}",
        f"data: {name or data_args.train_dir}, {sizes}",
        f"noise: {noise_note}",
    ]
    card = {"base_model": _hub_id(model_args.model_name_or_path), "dataset_name": name, "noise_setting": noise_note}
    signature = run_signature("image_classification", model_args, data_args, training_args)
    return train_and_save(trainer, transformed, card=card, summary=summary, signature=signature)


def _load(data_args: DataTrainingArguments) -> tuple[datasets.DatasetDict, str | None]:
    """The splits with an `image` and a ClassLabel `label` column, and the dataset's name (None for folders)."""
    if data_args.train_dir is not None:
        folders = {"train": data_args.train_dir, "validation": data_args.validation_dir, "test": data_args.test_dir}
        files = {split: os.path.join(folder, "**") for split, folder in folders.items() if folder is not None}
        return datasets.load_dataset("imagefolder", data_files=files), None
    name = data_args.dataset_name
    if name == "fashion_mnist" and not fashion_mnist_available():
        logger.warning("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): using digits.")
        name = "digits"
    if name == "fashion_mnist":
        return load_fashion_mnist(), name
    if name == "digits":
        return load_digits(), name
    raw = datasets.load_dataset(name, data_args.dataset_config_name)
    wanted = {"train": data_args.train_split, "validation": data_args.validation_split, "test": data_args.test_split}
    splits = {}
    for key, split_name in wanted.items():
        if split_name not in raw:
            continue
        split = raw[split_name]
        if data_args.image_column != "image":
            split = split.rename_column(data_args.image_column, "image")
        label = next(c for c in ("label", "labels", "fine_label") if c in split.column_names)
        splits[key] = split.rename_column(label, "label") if label != "label" else split
    return datasets.DatasetDict(splits), name


def pretrained_backbone(show_progress: bool = True) -> Path:
    """The folder of the offline pretrained ViT (`benchmarks/pretrain_vit.py`'s default configuration), built now
    when it is not cached yet.

    Example:
        >>> model = ViTForImageClassification.from_pretrained(pretrained_backbone(), num_labels=10,
        ...                                                   ignore_mismatched_sizes=True)
    """
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    import pretrain_vit

    config = pretrain_vit.DEFAULT_CONFIG
    folder = pretrain_vit.default_cache_dir() / f"vit-{config.key}"
    if not (folder / pretrain_vit.INFO_FILE).is_file():
        logger.warning(
            f"Building the pretrained ViT once (about 25 minutes on 2 CPU cores; cached in {folder.parent}). "
            "`python benchmarks/pretrain_vit.py` builds it beforehand; `--offline_model scratch` skips it."
        )
    return pretrain_vit.pretrained_vit_path(config, progress=show_progress)


def _model_and_processor(model_args: ModelArguments, classes: list[str], backbone: Path | None) -> tuple[Any, Any]:
    labels = {"num_labels": len(classes), "id2label": dict(enumerate(classes)),
              "label2id": {c: i for i, c in enumerate(classes)}}  # fmt: skip
    if backbone is not None:  # the protocol's ViT, pretrained: the same architecture and pixels as from scratch
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()  # the 5 coarse classes -> the task's head is expected
        try:
            model = ViTForImageClassification.from_pretrained(backbone, ignore_mismatched_sizes=True, **labels)
        finally:
            transformers_logging.set_verbosity(verbosity)
        return model, ViTImageProcessor.from_pretrained(backbone)
    if model_args.model_name_or_path is None:
        model = ViTForImageClassification(ViTConfig(**SMALL_VIT, **labels))
        processor = ViTImageProcessor(image_mean=[0.5], image_std=[0.5], size={"height": 32, "width": 32})
        return model, processor
    hub = {"revision": model_args.model_revision, "trust_remote_code": model_args.trust_remote_code}
    model = AutoModelForImageClassification.from_pretrained(
        model_args.model_name_or_path, ignore_mismatched_sizes=True, **labels, **hub
    )
    return model, AutoImageProcessor.from_pretrained(model_args.model_name_or_path, **hub)


def _transform(processor: Any, num_channels: int, protocol_pixels: bool):
    """Batch transform → `pixel_values` and `labels`. With `protocol_pixels`, the offline sets' uint8 arrays are
    padded or upsampled to 32×32 in [-1, 1] as in the benchmark protocol; every other image (PIL images from folders
    and Hub datasets, or arrays for a pretrained model) goes through the processor, as grey or RGB to match the
    model's channels."""
    mode = "L" if num_channels == 1 else "RGB"

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        images = batch["image"]
        if protocol_pixels and not hasattr(images[0], "convert"):
            pixels = torch.from_numpy(to_pixel_values(np.stack([np.asarray(image) for image in images])))
            pixels = pixels.repeat(1, num_channels, 1, 1)
        else:
            images = [image if hasattr(image, "convert") else Image.fromarray(np.asarray(image)) for image in images]
            pixels = processor(images=[image.convert(mode) for image in images], return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": torch.as_tensor(batch["label"])}

    return transform


def _hub_id(model_name_or_path: str | None) -> str | None:
    return None if model_name_or_path is None or os.path.isdir(model_name_or_path) else model_name_or_path


if __name__ == "__main__":
    main(*parse_args(DataTrainingArguments, RECIPE_DEFAULTS))
