"""Weak and strong views of a batch for IDO's stage 2.

Images (IDO, Zhang et al., NeurIPS 2025, arXiv 2505.00812): weak = random crop with reflect padding of 1/8 of the
side + horizontal flip; strong = weak + RandAugment (2 ops, magnitude 10) + cutout of 15% of the side. The
augmentations run batched with ``kornia.augmentation`` in pixel space: the processor's normalisation is undone,
the batch is augmented in [0, 1] and normalised again. All randomness comes from torch's global RNGs, so the
Trainer's RNG checkpointing reproduces it.

Text (our adaptation, not in the paper): weak = the tokens as they are, strong = each non-special, non-padding
token replaced by the mask token with probability 0.15. Lengths never change.

Mixup (IDO's `ido_correction="mixup"`, hf_lnl's): `mixup_view` mixes each sample of a view with a partner in the batch,
`lam x_i + (1 - lam) x_j` with `mixup_coefficient`'s `lam`; text is mixed as word embeddings (`embedded`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import kornia.augmentation as K
import torch
from kornia.augmentation.auto import RandAugment

# IDO's image views (Zhang et al., NeurIPS 2025, arXiv 2505.00812).
CROP_PADDING_FRACTION = 1 / 8
RANDAUGMENT_N, RANDAUGMENT_M = 2, 10
RANDAUGMENT_MAX_MAGNITUDE = 30  # kornia's RandAugment magnitude scale
CUTOUT_FRACTION = 0.15
# kornia 0.9's RandAugment draws its n operations once per call for the whole batch; splitting the batch into
# groups gives each group its own draw (closer to the per-image draw of the paper's torchvision RandAugment).
RANDAUGMENT_GROUPS = 8
# Share of eligible tokens the strong text view masks (our choice, the BERT masking rate).
TEXT_MASK_RATE = 0.15


def _as_floats(value: float | Sequence[float], name: str) -> tuple[float, ...]:
    values = (float(value),) if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    if not values:
        raise ValueError(f"`{name}` is empty.")
    return values


def _as_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) <= 0:
        raise ValueError(f"`image_size` must be a positive int or (height, width); got {size!r}.")
    return hw  # type: ignore[return-value]


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _processor_size(processor: Any) -> tuple[int, int] | None:
    """(height, width) a transformers image processor outputs, or None when it does not fix one."""
    size = _get(processor, "crop_size") if _get(processor, "do_center_crop") else None
    size = size if size is not None else _get(processor, "size")
    if isinstance(size, int):
        return size, size
    if size is not None and _get(size, "height") and _get(size, "width"):
        return int(_get(size, "height")), int(_get(size, "width"))
    return None


class ImageViews:
    """Weak and strong augmented views of a normalised image batch (B, C, H, W).

    Args:
        image_mean: the processor's per-channel mean (a scalar, or one value per channel; len 1 for grey-scale).
        image_std: the processor's per-channel standard deviation, same form.
        image_size: (height, width) or a side; when given, batches of another size are refused. None accepts
            any size (the crop keeps each batch's own size).
        crop_padding_fraction: reflect padding of the random crop, as a fraction of each side.
        randaugment_n: number of RandAugment operations; 0 switches RandAugment off.
        randaugment_m: RandAugment magnitude in (0, 30).
        cutout_fraction: side of the erased box as a fraction of each side (0 switches cutout off). The box is
            filled with 0 in pixel space and lies inside the image.
        randaugment_groups: the batch is split into this many groups, each with its own RandAugment draw.

    Grey-scale: RandAugment's colour operation needs 3 channels, so a 1-channel batch is repeated to 3 channels
    for RandAugment and averaged back to 1 (every operation maps a grey image to a grey image, so no
    information is lost). Computation is in float32; outputs keep the input's shape, dtype and device.

    Example:
        >>> views = ImageViews([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], 32)
        >>> x = torch.randn(4, 3, 32, 32)
        >>> views.weak(x).shape, views.strong(x).shape
        (torch.Size([4, 3, 32, 32]), torch.Size([4, 3, 32, 32]))
    """

    def __init__(
        self,
        image_mean: float | Sequence[float],
        image_std: float | Sequence[float],
        image_size: int | Sequence[int] | None = None,
        *,
        crop_padding_fraction: float = CROP_PADDING_FRACTION,
        randaugment_n: int = RANDAUGMENT_N,
        randaugment_m: float = RANDAUGMENT_M,
        cutout_fraction: float = CUTOUT_FRACTION,
        randaugment_groups: int = RANDAUGMENT_GROUPS,
    ) -> None:
        self.image_mean, self.image_std = _as_floats(image_mean, "image_mean"), _as_floats(image_std, "image_std")
        if min(self.image_std) <= 0:
            raise ValueError(f"`image_std` must be positive; got {self.image_std}.")
        if not 0 <= crop_padding_fraction < 1 or not 0 <= cutout_fraction < 1:
            raise ValueError("`crop_padding_fraction` and `cutout_fraction` must lie in [0, 1).")
        if randaugment_groups < 1:
            raise ValueError(f"`randaugment_groups` must be >= 1; got {randaugment_groups}.")
        self.image_size = _as_hw(image_size)
        self.crop_padding_fraction, self.cutout_fraction = crop_padding_fraction, cutout_fraction
        self.randaugment_groups = randaugment_groups
        self._flip = K.RandomHorizontalFlip(p=0.5)
        self._randaugment = RandAugment(n=randaugment_n, m=randaugment_m) if randaugment_n > 0 else None
        self._per_size: dict[tuple[int, int], tuple[K.RandomCrop | None, K.RandomErasing | None]] = {}

    @classmethod
    def from_processor(
        cls, processor: Any, image_size: int | Sequence[int] | None = None, **kwargs: Any
    ) -> ImageViews:
        """Build the views from a transformers image processor (``image_mean``, ``image_std``, ``size``).

        Args:
            processor: an image processor (e.g. ``ViTImageProcessor`` / ``ViTImageProcessorPil``) or a processor
                holding one as ``.image_processor``.
            image_size: overrides the processor's output size (``crop_size`` when it centre-crops, else ``size``).
            **kwargs: passed on to the constructor.

        Raises:
            ValueError: the processor normalises but has no ``image_mean`` / ``image_std``.

        Example:
            >>> from transformers import ViTImageProcessorPil
            >>> views = ImageViews.from_processor(ViTImageProcessorPil(size={"height": 32, "width": 32}))
            >>> views.image_size
            (32, 32)
        """
        proc = getattr(processor, "image_processor", processor)
        mean, std = _get(proc, "image_mean"), _get(proc, "image_std")
        if _get(proc, "do_normalize") is False:
            mean, std = 0.0, 1.0
        elif mean is None or std is None:
            raise ValueError(
                f"{type(proc).__name__} has no `image_mean`/`image_std`; ImageViews needs them to undo the "
                "normalisation. Build `ImageViews(image_mean=..., image_std=..., image_size=...)` directly."
            )
        return cls(mean, std, image_size if image_size is not None else _processor_size(proc), **kwargs)

    def weak(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Random crop (reflect padding) + horizontal flip of a normalised batch (B, C, H, W)."""
        return self._apply(pixel_values, strong=False)

    def strong(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Weak view + RandAugment + cutout of a normalised batch (B, C, H, W)."""
        return self._apply(pixel_values, strong=True)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        channels = x.shape[1]
        mean, std = self.image_mean, self.image_std
        if len(mean) not in (1, channels) or len(std) not in (1, channels):
            raise ValueError(f"image_mean/std have {len(mean)}/{len(std)} values for a {channels}-channel batch.")
        return tuple(torch.tensor(v, dtype=torch.float32, device=x.device).view(1, -1, 1, 1) for v in (mean, std))

    def _unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x.float() * std + mean).clamp_(0.0, 1.0)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def _ops_for(self, height: int, width: int) -> tuple[K.RandomCrop | None, K.RandomErasing | None]:
        if (height, width) not in self._per_size:
            pad = (round(width * self.crop_padding_fraction), round(height * self.crop_padding_fraction))
            crop = K.RandomCrop((height, width), padding=pad, padding_mode="reflect") if max(pad) > 0 else None
            f = self.cutout_fraction
            # kornia's box: height = round(sqrt(area * ratio)), width = round(sqrt(area / ratio)), area = scale*H*W;
            # scale f**2 and ratio H/W give an f*H x f*W box.
            erase = (
                K.RandomErasing(scale=(f * f, f * f), ratio=(height / width,) * 2, value=0.0, p=1.0) if f > 0 else None
            )
            self._per_size[(height, width)] = (crop, erase)
        return self._per_size[(height, width)]

    def _rand_augment(self, x: torch.Tensor) -> torch.Tensor:
        assert self._randaugment is not None
        grey = x.shape[1] == 1
        if x.shape[1] not in (1, 3):
            raise ValueError(f"RandAugment needs 1- or 3-channel images; got {x.shape[1]} channels.")
        x = x.repeat(1, 3, 1, 1) if grey else x
        x = torch.cat([self._randaugment(chunk) for chunk in x.chunk(min(self.randaugment_groups, len(x)))])
        return (x.mean(dim=1, keepdim=True) if grey else x).clamp_(0.0, 1.0)

    @torch.no_grad()
    def _apply(self, pixel_values: torch.Tensor, strong: bool) -> torch.Tensor:
        if pixel_values.dim() != 4:
            raise ValueError(f"Expected a (B, C, H, W) batch; got shape {tuple(pixel_values.shape)}.")
        height, width = pixel_values.shape[-2:]
        if self.image_size is not None and (height, width) != self.image_size:
            raise ValueError(f"Batch of size {(height, width)} but ImageViews was built for {self.image_size}.")
        if len(pixel_values) == 0:
            return pixel_values.clone()
        crop, erase = self._ops_for(height, width)
        x = self._unnormalize(pixel_values)
        x = self._flip(crop(x) if crop is not None else x)
        if strong and self._randaugment is not None:
            x = self._rand_augment(x)
        if strong and erase is not None:
            x = erase(x)
        return self._normalize(x).to(pixel_values.dtype)


class TextMasker:
    """Strong text view: replace eligible tokens by the mask token, each independently with ``mask_rate``.

    Eligible tokens are those that are not special, not padding and (when an attention mask is given) attended
    to. The weak view is the identity (dropout gives the stochasticity). Lengths never change.

    Args:
        mask_token_id: the id written over masked tokens.
        special_token_ids: ids never masked (CLS, SEP, PAD, ...).
        pad_token_id: the padding id (never masked), or None.
        mask_rate: probability with which each eligible token is masked.

    Example:
        >>> masker = TextMasker(mask_token_id=103, special_token_ids=[101, 102], pad_token_id=0)
        >>> ids = torch.tensor([[101, 7592, 2088, 102, 0]])
        >>> masker.strong(ids).shape
        torch.Size([1, 5])
    """

    def __init__(
        self,
        mask_token_id: int,
        special_token_ids: Iterable[int],
        pad_token_id: int | None,
        mask_rate: float = TEXT_MASK_RATE,
    ) -> None:
        if not 0.0 <= mask_rate <= 1.0:
            raise ValueError(f"`mask_rate` must lie in [0, 1]; got {mask_rate}.")
        self.mask_token_id, self.pad_token_id, self.mask_rate = int(mask_token_id), pad_token_id, float(mask_rate)
        pad = set() if pad_token_id is None else {int(pad_token_id)}
        self.special_token_ids = sorted({int(i) for i in special_token_ids} | pad)

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, mask_rate: float = TEXT_MASK_RATE, mask_token_id: int | None = None
    ) -> TextMasker:
        """Take the mask, special and padding ids from a tokenizer; ``mask_token_id`` overrides its mask id.

        Raises:
            ValueError: neither the tokenizer nor ``mask_token_id`` gives a mask id.

        Example:
            >>> masker = TextMasker.from_tokenizer(tokenizer)  # doctest: +SKIP
        """
        mask_id = mask_token_id if mask_token_id is not None else getattr(tokenizer, "mask_token_id", None)
        if mask_id is None:
            raise ValueError(
                f"{type(tokenizer).__name__} has no mask token; pass `mask_token_id=` / set `ido_mask_token_id` "
                "in the config to the id the strong text view should write over masked tokens."
            )
        special = getattr(tokenizer, "all_special_ids", None) or []
        return cls(mask_id, special, getattr(tokenizer, "pad_token_id", None), mask_rate=mask_rate)

    def eligible(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Boolean mask of the tokens the strong view may replace."""
        special = torch.tensor(self.special_token_ids, dtype=input_ids.dtype, device=input_ids.device)
        keep = ~torch.isin(input_ids, special)
        return keep if attention_mask is None else keep & (attention_mask == 1)

    def weak(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The identity: the tokens as they are."""
        return input_ids

    def strong(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return a copy of ``input_ids`` with each eligible token masked with probability ``mask_rate``."""
        draw = torch.rand(input_ids.shape, device=input_ids.device)
        hit = self.eligible(input_ids, attention_mask) & (draw < self.mask_rate)
        return torch.where(hit, torch.full_like(input_ids, self.mask_token_id), input_ids)


def mixup_coefficient(alpha: float) -> float:
    """Mixup's weight of a batch: `lam ~ Beta(alpha, alpha)` folded onto [1/2, 1], so each mixed input stays closer
    to its own sample than to its partner (MixMatch's rule). Drawn from torch's global CPU RNG, which the Trainer
    checkpoints.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> 0.5 <= mixup_coefficient(1.0) <= 1.0
        True
    """
    alpha_tensor = torch.tensor(float(alpha))
    lam = float(torch.distributions.Beta(alpha_tensor, alpha_tensor).sample())
    return max(lam, 1.0 - lam)


def embedded(view: dict[str, Any], embeddings: torch.nn.Module) -> dict[str, Any]:
    """A text view with its `input_ids` replaced by their word embeddings (`inputs_embeds`), which a forward can
    mix; a view without `input_ids` (images, or already embedded) is returned as it is.

    Example:
        >>> view = embedded({"input_ids": torch.tensor([[1, 2]])}, torch.nn.Embedding(4, 3))
        >>> sorted(view), tuple(view["inputs_embeds"].shape)
        (['inputs_embeds'], (1, 2, 3))
    """
    if "input_ids" not in view:
        return dict(view)
    rest = {k: v for k, v in view.items() if k != "input_ids"}
    return {**rest, "inputs_embeds": embeddings(view["input_ids"])}


def mixup_view(view: dict[str, Any], lam: float, partner: torch.Tensor) -> dict[str, Any]:
    """Within-batch mixup of a view (Zhang et al., ICLR 2018): each sample's input becomes `lam x_i + (1 - lam)
    x_partner(i)`. Images mix `pixel_values`; text mixes `inputs_embeds` (see `embedded`) and attends to the
    positions either text attends to. Other inputs stay the sample's own.

    Example:
        >>> view = {"pixel_values": torch.tensor([[0.0], [1.0]])}
        >>> mixup_view(view, 0.75, torch.tensor([1, 0]))["pixel_values"].flatten().tolist()
        [0.25, 0.75]
    """
    key = "pixel_values" if "pixel_values" in view else "inputs_embeds"
    if key not in view:
        raise ValueError("Mixup needs `pixel_values` or `inputs_embeds` (embed text views with `embedded` first).")
    mixed = {**view, key: lam * view[key] + (1.0 - lam) * view[key][partner]}
    mask = view.get("attention_mask")
    if key == "inputs_embeds" and mask is not None:
        mixed["attention_mask"] = torch.maximum(mask, mask[partner])
    return mixed
