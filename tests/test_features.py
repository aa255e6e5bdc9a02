from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
)

from hf_lnl.clid import clid
from hf_lnl.features import HeadFeatureCapture, find_classification_head, math_attention

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _bert(**kw) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=1000, num_labels=4, **TINY, **kw))


def _roberta() -> RobertaForSequenceClassification:
    torch.manual_seed(0)
    return RobertaForSequenceClassification(RobertaConfig(vocab_size=1000, num_labels=3, **TINY))


def _vit(**kw) -> ViTForImageClassification:
    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(image_size=32, patch_size=4, num_labels=10, **TINY, **kw))


def _text(b: int = 4, t: int = 12) -> dict[str, torch.Tensor]:
    attn = torch.ones(b, t, dtype=torch.long)
    attn[0, t // 2:] = 0  # one padded row
    return {"input_ids": torch.randint(5, 1000, (b, t)), "attention_mask": attn}


def test_vit_feature_is_layernormed_cls_token() -> None:
    model = _vit().eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad(), HeadFeatureCapture(model) as cap:
        logits = model(pixel_values=x).logits
        hidden = model.vit(pixel_values=x, output_hidden_states=True)
    assert cap.head_name == "classifier" and cap.features.shape == (3, 32)
    assert torch.allclose(cap.features, hidden.last_hidden_state[:, 0], atol=1e-6)  # ViTModel applies layernorm
    assert not torch.allclose(cap.features, hidden.hidden_states[-1][:, 0], atol=1e-3)  # the pre-layernorm state
    assert torch.allclose(model.classifier(cap.features), logits, atol=1e-6)


def test_bert_feature_is_pooler_output() -> None:
    model = _bert().eval()
    batch = _text()
    with torch.no_grad(), HeadFeatureCapture(model) as cap:
        model(**batch)
        pooled = model.bert(**batch).pooler_output
    assert cap.head_name == "classifier" and cap.features.shape == (4, 32)
    assert torch.allclose(cap.features, pooled, atol=1e-6)


def test_roberta_feature_is_out_proj_input() -> None:
    model = _roberta().eval()
    batch = _text()
    with torch.no_grad(), HeadFeatureCapture(model) as cap:
        logits = model(**batch).logits
        x = model.roberta(**batch).last_hidden_state[:, 0]
    assert cap.head_name == "classifier.out_proj" and cap.features.shape == (4, 32)
    assert torch.allclose(cap.features, torch.tanh(model.classifier.dense(x)), atol=1e-6)
    assert torch.allclose(model.classifier.out_proj(cap.features), logits, atol=1e-6)


def test_features_keep_graph_and_hook_is_removed() -> None:
    model = _bert().train()
    cap = HeadFeatureCapture(model)
    model(**_text())
    assert cap.features is not None and cap.features.requires_grad and cap.features.grad_fn is not None
    assert len(model.classifier._forward_pre_hooks) == 1
    with cap:
        pass
    assert len(model.classifier._forward_pre_hooks) == 0
    cap.clear()
    model(**_text())
    assert cap.features is None
    cap.remove()  # idempotent


def test_custom_name_and_errors() -> None:
    model = _roberta()
    name, head = find_classification_head(model, "classifier.dense")
    assert name == "classifier.dense" and head is model.classifier.dense
    with pytest.raises(ValueError, match=r"'classifier\.nope'.*classifier\.out_proj"):
        find_classification_head(model, "classifier.nope")

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.cls_head = nn.Linear(4, 4), nn.Linear(4, 2)

    with pytest.raises(ValueError, match="clid_head_module.*cls_head"):
        find_classification_head(Odd())
    assert find_classification_head(Odd(), "cls_head")[0] == "cls_head"


def test_wrappers_are_looked_through() -> None:
    class Wrapper(nn.Module):  # DDP-style `.module`
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    model = _roberta()
    name, head = find_classification_head(Wrapper(model))
    assert name == "module.classifier.out_proj" and head is model.classifier.out_proj
    assert find_classification_head(Wrapper(model), "classifier")[1] is model.classifier  # name of the inner model
    seq = nn.Module()
    seq.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))  # ResNet-style head
    assert find_classification_head(seq)[0] == "classifier.1"


def test_peft_wrapped_models() -> None:
    peft = pytest.importorskip("peft")
    cfg = dict(target_modules=["query", "value"], task_type="SEQ_CLS", r=2)
    bert = peft.get_peft_model(_bert(), peft.LoraConfig(**cfg))
    name, head = find_classification_head(bert)
    assert name.endswith("classifier")
    roberta = peft.get_peft_model(_roberta(), peft.LoraConfig(**cfg))
    name, head = find_classification_head(roberta)
    assert name.endswith("modules_to_save.default.out_proj")
    roberta.eval()
    with torch.no_grad(), HeadFeatureCapture(roberta) as cap:
        logits = roberta(**_text()).logits
    assert cap.features.shape == (4, 32) and torch.allclose(head(cap.features), logits, atol=1e-6)


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_double_backward_through_look_ahead(family: str) -> None:
    """CLID-MU's look-ahead: grad of CLID(f_theta'(x2)) w.r.t. a tensor scaling the first loss (needs MATH SDPA)."""
    torch.manual_seed(1)
    if family == "bert":
        model, x1, x2 = _bert(), _text(), _text()
    else:
        model, x1, x2 = _vit(), *({"pixel_values": torch.randn(4, 3, 32, 32)} for _ in range(2))
    model.eval()
    labels = torch.randint(0, model.config.num_labels, (4,))
    params = {k: v.detach().requires_grad_() for k, v in model.named_parameters()}
    eps = torch.full((4,), 0.25, requires_grad=True)
    with math_attention(), HeadFeatureCapture(model) as cap:
        logits = torch.func.functional_call(model, params, kwargs=x1).logits
        loss = (eps * nn.functional.cross_entropy(logits, labels, reduction="none")).sum()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
        new = {k: p if g is None else p - 0.5 * g for (k, p), g in zip(params.items(), grads)}
        out = torch.func.functional_call(model, new, kwargs=x2)
        meta = clid(cap.features, out.logits)
        (g_eps,) = torch.autograd.grad(meta, eps)
    assert torch.isfinite(g_eps).all() and g_eps.abs().sum() > 0
