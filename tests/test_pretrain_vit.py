"""The pretrained-ViT builder (`benchmarks/pretrain_vit.py`) on its tiny configuration (seconds): built once and
reused, deterministic, loadable with a fresh 10-class head, and never pretrained on Task B's labelled 10k."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "recipes")]  # the builder, and the recipes' data readers

import image_data  # noqa: E402
import pretrain_vit  # noqa: E402

pytestmark = pytest.mark.skipif(
    not image_data.fashion_mnist_available(),
    reason=f"Fashion-MNIST is not installed in {image_data.FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)

TINY = pretrain_vit.TINY_CONFIG
WEIGHTS = "model.safetensors"
LABELLED_ROWS = 10_000  # PROTOCOL Task B trains on Fashion-MNIST training rows 0..9,999


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    """The tiny backbone, built once for the module."""
    return pretrain_vit.pretrained_vit_path(TINY, tmp_path_factory.mktemp("cache"), progress=False)


def test_build_writes_a_whole_backbone_named_by_its_config(backbone):
    assert backbone.name == f"vit-{TINY.key}"
    assert {"config.json", WEIGHTS, "preprocessor_config.json", pretrain_vit.INFO_FILE} <= {
        p.name for p in backbone.iterdir()
    }
    assert [p.name for p in backbone.parent.iterdir()] == [backbone.name]  # no staging folder left behind
    info = json.loads((backbone / pretrain_vit.INFO_FILE).read_text())
    assert info["config"] == {**TINY.__dict__}
    assert info["pool"]["first_row"] == LABELLED_ROWS and info["pool"]["size"] == TINY.pool_size
    assert info["coarse_map"]["Shirt"] == info["coarse_map"]["T-shirt/top"] == "tops"
    assert 0.0 <= info["test_coarse_accuracy"] <= 1.0 and info["wall_s"] >= 0


def test_second_call_reuses_the_cached_backbone(backbone, monkeypatch):
    weights_mtime = (backbone / WEIGHTS).stat().st_mtime_ns

    def must_not_build(*args, **kwargs):
        raise AssertionError("the cached backbone was rebuilt")

    monkeypatch.setattr(pretrain_vit, "pretrain", must_not_build)
    assert pretrain_vit.pretrained_vit_path(TINY, backbone.parent, progress=False) == backbone
    assert (backbone / WEIGHTS).stat().st_mtime_ns == weights_mtime


def test_builds_are_deterministic_and_the_key_follows_the_config(backbone, tmp_path):
    again = pretrain_vit.pretrained_vit_path(TINY, tmp_path / "other_cache", progress=False)
    assert again.name == backbone.name
    first, second = load_file(backbone / WEIGHTS), load_file(again / WEIGHTS)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    other_seed = pretrain_vit.PretrainConfig(**{**TINY.__dict__, "seed": 1})
    assert other_seed.key != TINY.key


def test_loads_with_a_fresh_ten_class_head_and_the_saved_backbone(backbone):
    from transformers import AutoImageProcessor, ViTForImageClassification

    classes = image_data.FASHION_MNIST_CLASSES
    torch.manual_seed(0)
    model = ViTForImageClassification.from_pretrained(
        backbone, num_labels=10, id2label=dict(enumerate(classes)), ignore_mismatched_sizes=True
    )
    saved = load_file(backbone / WEIGHTS)
    assert saved["classifier.weight"].shape[0] == len(pretrain_vit.COARSE_CLASSES)
    assert model.classifier.out_features == 10 and model.config.id2label[6] == "Shirt"
    assert _same_backbone(saved, model.state_dict())
    factory_model = pretrain_vit.pretrained_factory(backbone)(0)  # the Task B2 model factory: the same backbone
    assert factory_model.classifier.out_features == 10 and _same_backbone(saved, factory_model.state_dict())
    assert not _same_backbone(saved, pretrain_vit.scratch_factory(TINY)(0).state_dict())
    processor = AutoImageProcessor.from_pretrained(backbone)
    assert list(processor.image_mean) == [0.5] and list(processor.image_std) == [0.5]
    assert processor.size["height"] == processor.size["width"] == model.config.image_size == 32
    assert model(pixel_values=torch.zeros(2, 1, 32, 32)).logits.shape == (2, 10)


def _same_backbone(saved: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> bool:
    """Whether every saved tensor but the head's is in `state`, one for one: transformers 5 renames ViT modules
    when it loads (`attention.attention.key` -> `attention.k_proj`), so tensors are matched by value."""
    loaded = [tensor for name, tensor in state.items() if not name.startswith("classifier.")]
    backbone = [tensor for name, tensor in saved.items() if not name.startswith("classifier.")]
    if len(loaded) != len(backbone):
        return False
    for tensor in backbone:
        same = (i for i, other in enumerate(loaded) if other.shape == tensor.shape and torch.equal(other, tensor))
        match = next(same, None)
        if match is None:
            return False
        loaded.pop(match)
    return True


def test_pretraining_never_reads_the_labelled_ten_thousand(monkeypatch):
    rows = pretrain_vit.pretraining_rows(pretrain_vit.DEFAULT_CONFIG)
    assert rows.min() == LABELLED_ROWS and rows.max() == 59_999 and len(np.unique(rows)) == 50_000
    assert pretrain_vit.pretraining_rows(TINY).min() >= LABELLED_ROWS
    real = image_data.read_fashion_mnist()
    poisoned_labels = real["train"][1].copy()
    poisoned_labels[:LABELLED_ROWS] = 99  # an out-of-range class: any use of these rows raises
    poisoned = {"train": (real["train"][0], poisoned_labels), "test": real["test"]}
    monkeypatch.setattr(pretrain_vit, "read_fashion_mnist", lambda: poisoned)
    model, info = pretrain_vit.pretrain(TINY, progress=False)
    assert info["pool"]["first_row"] == LABELLED_ROWS and model.config.num_labels == 5


def test_coarse_labels_keep_the_noise_pairs_together():
    coarse = pretrain_vit.coarse_labels(np.arange(10))
    assert len(set(coarse.tolist())) == len(pretrain_vit.COARSE_CLASSES) == 5
    for a, b in ((0, 6), (2, 4), (7, 9)):  # T-shirt/shirt, pullover/coat, sneaker/ankle boot
        assert coarse[a] == coarse[b]
    assert coarse[1] != coarse[3] != coarse[8]  # trousers, dresses and bags stand alone


def test_augment_flips_and_shifts_within_bounds():
    image = torch.rand(1, 1, 32, 32) * 2 - 1
    out = pretrain_vit.augment(image.repeat(64, 1, 1, 1), 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(torch.cat([image, image.flip(-1)]), (2,) * 4, value=-1.0)
    candidates = [padded[k, :, i : i + 32, j : j + 32] for k in range(2) for i in range(5) for j in range(5)]
    assert all(any(torch.equal(sample, c) for c in candidates) for sample in out)
    assert len({tuple(sample.flatten().tolist()) for sample in out}) > 1  # not one shift for all
    assert pretrain_vit.augment(image, 0, torch.Generator()) is image


def test_patches_follow_the_vit_token_order_and_masked_loss_trains_the_decoder():
    model = pretrain_vit.scratch_factory(TINY)(0)
    pixels = torch.rand(3, 1, 32, 32) * 2 - 1
    patches = pretrain_vit.patchify(pixels, TINY.patch_size)
    assert torch.equal(pretrain_vit.unpatchify(patches, TINY.patch_size), pixels)
    projection = model.vit.embeddings.patch_embeddings.projection  # the ViT's patch embedding is a strided conv
    tokens = projection(pixels).flatten(2).transpose(1, 2)
    assert torch.allclose(tokens, patches @ projection.weight.flatten(1).T + projection.bias, atol=1e-5)
    decoder = torch.nn.Linear(TINY.hidden_size, TINY.patch_size**2)
    labels = torch.tensor([0, 3, 4])
    loss, logits = pretrain_vit.pretraining_loss(model, decoder, pixels, labels, TINY, torch.Generator())
    loss.backward()
    assert logits.shape == (3, 10) and torch.isfinite(loss) and decoder.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mask_ratio"):
        pretrain_vit.PretrainConfig(mask_ratio=1.0)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrain_vit.CACHE_ENV, str(tmp_path))
    assert pretrain_vit.default_cache_dir() == tmp_path / "pretrained_vit"
    monkeypatch.delenv(pretrain_vit.CACHE_ENV)
    assert pretrain_vit.default_cache_dir() == Path.home() / ".cache" / "hf_lnl" / "pretrained_vit"
