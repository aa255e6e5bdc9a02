"""Label-free model selection: `eval_clid` and the meta set it shares with CLID-MU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import image_dataset, tiny_vit

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer
from hf_lnl.clid import clid
from hf_lnl.features import HeadFeatureCapture
from hf_lnl.model_selection import draw_meta_set, evaluate_clid, sample_features

COMMON = dict(report_to=[], save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True, seed=0)


def _config(tmp_path, **kwargs) -> NoisyLabelConfig:
    return NoisyLabelConfig(output_dir=str(tmp_path / "out"), **{**COMMON, **kwargs})


def _vit():
    """A tiny ViT whose features differ between images (a fresh one maps them all to nearly the same vector)."""
    model = tiny_vit()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    return model


def _clid_by_chunks(model, data, chunk: int) -> float:
    """One forward over the whole set in its stored order, then the mean CLID of consecutive chunks of >= 2."""
    model.eval()
    with torch.no_grad(), HeadFeatureCapture(model) as capture:
        logits = model(pixel_values=data.with_format("torch")[:]["pixel_values"]).logits
    h = capture.features
    scores = [clid(h[s : s + chunk], logits[s : s + chunk]) for s in range(0, len(h), chunk) if len(h) - s >= 2]
    return float(torch.stack(scores).mean())


def test_draw_meta_set_is_seeded_distinct_and_capped():
    first = draw_meta_set(100, 30, seed=4)
    assert np.array_equal(first, draw_meta_set(100, 30, seed=4)) and len(set(first.tolist())) == 30
    assert not np.array_equal(first, draw_meta_set(100, 30, seed=5))
    assert sorted(draw_meta_set(10, 1000, seed=0).tolist()) == list(range(10))
    with pytest.raises(ValueError):
        draw_meta_set(0, 10, seed=0)


def test_eval_clid_does_not_depend_on_eval_batch_size_and_drops_a_final_single(tmp_path):
    model, data = _vit(), image_dataset(33)  # chunks of 16: 16 + 16 + a single sample that is dropped
    values = []
    for batch_size in (8, 64):
        args = _config(tmp_path, per_device_eval_batch_size=batch_size, clid_meta_batch_size=16)
        trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data)
        values.append(evaluate_clid(trainer, data))
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    assert values[0] == pytest.approx(_clid_by_chunks(model, data, 16), rel=1e-6)
    assert values[0] != pytest.approx(_clid_by_chunks(model, data, 11), rel=1e-4)  # the chunk size matters


def test_eval_clid_set_defaults_to_clid_dataset_then_the_meta_set(tmp_path):
    model, data = _vit(), image_dataset(40)
    args = _config(tmp_path, clid_meta_set_size=24, clid_meta_batch_size=12)
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data)
    meta_set = data.select(draw_meta_set(40, 24, seed=0))
    assert evaluate_clid(trainer) == pytest.approx(_clid_by_chunks(model, meta_set, 12), rel=1e-6)
    unlabelled = image_dataset(30, seed=3).remove_columns("label")
    trainer.clid_dataset = unlabelled
    assert evaluate_clid(trainer) == pytest.approx(_clid_by_chunks(model, unlabelled, 12), rel=1e-6)
    clid_mu = NoisyLabelTrainer(
        model=model, args=_config(tmp_path, lnl_method="clid_mu", clid_meta_set_size=24, clid_meta_batch_size=12),
        train_dataset=data,
    )
    clid_mu.method.setup()
    assert np.array_equal(clid_mu.method.meta_set_indices, draw_meta_set(40, 24, seed=0))
    assert evaluate_clid(clid_mu) == pytest.approx(evaluate_clid(trainer, meta_set), rel=1e-6)


def test_sample_features_pools_decoder_sequences_at_the_last_attended_token():
    features = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert torch.equal(sample_features(features, mask), torch.stack([features[0, 1], features[1, 3]]))
    assert torch.equal(sample_features(features), features[:, -1])
    flat = features[:, 0]
    assert sample_features(flat, mask) is flat
    with pytest.raises(ValueError, match="clid_head_module"):
        sample_features(torch.zeros(2, 3, 4, 5))


@pytest.mark.parametrize("method", ["none", "clid_mu"])
def test_best_checkpoint_by_clid(tmp_path, method):
    data = image_dataset(32)
    args = _config(
        tmp_path, lnl_method=method, num_train_epochs=3, learning_rate=5e-3, per_device_train_batch_size=8,
        eval_strategy="epoch", save_strategy="epoch", metric_for_best_model="clid", load_best_model_at_end=True,
        clid_meta_set_size=16, clid_meta_batch_size=8,
    )
    assert args.greater_is_better is False
    trainer = NoisyLabelTrainer(model=_vit(), args=args, train_dataset=data, eval_dataset=data.select(range(8)))
    trainer.train()
    scores = {entry["step"]: entry["eval_clid"] for entry in trainer.state.log_history if "eval_clid" in entry}
    assert len(scores) == 3 and all(np.isfinite(list(scores.values())))
    best_step = min(scores, key=scores.get)
    assert trainer.state.best_metric == pytest.approx(scores[best_step])
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")
    assert trainer.evaluate()["eval_clid"] == pytest.approx(scores[best_step], rel=1e-5)  # the best model is back


def test_label_free_selection_without_an_eval_dataset(tmp_path):
    args = _config(
        tmp_path, lnl_method="none", num_train_epochs=2, learning_rate=5e-3, per_device_train_batch_size=8,
        eval_strategy="epoch", save_strategy="epoch", metric_for_best_model="clid", load_best_model_at_end=True,
        clid_meta_set_size=16, clid_meta_batch_size=8,
    )
    trainer = NoisyLabelTrainer(model=_vit(), args=args, train_dataset=image_dataset(32))  # no clean validation set
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_clid" in entry]
    assert len(evaluations) == 2 and not any("eval_loss" in entry for entry in evaluations)
    best_step = min(evaluations, key=lambda entry: entry["eval_clid"])["step"]
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")
    assert set(trainer.evaluate()) == {"eval_clid", "epoch"}  # as Trainer.evaluate, the log adds the epoch
    assert {"eval_loss", "eval_clid"} <= set(trainer.evaluate(image_dataset(8)))  # a set given explicitly is used


def test_eval_clid_needs_two_samples(tmp_path):
    trainer = NoisyLabelTrainer(model=_vit(), args=_config(tmp_path), train_dataset=image_dataset(8))
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_clid(trainer, image_dataset(1))


def test_eval_clid_leaves_the_training_unchanged(tmp_path):
    """Scoring CLID iterates a DataLoader, which draws from the global generator: it must not alter the dropout and
    order of the training that follows."""
    from conftest import text_dataset, tiny_bert

    def train(clid_eval: bool):
        data = text_dataset(40)
        args = _config(tmp_path / str(clid_eval), num_train_epochs=3, per_device_train_batch_size=8,
                       learning_rate=1e-3, eval_strategy="epoch", clid_eval=clid_eval, clid_meta_set_size=16,
                       clid_meta_batch_size=8)  # fmt: skip
        trainer = NoisyLabelTrainer(model=tiny_bert(dropout=0.1), args=args, train_dataset=data, eval_dataset=data)
        trainer.train()
        assert any("eval_clid" in entry for entry in trainer.state.log_history) is clid_eval
        return trainer.model

    for a, b in zip(train(False).parameters(), train(True).parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("metric, chosen_epoch", [("clid", 4), ("accuracy", 1)])
def test_label_free_selection_skips_ido_stage1(tmp_path, monkeypatch, metric, chosen_epoch):
    """IDO's stage 2 restarts from the base model, so `metric_for_best_model="clid"` keeps none of stage 1 (epochs
    1-2 here, the lowest CLID); a clean validation metric may still pick one."""
    from hf_lnl import trainer as trainer_module

    per_epoch = iter([1.0, 0.5, 3.0, 2.0])  # epoch 2 has the lowest CLID and the highest accuracy
    scores: list[float] = []

    def scripted(trainer, dataset=None):
        scores.append(next(per_epoch))
        return scores[-1]

    monkeypatch.setattr(trainer_module, "evaluate_clid", scripted)
    accuracy = iter([0.9, 0.8, 0.1, 0.2])  # epoch 1 is best on the clean validation set
    args = _config(
        tmp_path, lnl_method="ido", num_train_epochs=4, ido_stage1_epochs=2, ido_stage2_epochs=2, learning_rate=1e-3,
        per_device_train_batch_size=8, eval_strategy="epoch", save_strategy="epoch", metric_for_best_model=metric,
        load_best_model_at_end=True, clid_eval=True,
    )
    trainer = NoisyLabelTrainer(
        model=_vit(), args=args, train_dataset=image_dataset(32), eval_dataset=image_dataset(8, seed=1),
        compute_metrics=lambda prediction: {"accuracy": next(accuracy)},
    )
    trainer.train()
    assert trainer.method.stage1_epochs == 2  # no extension: the epochs are the stages above
    evaluations = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    assert [entry["epoch"] for entry in evaluations] == [1, 2, 3, 4] and scores == [1.0, 0.5, 3.0, 2.0]
    chosen_step = next(entry["step"] for entry in evaluations if entry["epoch"] == chosen_epoch)
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{chosen_step}")
    assert trainer.state.best_metric == {"clid": 2.0, "accuracy": 0.9}[metric]
