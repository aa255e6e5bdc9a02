"""NoisyLabelTrainer as a drop-in Trainer: same losses, exact wrong events, the report, bad input."""

import datasets
import numpy as np
import pytest
import torch
from conftest import image_dataset, text_dataset, tiny_bert, tiny_vit
from transformers import Trainer, TrainingArguments

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer, WrongEventCallback, add_sample_index

COMMON = dict(report_to=[], save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True, seed=0)


def _config(tmp_path, **kwargs):
    return NoisyLabelConfig(output_dir=str(tmp_path / "out"), **{**COMMON, **kwargs})


def _losses(log_history):
    return [entry["loss"] for entry in log_history if "loss" in entry]


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_same_training_losses_as_trainer(tmp_path, family):
    make_model, data = (tiny_bert, text_dataset(40)) if family == "bert" else (tiny_vit, image_dataset(40))
    kwargs = dict(num_train_epochs=2, per_device_train_batch_size=8, gradient_accumulation_steps=2, learning_rate=1e-3)
    plain = Trainer(
        model=make_model(), args=TrainingArguments(str(tmp_path / "plain"), **COMMON, **kwargs), train_dataset=data
    )
    plain.train()
    ours = NoisyLabelTrainer(model=make_model(), args=_config(tmp_path, **kwargs), train_dataset=data)
    ours.train()
    expected, got = _losses(plain.state.log_history), _losses(ours.state.log_history)
    assert len(expected) == len(got) > 0
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_frozen_model_wrong_events_are_exact(tmp_path, family):
    """lr 0 and no dropout: wrong_events[i] == epochs * [prediction_i != label_i], under shuffling, gradient
    accumulation 2 and a partial last batch (50 samples, batch 7)."""
    model = tiny_bert(dropout=0.0) if family == "bert" else tiny_vit()
    data = text_dataset(50) if family == "bert" else image_dataset(50)
    epochs = 3
    args = _config(
        tmp_path, num_train_epochs=epochs, learning_rate=0.0, per_device_train_batch_size=7,
        gradient_accumulation_steps=2, weight_decay=0.0,
    )
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    model.eval()
    with torch.no_grad():
        batch = data.with_format("torch")[:]
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values") if k in batch}
        predictions = model(**inputs).logits.argmax(-1).numpy()
    labels = np.asarray(data.with_format("numpy")["label"])
    report = trainer.noise_report()
    np.testing.assert_array_equal(report["wrong_events"][:], epochs * (predictions != labels))
    np.testing.assert_array_equal(report["predicted_label"][:], predictions)
    np.testing.assert_allclose(report["noise_score"][:], (predictions != labels).astype(float))


def test_report_columns_and_clean_label(tmp_path):
    data = text_dataset(32)
    data = data.add_column("clean_label", data["label"][:])
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path, num_train_epochs=1), train_dataset=data)
    trainer.train()
    report = trainer.noise_report()
    assert isinstance(report, datasets.Dataset)
    assert {"sample_index", "label", "wrong_events", "predicted_label", "noise_score", "clean_label"} <= set(
        report.column_names
    )
    assert report["sample_index"][:] == list(range(32))
    assert report["label"][:] == data["label"][:]
    scores = np.asarray(report["noise_score"][:])
    assert ((scores >= 0) & (scores <= 1)).all()


def test_callback_on_plain_trainer_matches_noisy_label_trainer(tmp_path):
    data = text_dataset(45)
    kwargs = dict(num_train_epochs=2, per_device_train_batch_size=8, learning_rate=1e-3)
    callback = WrongEventCallback()
    plain = Trainer(
        model=tiny_bert(),
        args=TrainingArguments(str(tmp_path / "plain"), remove_unused_columns=False, **COMMON, **kwargs),
        train_dataset=add_sample_index(data),
        callbacks=[callback],
    )
    plain.train()
    ours = NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path, **kwargs), train_dataset=data)
    ours.train()
    theirs, mine = callback.noise_report(), ours.noise_report()
    assert theirs["wrong_events"][:] == mine["wrong_events"][:]
    assert theirs["predicted_label"][:] == mine["predicted_label"][:]
    assert theirs["label"][:] == mine["label"][:]
    assert sum(theirs["wrong_events"][:]) > 0


def test_callback_errors_without_index(tmp_path):
    args = TrainingArguments(str(tmp_path / "plain"), remove_unused_columns=False, **COMMON)
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=text_dataset(8), callbacks=[WrongEventCallback()])
    with pytest.raises(ValueError, match="add_sample_index"):
        trainer.train()
    args = TrainingArguments(str(tmp_path / "plain2"), **COMMON)
    trainer = Trainer(
        model=tiny_bert(), args=args, train_dataset=add_sample_index(text_dataset(8)), callbacks=[WrongEventCallback()]
    )
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        trainer.train()


def test_custom_collator_eval_and_predict(tmp_path):
    seen_keys = []

    def collator(features):
        seen_keys.append(set(features[0]))
        return {
            "input_ids": torch.tensor([f["input_ids"] for f in features]),
            "labels": torch.tensor([f["label"] for f in features]),
        }

    data = text_dataset(24)
    args = _config(tmp_path, num_train_epochs=1, per_device_train_batch_size=8, eval_strategy="epoch")
    trainer = NoisyLabelTrainer(
        model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data, data_collator=collator,
        compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())},
    )
    trainer.train()
    assert all("sample_index" not in keys for keys in seen_keys)  # the model-facing collator never sees it
    assert "eval_accuracy" in trainer.evaluate()
    assert trainer.predict(data).predictions.shape == (24, 4)
    assert trainer.noise_report().num_rows == 24


def test_sample_index_never_reaches_forward(tmp_path):
    model = tiny_bert()
    received = []
    model.register_forward_pre_hook(lambda m, a, kw: received.append(set(kw)), with_kwargs=True)
    trainer = NoisyLabelTrainer(
        model=model, args=_config(tmp_path, num_train_epochs=1), train_dataset=text_dataset(16)
    )
    trainer.train()
    assert received and all("sample_index" not in keys for keys in received)


def test_with_transform_dataset_keeps_index(tmp_path):
    raw = image_dataset(20).with_format(None)

    def transform(batch):  # returns only model inputs, like a typical image transform
        return {"pixel_values": torch.tensor(np.asarray(batch["pixel_values"], dtype=np.float32)),
                "labels": torch.tensor(batch["label"])}

    args = _config(tmp_path, num_train_epochs=1, remove_unused_columns=False, per_device_train_batch_size=8)
    trainer = NoisyLabelTrainer(model=tiny_vit(), args=args, train_dataset=raw.with_transform(transform))
    trainer.train()
    assert trainer.noise_report().num_rows == 20
    assert trainer.tracker.epochs_completed == 1


def test_torch_map_style_dataset(tmp_path):
    data = text_dataset(16)
    items = [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"], "labels": r["label"]} for r in data]
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path, num_train_epochs=1), train_dataset=items)
    trainer.train()
    assert trainer.noise_report()["label"][:] == data["label"][:]


# ------------------------------------------------------------------------------------------- bad input
def _must_fail_before_training(trainer_factory, match):
    with pytest.raises(ValueError, match=match):
        trainer_factory()


def test_label_out_of_range_raises(tmp_path):
    data = text_dataset(16).map(lambda r, i: {"label": 7 if i == 3 else r["label"]}, with_indices=True)
    _must_fail_before_training(
        lambda: NoisyLabelTrainer(model=tiny_bert(num_labels=4), args=_config(tmp_path), train_dataset=data),
        r"'label' holds the label 7.*num_labels=4",
    )


def test_negative_label_other_than_ignore_raises(tmp_path):
    data = text_dataset(16).map(lambda r, i: {"label": -3 if i == 0 else r["label"]}, with_indices=True)
    _must_fail_before_training(
        lambda: NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path), train_dataset=data), "negative label -3"
    )


def test_ignored_labels_are_allowed(tmp_path):
    data = text_dataset(16).map(lambda r, i: {"label": -100 if i == 0 else r["label"]}, with_indices=True)
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path, num_train_epochs=1), train_dataset=data)
    trainer.train()
    assert trainer.noise_report()["wrong_events"][0] == 0


def test_float_labels_raise_for_robust_methods_and_disable_tracking_for_none(tmp_path, caplog):
    data = text_dataset(16).map(lambda r: {"label": r["label"] + 0.5})
    _must_fail_before_training(
        lambda: NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path, lnl_method="gce"), train_dataset=data),
        "non-integer labels",
    )
    trainer = NoisyLabelTrainer(model=tiny_bert(num_labels=1), args=_config(tmp_path), train_dataset=data)
    assert trainer._untracked_reason is not None
    with pytest.raises(RuntimeError, match="tracking is off"):
        trainer.noise_report()


def test_missing_label_column_raises(tmp_path):
    data = text_dataset(16).remove_columns("label")
    _must_fail_before_training(
        lambda: NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path), train_dataset=data), "no label column"
    )


@pytest.mark.parametrize("bad_index", [[0, 0, 1, 2], [1, 2, 3, 4], [0, 1, 2, -1]])
def test_bad_sample_index_raises(tmp_path, bad_index):
    data = text_dataset(4).add_column("sample_index", bad_index)
    _must_fail_before_training(
        lambda: NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path), train_dataset=data),
        "'sample_index' must be a permutation",
    )


def test_classlabel_disagreeing_with_num_labels_raises(tmp_path):
    data = text_dataset(16).cast_column("label", datasets.ClassLabel(num_classes=6))
    _must_fail_before_training(
        lambda: NoisyLabelTrainer(model=tiny_bert(num_labels=4), args=_config(tmp_path), train_dataset=data),
        "ClassLabel with 6 classes",
    )


def test_iterable_dataset(tmp_path, caplog):
    data = text_dataset(16).to_iterable_dataset()
    _must_fail_before_training(
        lambda: NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path, lnl_method="sce"), train_dataset=data),
        "iterable dataset of unknown length",
    )
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=_config(tmp_path, max_steps=2), train_dataset=data)
    trainer.train()
    assert trainer.tracker is None


def test_plain_training_arguments_are_refused_with_a_fix(tmp_path):
    with pytest.raises(TypeError, match="NoisyLabelConfig"):
        NoisyLabelTrainer(model=tiny_bert(), args=TrainingArguments(str(tmp_path)), train_dataset=text_dataset(4))


def test_config_defaults_and_validation(tmp_path):
    args = NoisyLabelConfig(output_dir=str(tmp_path))
    assert args.average_tokens_across_devices is False
    with pytest.raises(ValueError, match="lnl_method='bogus'"):
        NoisyLabelConfig(output_dir=str(tmp_path), lnl_method="bogus")
