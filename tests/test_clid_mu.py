"""CLID-MU (lnl_method="clid_mu"): the meta-gradient, the three scopes on BERT and ViT, guard rails, LoRA, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import image_dataset, text_dataset, tiny_bert, tiny_vit

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer
from hf_lnl.clid import LOG_EPS, feature_graph
from hf_lnl.methods.clid_mu import (
    MIN_WEIGHT_CONTRAST,
    MetaWeightNet,
    split_weights,
    warmup_epochs,
    weight_contrast,
)

COMMON = dict(report_to=[], save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True, seed=0)
# The tiny models train from scratch, where the premise safeguard may fire: off unless a test is about it.
CLID_MU = dict(lnl_method="clid_mu", clid_meta_set_size=16, clid_meta_batch_size=8, per_device_train_batch_size=8,
               clid_premise_safeguard=False)  # fmt: skip
SCOPES = ["head", "last_k", "all"]
LOGGED = ("clid_meta_loss", "meta_weight_mean", "meta_weight_std", "meta_weight_clean", "meta_weight_noisy")


def _config(tmp_path, **kwargs) -> NoisyLabelConfig:
    return NoisyLabelConfig(output_dir=str(tmp_path / "out"), **{**COMMON, **CLID_MU, **kwargs})


def _spread(model: torch.nn.Module, scale: float) -> torch.nn.Module:
    """A freshly initialised tiny model maps every input to nearly the same feature (cosine ~ 1), where CLID is
    flat and the meta-gradient vanishes; larger weights spread the features out."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(scale)
    return model


def _family(family: str, n: int = 48, dropout: float = 0.0):
    if family == "bert":
        return _spread(tiny_bert(dropout=dropout), 10.0), text_dataset(n)
    return _spread(tiny_vit(dropout=dropout), 5.0), image_dataset(n)


def _with_noise(data, num_labels: int, rate: float = 0.25, seed: int = 0):
    """Keep the true label as `clean_label` and move a share `rate` of the labels to the next class."""
    clean = np.asarray(data["label"][:])
    flip = np.random.default_rng(seed).random(len(clean)) < rate
    noisy = np.where(flip, (clean + 1) % num_labels, clean)
    return data.remove_columns("label").add_column("label", noisy.tolist()).add_column("clean_label", clean.tolist())


def _training_batch(trainer: NoisyLabelTrainer, data, n: int = 8) -> dict[str, torch.Tensor]:
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


# ----------------------------------------------------------------------------------------------- meta-gradient
class _FrozenStopGradientCLID:
    """CLID with its stop-gradient parts (the feature graph P and the row sums of W) frozen at their first values,
    in float64: a function whose plain derivative is CLID's gradient at that point, so differences can check it."""

    def __init__(self) -> None:
        self.log_p: torch.Tensor | None = None
        self.row_sums: torch.Tensor | None = None

    def __call__(self, features: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        q = F.normalize(torch.softmax(logits.double(), dim=1), dim=1)
        w = q @ q.T
        if self.log_p is None:
            self.log_p = torch.log(feature_graph(features, temperature).double() + LOG_EPS)
            self.row_sums = w.sum(dim=1, keepdim=True).detach()
        return -(w / self.row_sums * self.log_p).sum(dim=1).mean()


@pytest.mark.parametrize("scope", ["head", "all"])
def test_meta_gradient_matches_finite_differences(tmp_path, monkeypatch, scope):
    model = _spread(tiny_bert(dropout=0.0), 20.0).double()
    data = text_dataset(32)
    args = _config(tmp_path, clid_scope=scope, clid_meta_batch_size=16)
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data)
    method = trainer.method
    method.setup()
    method.meta_net.double()
    batch = _training_batch(trainer, data)
    batch.pop("sample_index")
    labels = batch.pop("labels")
    meta_batch = method.meta_batch()
    params = list(method.meta_net.parameters())

    def meta_loss() -> torch.Tensor:
        return method.lookahead_meta_loss(model, batch, labels, meta_batch)

    expected = torch.autograd.grad(meta_loss(), params)
    monkeypatch.setattr("hf_lnl.methods.clid_mu.clid", _FrozenStopGradientCLID())
    grads = torch.autograd.grad(meta_loss(), params)
    for got, want in zip(grads, expected):  # the same gradient (CLID's own is float32)
        torch.testing.assert_close(got, want.double(), rtol=1e-3, atol=1e-3 * float(want.abs().max()))
    step = 1e-4
    for param, grad in zip(params, grads):
        j = int(grad.abs().argmax())
        assert grad.view(-1)[j].abs() > 1e-6  # a meta-gradient worth checking
        values = []
        for shift in (step, -2 * step, step):  # theta + h, theta - h, back to theta
            with torch.no_grad():
                param.view(-1)[j] += shift
            values.append(meta_loss().item())
        plus, minus = values[:2]
        assert (plus - minus) / (2 * step) == pytest.approx(grad.view(-1)[j].item(), rel=1e-4)


# -------------------------------------------------------------------------------------- one step, all scopes
@pytest.mark.parametrize("family", ["bert", "vit"])
@pytest.mark.parametrize("scope", SCOPES)
def test_meta_step_updates_meta_network_and_loss_reaches_model(tmp_path, family, scope):
    """Double backward through BERT and ViT (the ViT fails on the fused SDPA kernel unless MATH is used)."""
    model, data = _family(family, n=16, dropout=0.1)
    trainer = NoisyLabelTrainer(model=model, args=_config(tmp_path, clid_scope=scope), train_dataset=data)
    trainer.method.setup()
    before = [p.detach().clone() for p in trainer.method.meta_net.parameters()]
    model.train()
    loss = trainer.compute_loss(model, _training_batch(trainer, data))
    after = list(trainer.method.meta_net.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after))
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    assert all(p.grad is None for p in trainer.method.meta_net.parameters())


def test_meta_weight_net_is_seeded_and_leaves_global_random_state_alone():
    state = torch.get_rng_state()
    first, second = MetaWeightNet(100, seed=3), MetaWeightNet(100, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    weights = first(torch.tensor([0.0, 1.0, 5.0]))
    assert weights.shape == (3,) and ((weights > 0) & (weights < 1)).all()


# ---------------------------------------------------------------------------------------------- guard rails
def test_an_unknown_disputed_response_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="clid_disputed_response='ignore' is not supported.*'belief', 'stop'"):
        _config(tmp_path, clid_disputed_safeguard=True, clid_disputed_response="ignore")


def test_fp16_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp16"):
        _config(tmp_path, fp16=True)
    trainer = NoisyLabelTrainer(model=tiny_bert().half(), args=_config(tmp_path), train_dataset=text_dataset(16))
    with pytest.raises(ValueError, match="float16.*bfloat16"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_sharded_training_is_refused(tmp_path, monkeypatch):
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path), train_dataset=text_dataset(16))
    monkeypatch.setattr(trainer, "is_fsdp_enabled", True)
    with pytest.raises(ValueError, match="FSDP or DeepSpeed ZeRO-3"):
        trainer.train()


def test_scope_without_trainable_parameters_is_refused(tmp_path):
    model = tiny_bert()
    model.classifier.requires_grad_(False)
    trainer = NoisyLabelTrainer(model=model, args=_config(tmp_path, clid_scope="head"), train_dataset=text_dataset(16))
    with pytest.raises(ValueError, match="no trainable parameter.*clid_scope='all'"):
        trainer.train()


# ------------------------------------------------------------------------------------------------ end to end
def _train(tmp_path, model, data, **kwargs) -> tuple[NoisyLabelTrainer, dict[str, torch.Tensor]]:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = NoisyLabelTrainer(
        model=model, args=_config(tmp_path, num_train_epochs=1, learning_rate=1e-3, **kwargs), train_dataset=data
    )
    trainer.train()
    return trainer, before


@pytest.mark.parametrize("family", ["bert", "vit"])
@pytest.mark.parametrize("scope", SCOPES)
def test_trains_end_to_end(tmp_path, family, scope):
    model, data = _family(family, dropout=0.1)
    data = _with_noise(data, model.config.num_labels)
    trainer, before = _train(tmp_path, model, data, clid_scope=scope)
    for name, p in model.named_parameters():
        assert not torch.equal(p, before[name]), name
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses and np.isfinite(losses).all()
    for metric in LOGGED:
        assert any(metric in entry for entry in history), metric
    report = trainer.noise_report()
    weights = np.asarray(report["meta_weight"][:])
    assert ((weights > 0) & (weights < 1)).all()  # every sample seen in one epoch
    scores = np.asarray(report["noise_score"][:])
    assert ((scores >= 0) & (scores <= 1)).all()


def test_frozen_embeddings_ignored_labels_and_sgd_meta_optimizer(tmp_path):
    model, data = _family("bert", n=24)
    data = data.map(lambda row, i: {"label": -100 if i == 5 else row["label"]}, with_indices=True)
    model.bert.embeddings.requires_grad_(False)
    sgd = dict(clid_meta_optimizer="sgd", clid_meta_lr=0.1, clid_meta_weight_decay=5e-4)
    trainer, before = _train(tmp_path, model, data, clid_scope="all", **sgd)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) == name.startswith("bert.embeddings."), name
    report = trainer.noise_report()
    assert np.isnan(report["meta_weight"][5]) and report["noise_score"][5] == 0.0
    assert np.isfinite(np.delete(np.asarray(report["meta_weight"][:]), 5)).all()


@pytest.mark.parametrize("scope", ["head", "last_k"])
def test_lora(tmp_path, scope):
    peft = pytest.importorskip("peft")
    base, data = _family("bert", n=24)
    model = peft.get_peft_model(base, peft.LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"], r=4))
    trainer, before = _train(tmp_path, model, data, clid_scope=scope)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) != p.requires_grad, name
    assert any("lora_" in name and p.requires_grad for name, p in model.named_parameters())
    assert np.isfinite(np.asarray(trainer.noise_report()["meta_weight"][:])).all()


@pytest.mark.parametrize("precision", ["bf16_autocast", "bf16_model"])
def test_bf16(tmp_path, precision):
    model, data = _family("vit", n=16)
    if precision == "bf16_model":
        model = model.to(torch.bfloat16)
    trainer, _ = _train(tmp_path, model, data, clid_scope="all", bf16=precision == "bf16_autocast")
    meta_losses = [entry["clid_meta_loss"] for entry in trainer.state.log_history if "clid_meta_loss" in entry]
    assert meta_losses and np.isfinite(meta_losses).all()
    assert np.isfinite(np.asarray(trainer.noise_report()["meta_weight"][:])).all()


def test_one_meta_update_per_optimiser_step_with_gradient_accumulation(tmp_path, monkeypatch):
    model, data = _family("bert", n=48)
    trainer = NoisyLabelTrainer(
        model=model, train_dataset=data,
        args=_config(tmp_path, num_train_epochs=1, gradient_accumulation_steps=2, clid_update_every=2),
    )
    steps, update = [], trainer.method._meta_update

    def counted_update(*args):
        steps.append(trainer.state.global_step)
        return update(*args)

    monkeypatch.setattr(trainer.method, "_meta_update", counted_update)
    trainer.train()
    assert trainer.state.global_step == 3 and steps == [0, 2]  # 6 micro-batches, 3 optimiser steps


# ------------------------------------------------------------------------------------------------------- resume
def test_resume_from_a_middle_checkpoint_ends_identically(tmp_path):
    data = _with_noise(text_dataset(48), num_labels=4)
    kwargs = dict(
        clid_scope="last_k", clid_update_every=2, num_train_epochs=2, learning_rate=1e-3,
        save_strategy="steps", save_steps=4, clid_meta_optimizer="adam",
    )
    full = NoisyLabelTrainer(model=_spread(tiny_bert(dropout=0.1), 10.0), args=_config(tmp_path, **kwargs),
                             train_dataset=data)
    full.train()
    resumed = NoisyLabelTrainer(model=_spread(tiny_bert(dropout=0.1, seed=1), 10.0),
                                args=_config(tmp_path / "resumed", **kwargs), train_dataset=data)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))  # mid-epoch 1 (6 steps/epoch)
    expected, got = full.noise_report(), resumed.noise_report()
    for column in expected.column_names:
        np.testing.assert_array_equal(np.asarray(got[column][:]), np.asarray(expected[column][:]), err_msg=column)
    expected_state, got_state = full.method.state_dict(), resumed.method.state_dict()
    assert set(got_state) == set(expected_state) and any(k.startswith("meta_optimizer.") for k in got_state)
    for name, tensor in expected_state.items():
        torch.testing.assert_close(got_state[name], tensor, rtol=0, atol=0, msg=name)
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (full, resumed)]
    assert losses[0] == losses[1] and len(losses[0]) == 12


def test_resume_under_max_steps_keeps_the_epoch_the_warm_up_ended(tmp_path):
    # with max_steps the warm-up is a third of the steps, and the disputed-label safeguard decides at the first epoch
    # end after it (from MIN_DECISION_EPOCH on): a run resumed past the warm-up's end must keep the epoch it ended
    data = _with_noise(text_dataset(48), num_labels=4)
    kwargs = dict(max_steps=12, save_strategy="steps", save_steps=8, clid_disputed_safeguard=True)
    full = NoisyLabelTrainer(model=tiny_bert(dropout=0.1), args=_config(tmp_path, **kwargs), train_dataset=data)
    full.train()
    assert full.method._warmup_end_epoch == pytest.approx(4 / 6) and full.method.decision_epoch == 2
    resumed = NoisyLabelTrainer(model=tiny_bert(dropout=0.1, seed=1), args=_config(tmp_path / "resumed", **kwargs),
                                train_dataset=data)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-8"))  # epoch 1.33, after the warm-up
    assert resumed.method._warmup_end_epoch == pytest.approx(4 / 6) and resumed.method.decision_epoch == 2


def test_split_weights_gives_the_low_weight_component_posterior():
    rng = np.random.default_rng(0)
    trusted, distrusted = rng.normal(0.6, 0.05, 600), rng.normal(0.1, 0.04, 400)
    weights = np.concatenate([trusted, distrusted, [np.nan]])
    posterior, contrast = split_weights(weights)
    assert (posterior[600:1000] > 0.5).all() and (posterior[:600] < 0.5).all() and posterior[-1] == 0.0
    assert contrast == pytest.approx(1 - 0.1 / 0.6, abs=0.02)
    # the same separation at another scale gives the same split (the sigmoid may settle anywhere: the B2 runs' weights
    # sat between 1e-8 and 1e-3, under the mixture's absolute variance floor, and once flagged nothing)
    for scale in (0.2, 1e-4, 1e-7):
        rescaled, rescaled_contrast = split_weights(weights * scale)
        assert np.array_equal(rescaled > 0.5, posterior > 0.5) and rescaled_contrast == pytest.approx(contrast)
    # weights that have not separated give nothing to split
    flat, flat_contrast = split_weights(np.full(50, 0.5) + rng.normal(0, 1e-4, 50))
    assert not flat.any() and flat_contrast == 0.0
    lone, lone_contrast = split_weights(np.array([0.3, np.nan]))
    assert not lone.any() and np.isnan(lone_contrast)
    # a larger set than the fit takes: every sample still gets its posterior
    sampled, _ = split_weights(weights, max_fit_samples=100)
    assert np.array_equal(sampled > 0.5, posterior > 0.5)


def test_noise_score_flags_only_weights_that_have_split(tmp_path):
    model, data = _family("bert", n=16)
    args = _config(tmp_path, clid_noise_score="meta_weight")
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data)
    trainer.method.setup()
    rng = np.random.default_rng(0)
    split = np.concatenate([rng.normal(0.8, 0.03, 10), rng.normal(0.05, 0.01, 6)])
    trainer.method.meta_weight[:-1] = torch.from_numpy(split)
    scores = trainer.method.noise_scores()
    assert (scores[10:] > 0.5).all() and (scores[:10] < 0.5).all()
    # two close groups (low group at 90% of the high one): the mixture still splits them, the score does not flag
    close = np.concatenate([rng.normal(0.50, 0.005, 10), rng.normal(0.45, 0.005, 6)])
    trainer.method.meta_weight[:-1] = torch.from_numpy(close)
    posterior, contrast = split_weights(trainer.method.meta_weight[:-1].float().numpy())
    assert (posterior[10:] > 0.5).all() and contrast < 0.2
    scores = trainer.method.noise_scores()
    assert scores.max() <= contrast  # nothing flagged at any threshold above the contrast ...
    assert set(np.argsort(scores)[-6:].tolist()) == set(range(10, 16))  # ... and the low group still ranks first


def test_default_noise_score_keeps_the_weights_flags_and_ranks_them_by_wrong_events(tmp_path):
    model, data = _family("bert", n=16)
    trainer = NoisyLabelTrainer(model=model, args=_config(tmp_path), train_dataset=data)
    assert trainer.args.clid_noise_score == "wrong_events"
    trainer._setup_lnl_state()
    rng = np.random.default_rng(0)
    weights = np.concatenate([rng.normal(0.8, 0.03, 10), rng.normal(0.05, 0.01, 6)])
    trainer.method.meta_weight[:-1] = torch.from_numpy(weights)
    counts = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 3, 0, 2, 1, 3, 0])
    trainer.tracker.wrong_events[:-1] = torch.from_numpy(counts)
    trainer.tracker.epochs_completed = 3
    scores = trainer.method.noise_scores()
    assert (scores[10:] > 0.5).all() and (scores[:10] < 0.5).all()  # the meta weights' decision, as "meta_weight"
    for side in (slice(0, 10), slice(10, 16)):  # ... and on each side, more wrong events rank higher
        np.testing.assert_array_equal(np.argsort(scores[side], kind="stable"), np.argsort(counts[side], kind="stable"))
    trainer.args.clid_noise_score = "meta_weight"
    np.testing.assert_array_equal(trainer.method.noise_scores() > 0.5, scores > 0.5)


def test_class_balanced_normalisation_keeps_each_class_share(tmp_path):
    model, data = _family("bert", n=16)
    trainer = NoisyLabelTrainer(model=model, args=_config(tmp_path, clid_class_balanced=True), train_dataset=data)
    trainer.method.setup()
    labels = torch.tensor([0, 0, 1, 1, 1, -100])
    weights = torch.tensor([0.9, 0.1, 0.2, 0.2, 0.6, 0.0], requires_grad=True)
    normalised = trainer.method._normalise(weights, labels)
    assert normalised[:2].sum().item() == pytest.approx(2 / 5) and normalised[2:5].sum().item() == pytest.approx(3 / 5)
    assert normalised[5].item() == 0.0
    assert torch.allclose(normalised[:2], torch.tensor([0.9, 0.1]) * 2 / 5, atol=1e-6)  # within a class: w / Σ_class w
    (gradient,) = torch.autograd.grad(normalised[0], weights)  # differentiable for the meta-gradient
    assert gradient[0] > 0 and gradient[1] < 0 and gradient[2:].abs().sum() == 0


def test_class_balanced_normalisation_still_learns_from_a_class_alone_in_the_batch(tmp_path):
    """100 classes, batch 100: about a third of the samples are alone in their class in a batch."""
    model, data = _family("bert", n=16)
    trainer = NoisyLabelTrainer(model=model, args=_config(tmp_path, clid_class_balanced=True), train_dataset=data)
    trainer.method.setup()
    trainer.method._num_classes = 100
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 100, 100))
    alone = (torch.bincount(labels, minlength=100) == 1)[labels]
    assert 20 < int(alone.sum()) < 50
    weights = torch.rand(100, generator=torch.Generator().manual_seed(1), requires_grad=True)
    normalised = trainer.method._normalise(weights, labels)
    # a sample alone in its class is weighted like the paper's w / Σ w: it follows its own weight ...
    torch.testing.assert_close(normalised[alone], (weights / weights.sum())[alone])
    lonely = int(torch.nonzero(alone)[0])
    (gradient,) = torch.autograd.grad(normalised[lonely], weights)
    assert gradient[lonely] > 0  # ... so the meta network learns from it (its weight was frozen at 1/100)
    shared = normalised[~alone].detach()
    for c in labels[~alone].unique():  # classes with several samples keep their share of the batch
        members = labels == c
        assert normalised[members].sum().item() == pytest.approx(int(members.sum()) / 100, rel=1e-5)
    assert shared.min() > 0


def test_warmup_trains_exactly_like_cross_entropy_while_the_meta_network_learns(tmp_path):
    data = _with_noise(text_dataset(24), 3)
    trained = {}
    for method, extra in (("none", {}), ("clid_mu", {"clid_warmup_epochs": 1.0})):
        model = _spread(tiny_bert(dropout=0.0), 10.0)
        trainer, _ = _train(tmp_path / method, model, data, lnl_method=method, **extra)
        trained[method] = dict(model.named_parameters())
        if method == "clid_mu":
            assert any("clid_meta_loss" in entry for entry in trainer.state.log_history)
            initial = MetaWeightNet(hidden_size=100, seed=COMMON["seed"]).hidden.weight
            assert not torch.equal(trainer.method.meta_net.hidden.weight.detach().cpu(), initial.detach())
    for name, p in trained["none"].items():
        assert torch.allclose(p, trained["clid_mu"][name], atol=1e-5), name


def test_the_default_warm_up_is_the_first_third_of_the_run(tmp_path):
    assert warmup_epochs(_config(tmp_path, num_train_epochs=6)) == 2.0
    assert warmup_epochs(_config(tmp_path, num_train_epochs=8)) == 3.0
    assert warmup_epochs(_config(tmp_path, num_train_epochs=8, clid_warmup_epochs=0)) == 0.0  # the paper's CLID-MU
    assert warmup_epochs(_config(tmp_path, max_steps=6)) is None  # counted in steps instead
    data = _with_noise(text_dataset(24), 3)  # 3 optimiser steps per epoch at batch 8
    trained = {}
    for name, extra in (
        ("default, 3 epochs", {"num_train_epochs": 3}),
        ("1 epoch given", {"num_train_epochs": 3, "clid_warmup_epochs": 1.0}),
        ("no warm-up", {"num_train_epochs": 3, "clid_warmup_epochs": 0.0}),
        ("default, 6 steps", {"max_steps": 6}),
        ("2 of 6 steps given", {"max_steps": 6, "clid_warmup_epochs": 0.5}),  # steps 0 and 1 start before epoch 0.5
        ("no warm-up, 6 steps", {"max_steps": 6, "clid_warmup_epochs": 0.0}),
    ):
        model = _spread(tiny_bert(dropout=0.0), 10.0)
        args = _config(tmp_path / name, learning_rate=1e-3, **extra)
        trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data)
        trainer.train()
        trained[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
        if name.startswith("default"):
            length = "the first 1 epoch(s)" if "epochs" in name else "the first third of the steps"
            assert any(length in note and "cross-entropy" in note for note in trainer.method.card_notes())
        if name.startswith("no warm-up"):
            assert not any("cross-entropy while" in note for note in trainer.method.card_notes())
    assert torch.equal(trained["default, 3 epochs"], trained["1 epoch given"])
    assert not torch.equal(trained["default, 3 epochs"], trained["no warm-up"])
    assert torch.equal(trained["default, 6 steps"], trained["2 of 6 steps given"])
    assert not torch.equal(trained["default, 6 steps"], trained["no warm-up, 6 steps"])


# ------------------------------------------------------------------------------------------- weight contrast
def test_weight_contrast_tells_two_groups_from_one():
    rng = np.random.default_rng(0)
    two = np.concatenate([rng.normal(0.8, 0.02, 60), rng.normal(0.1, 0.02, 40), [np.nan]])
    assert weight_contrast(two) == pytest.approx(1 - 0.1 / 0.8, abs=0.02)
    assert weight_contrast(rng.normal(0.45, 0.01, 100)) < 0.1  # one group, however the mixture splits it
    assert weight_contrast(np.full(5, 0.3)) == 0.0
    assert np.isnan(weight_contrast(np.array([0.3, np.nan])))


def test_a_weighting_that_never_switches_on_is_logged_and_named_in_the_card(tmp_path):
    data = _with_noise(text_dataset(24), 3)
    model = _spread(tiny_bert(dropout=0.0), 10.0)
    # An SGD meta step of 1e-12 leaves the meta network at its initial, nearly flat weights.
    args = _config(tmp_path, num_train_epochs=2, learning_rate=1e-3, clid_meta_optimizer="sgd", clid_meta_lr=1e-12)
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    logs = trainer.state.log_history
    contrasts = [entry["meta_weight_contrast"] for entry in logs if "meta_weight_contrast" in entry]
    assert len(contrasts) == 2 and all(0 <= c < MIN_WEIGHT_CONTRAST for c in contrasts)
    assert trainer.method.contrast == contrasts[-1]
    assert trainer.method.noise_scores().max() < MIN_WEIGHT_CONTRAST  # nothing flagged at the default threshold
    trainer.create_model_card()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "CLID-MU's weighting had not switched on" in card and f"{contrasts[-1]:.2f}" in card
    trainer.method.contrast = 0.9  # a weighting that did switch on: no note but the default warm-up's (1 of 2 epochs)
    notes = trainer.method.card_notes()
    assert len(notes) == 1 and "the first 1 epoch(s) with plain cross-entropy" in notes[0]


# ------------------------------------------------------------------------------------------- premise safeguard
def test_premise_safeguard_fires_when_the_samples_it_would_trust_are_still_predicted_wrongly(tmp_path):
    # the 6 samples wrong at all three epochs are flagged; the other 10 were wrong at one or two of them (the clean
    # component's mean rate 0.35), or never; the last epoch changed 8 of the 16 predictions (still learning)
    for trusted_counts, fires in (([1] * 3 + [2] * 7, True), ([0] * 10, False)):
        trainer, method = _disputed_setup(tmp_path, clid_premise_safeguard=True, clid_warmup_epochs=3)
        trainer.tracker.wrong_events[:-1] = torch.tensor(trusted_counts + [3] * 6, dtype=torch.int32)
        trainer.tracker.prediction_changes = [12, 8]
        method.label_belief[:] = 0.9  # every label believed: the disputed check would fire if it were asked
        assert method.premise_epoch == method.decision_epoch == 3  # both decide at the warm-up's end
        trainer.state.epoch = 2.0
        assert "clid_clean_component_error_rate" not in method.on_epoch_end() and method.clean_error_rate is None
        trainer.state.epoch = 3.0
        logs = method.on_epoch_end()
        assert (logs["clid_clean_component_error_rate"] > 1 / 3) == fires
        assert logs["clid_prediction_change_share"] == pytest.approx(8 / 16)
        assert method.premise_failed == fires and method.weighting_off == fires
        assert ("clid_believed_share" in logs) != fires  # a failed premise leaves nothing for the disputed check
        assert method.disputed != fires
        if fires:
            assert "had not learnt them" in method.card_notes()[0] and "clid_premise_safeguard" in method.safeguards[0]
        trainer.state.epoch = 4.0  # decided once
        assert "clid_clean_component_error_rate" not in method.on_epoch_end()


def test_premise_safeguard_waits_for_three_epochs_of_wrong_events(tmp_path):
    # with a 2-epoch warm-up the disputed check decides after epoch 2, the premise only after epoch 3: a fresh head's
    # first epoch is wrong on most samples, so two epochs of counts cannot tell a model that learnt little
    trainer, method = _disputed_setup(tmp_path, clid_premise_safeguard=True, clid_warmup_epochs=2)
    assert (method.decision_epoch, method.premise_epoch) == (2, 3)
    trainer.tracker.wrong_events[:-1] = torch.tensor([0] * 2 + [1] * 8 + [2] * 6, dtype=torch.int32)  # rate 0.46
    trainer.state.epoch = 2.0
    logs = method.on_epoch_end()
    assert "clid_believed_share" in logs and "clid_clean_component_error_rate" not in logs
    assert not method.premise_failed
    trainer.tracker.wrong_events[:-1] = torch.tensor([0] * 10 + [3] * 6, dtype=torch.int32)
    trainer.state.epoch = 3.0
    assert method.on_epoch_end()["clid_clean_component_error_rate"] == pytest.approx(0.0, abs=1e-3)


def test_premise_safeguard_does_not_fire_on_a_model_whose_predictions_have_settled(tmp_path):
    # the trusted samples were wrong in 35% of the epochs (a pretrained model at high noise can read so after three
    # epochs), but the last epoch changed only 4 of 16 predictions (a quarter, not more): the model is not still
    # learning them, so the weighting stays and the disputed check decides as usual
    assert NoisyLabelConfig(output_dir="unused", lnl_method="clid_mu").clid_premise_safeguard  # on by default
    for changes, fires in (([12, 4], False), ([12, 5], True)):
        trainer, method = _disputed_setup(tmp_path, clid_premise_safeguard=True, clid_warmup_epochs=3)
        trainer.tracker.wrong_events[:-1] = torch.tensor([1] * 3 + [2] * 7 + [3] * 6, dtype=torch.int32)
        trainer.tracker.prediction_changes = changes
        method.label_belief[:] = 0.9
        trainer.state.epoch = 3.0
        logs = method.on_epoch_end()
        assert logs["clid_clean_component_error_rate"] > 1 / 3
        assert logs["clid_prediction_change_share"] == pytest.approx(changes[-1] / 16)
        assert method.premise_failed == fires and method.disputed != fires and bool(method.safeguards)
        assert ("was still learning" in method.safeguards[0]) == fires


def _premise_run(tmp_path, monkeypatch, threshold: float, resume_from_checkpoint=None, **settings):
    """A 4-epoch CLID-MU run whose premise safeguard decides at epoch 3 against `threshold`."""
    from hf_lnl.methods import clid_mu as clid_module

    monkeypatch.setattr(clid_module, "PREMISE_MAX_CLEAN_ERROR_RATE", threshold)
    data = _with_noise(text_dataset(24), 3)
    args = _config(tmp_path, num_train_epochs=4, learning_rate=1e-3, clid_disputed_safeguard=False,
                   clid_premise_safeguard=True, **settings)  # fmt: skip
    trainer = NoisyLabelTrainer(model=_spread(tiny_bert(dropout=0.1), 10.0), args=args, train_dataset=data)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    assert trainer.method.clean_error_rate is not None
    return trainer, data


def test_a_premise_check_that_does_not_fire_leaves_training_unchanged(tmp_path, monkeypatch):
    checked, _ = _premise_run(tmp_path / "on", monkeypatch, threshold=1.0)  # decided, and cannot fire
    unchecked_args = _config(tmp_path / "off", num_train_epochs=4, learning_rate=1e-3, clid_disputed_safeguard=False)
    unchecked = NoisyLabelTrainer(model=_spread(tiny_bert(dropout=0.1), 10.0), args=unchecked_args,
                                  train_dataset=_with_noise(text_dataset(24), 3))  # fmt: skip
    unchecked.train()
    assert not checked.method.premise_failed and unchecked.method.clean_error_rate is None
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (checked, unchecked)]
    assert losses[0] == losses[1]
    torch.testing.assert_close(checked.method.meta_weight[:-1], unchecked.method.meta_weight[:-1], rtol=0, atol=0)


def test_premise_safeguard_trains_every_label_with_cross_entropy_once_fired(tmp_path, monkeypatch):
    trainer, data = _premise_run(tmp_path, monkeypatch, threshold=-1.0)  # any rate is above it
    method = trainer.method
    assert method.premise_failed and method.weighting_off
    logs = trainer.state.log_history
    epoch_of_meta_steps = [entry["epoch"] for entry in logs if "clid_meta_loss" in entry]
    assert epoch_of_meta_steps and max(epoch_of_meta_steps) <= 3.0  # the meta network stopped after epoch 3
    assert [entry["epoch"] for entry in logs if "clid_clean_component_error_rate" in entry] == [3.0]
    batch = _training_batch(trainer, data)
    labels = batch["labels"].clone()
    sample_index = batch.pop(trainer.args.sample_index_column)
    trainer.model.eval()
    output = method.compute_loss(trainer.model, dict(batch), sample_index, None)
    expected = F.cross_entropy(trainer.model(**{k: v for k, v in batch.items() if k != "labels"}).logits, labels)
    torch.testing.assert_close(output.loss, expected)  # every label at full weight: plain cross-entropy
    trainer.create_model_card()
    assert "clid_premise_safeguard" in (tmp_path / "out" / "README.md").read_text()


def test_a_run_resumed_after_the_premise_safeguard_fired_keeps_training_with_cross_entropy(tmp_path, monkeypatch):
    full, _ = _premise_run(tmp_path, monkeypatch, -1.0, save_strategy="steps", save_steps=10)  # step 10 of 12
    resumed, _ = _premise_run(tmp_path / "resumed", monkeypatch, -1.0, str(tmp_path / "out" / "checkpoint-10"))
    assert resumed.method.metadata() == full.method.metadata() and resumed.method.weighting_off
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e and e["epoch"] > 10 / 3] for t in (full, resumed)]
    assert losses[0] and losses[0] == losses[1]


# ------------------------------------------------------------------------------------ disputed-label safeguard
def _disputed_setup(tmp_path, **settings):
    """A CLID-MU trainer set up (tracker included) on 16 samples whose wrong events flag the last 6, and whose meta
    weights have not split: the safeguard must read the wrong events, not the weights."""
    model, data = _family("bert", n=16)
    trainer = NoisyLabelTrainer(model=model, args=_config(tmp_path, clid_disputed_safeguard=True, **settings),
                                train_dataset=data)  # fmt: skip
    trainer._setup_lnl_state()
    trainer.tracker.wrong_events[:-1] = torch.tensor([0] * 10 + [2] * 6, dtype=torch.int32)
    trainer.method.meta_weight[:-1] = 0.5
    return trainer, trainer.method


def test_disputed_safeguard_fires_only_when_the_labels_its_wrong_events_flag_are_still_believed(tmp_path):
    for low_group_belief, fires in (([0.9, 0.7, 0.5, 0.2, 0.1, 0.1], True), ([0.3, 0.2, 0.1, 0.1, 0.05, 0.0], False)):
        trainer, method = _disputed_setup(tmp_path)
        method.label_belief[:] = torch.tensor([0.9] * 10 + low_group_belief)  # the trusted group is believed anyway
        trainer.state.epoch = 1.0  # before MIN_DECISION_EPOCH (one epoch's wrong events have no history): no decision
        assert "clid_believed_share" not in method.on_epoch_end() and method.believed_share is None
        trainer.state.epoch = 2.0
        logs = method.on_epoch_end()
        assert logs["clid_believed_share"] == pytest.approx(3 / 6 if fires else 0.0)  # of the 6 flagged labels
        assert logs["clid_flagged_share"] == pytest.approx(6 / 16)  # the wrong events' flags, not the flat weights
        assert method.disputed == fires and bool(method.safeguards) == fires
        assert not method.weighting_off  # the default response keeps the weighting (clid_disputed_response="belief")
        if fires:
            assert "disputed labels rather than flips" in method.card_notes()[0]  # safeguards come first
        method.label_belief[:] = 1.0  # decided once: a later epoch end measures nothing again
        trainer.state.epoch = 3.0
        assert "clid_believed_share" not in method.on_epoch_end() and method.disputed == fires


def test_a_disputed_check_that_does_not_fire_leaves_training_unchanged(tmp_path):
    data = _with_noise(text_dataset(24), 3)
    runs = []
    for on in (True, False):
        args = _config(tmp_path / str(on), num_train_epochs=3, learning_rate=1e-3, clid_disputed_safeguard=on)
        trainer = NoisyLabelTrainer(model=_spread(tiny_bert(dropout=0.1), 10.0), args=args, train_dataset=data)
        trainer.train()
        runs.append(trainer)
    checked, unchecked = runs
    assert checked.method.believed_share is not None and not checked.method.disputed  # decided, and did not fire
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in runs]
    assert losses[0] == losses[1]
    torch.testing.assert_close(checked.method.meta_weight[:-1], unchecked.method.meta_weight[:-1], rtol=0, atol=0)


def test_disputed_safeguard_waits_for_wrong_events_that_flag_enough_samples(tmp_path):
    trainer, method = _disputed_setup(tmp_path)
    trainer.tracker.wrong_events[:-1] = 1  # every sample alike: the mixture flags none
    method.label_belief[:] = 0.9
    trainer.state.epoch = 2.0
    assert "clid_believed_share" not in method.on_epoch_end() and method.believed_share is None


def test_disputed_safeguard_decides_at_the_end_of_the_cross_entropy_warm_up(tmp_path):
    trainer, method = _disputed_setup(tmp_path, clid_warmup_epochs=2.5)
    assert method.decision_epoch == 3  # the first epoch end after the warm-up
    method.label_belief[:] = 0.9  # every flagged label believed: it would fire at once without the warm-up
    for epoch in (1.0, 2.0):  # inside the warm-up the beliefs are still being learnt: no decision
        trainer.state.epoch = epoch
        assert "clid_believed_share" not in method.on_epoch_end() and method.believed_share is None
    trainer.state.epoch = 3.0
    assert method.on_epoch_end()["clid_believed_share"] == pytest.approx(1.0) and method.disputed
    assert "after epoch 3" in method.card_notes()[0]


def _fired_run(tmp_path, monkeypatch, resume_from_checkpoint=None, **settings):
    """A 3-epoch CLID-MU run whose disputed-label safeguard fires at its first decision (epoch 2)."""
    from hf_lnl.methods import clid_mu as clid_module

    monkeypatch.setattr(clid_module, "DISPUTED_BELIEVED_SHARE", 0.0)
    monkeypatch.setattr(clid_module, "MIN_FLAGGED_SHARE", 0.0)
    data = _with_noise(text_dataset(24), 3)
    model = _spread(tiny_bert(dropout=0.0), 10.0)
    args = _config(tmp_path, num_train_epochs=3, learning_rate=1e-3, clid_disputed_safeguard=True, **settings)
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    assert trainer.method.disputed and trainer.method.believed_share is not None
    return trainer, data


def test_a_run_resumed_after_the_disputed_safeguard_fired_keeps_its_response(tmp_path, monkeypatch):
    full, _ = _fired_run(tmp_path, monkeypatch, save_strategy="steps", save_steps=7)  # step 7 of 9: epoch 2.33
    resumed, _ = _fired_run(tmp_path / "resumed", monkeypatch, str(tmp_path / "out" / "checkpoint-7"))
    assert resumed.method.metadata() == full.method.metadata() and not resumed.method.weighting_off
    torch.testing.assert_close(resumed.method.label_belief, full.method.label_belief, rtol=0, atol=0)
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e and e["epoch"] > 7 / 3] for t in (full, resumed)]
    assert losses[0] and losses[0] == losses[1]  # the steps after the checkpoint train with the believed weights


def test_disputed_safeguard_responds_by_raising_each_weight_by_its_label_belief(tmp_path, monkeypatch):
    trainer, data = _fired_run(tmp_path, monkeypatch)
    method = trainer.method
    assert not method.weighting_off
    logs = trainer.state.log_history
    assert max(entry["epoch"] for entry in logs if "clid_meta_loss" in entry) > 2.0  # the meta network still learns
    frozen = method.label_belief.clone()
    batch = _training_batch(trainer, data)
    labels = batch["labels"].clone()
    sample_index = batch.pop(trainer.args.sample_index_column)
    trainer.model.eval()
    output = method.compute_loss(trainer.model, dict(batch), sample_index, None)
    torch.testing.assert_close(method.label_belief, frozen)  # the belief stays the one read at the decision
    with torch.no_grad():
        raw = method._meta_weights(output.per_sample_loss)
    belief = frozen[sample_index]
    assert 0.0 < float(belief.min()) and float(belief.max()) < 1.0  # a belief in between: the test can tell
    believed = raw + (raw.max() - raw) * belief
    torch.testing.assert_close(output.loss, (method._normalise(believed, labels) * output.per_sample_loss).sum())
    weights = method._believed_weights(raw, sample_index, torch.ones_like(labels, dtype=torch.bool))
    assert bool((weights >= raw).all())  # a belief only ever raises a weight
    method.label_belief[sample_index] = 1.0  # a label the model fully believed weighs what the batch's largest does
    full = method._believed_weights(raw, sample_index, torch.ones_like(labels, dtype=torch.bool))
    torch.testing.assert_close(full, torch.full_like(raw, float(raw.max())))
    method.label_belief[sample_index] = 0.0  # ... one it rejected keeps its meta weight; an ignored label stays out
    ignored = torch.ones_like(labels, dtype=torch.bool)
    ignored[0] = False
    kept = method._believed_weights(raw * ignored, sample_index, ignored)
    torch.testing.assert_close(kept, raw * ignored)
    trainer.create_model_card()
    assert "clid_disputed_response='belief'" in (tmp_path / "out" / "README.md").read_text()


def test_disputed_safeguard_trains_every_label_with_cross_entropy_once_fired(tmp_path, monkeypatch):
    trainer, data = _fired_run(tmp_path, monkeypatch, clid_disputed_response="stop")
    assert trainer.method.weighting_off
    logs = trainer.state.log_history
    epoch_of_meta_steps = [entry["epoch"] for entry in logs if "clid_meta_loss" in entry]
    assert epoch_of_meta_steps and max(epoch_of_meta_steps) <= 2.0  # the meta network stopped after epoch 2
    assert [entry["epoch"] for entry in logs if "clid_flagged_share" in entry] == [2.0]  # the decision, logged once
    batch = _training_batch(trainer, data)
    labels = batch["labels"].clone()
    sample_index = batch.pop(trainer.args.sample_index_column)
    trainer.model.eval()
    output = trainer.method.compute_loss(trainer.model, dict(batch), sample_index, None)
    expected = F.cross_entropy(trainer.model(**{k: v for k, v in batch.items() if k != "labels"}).logits, labels)
    torch.testing.assert_close(output.loss, expected)  # every label at full weight: plain cross-entropy
    trainer.create_model_card()
    assert "CLID-MU safeguard fired" in (tmp_path / "out" / "README.md").read_text()
