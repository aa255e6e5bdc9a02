"""Hostile inputs and faults (issue 17): each numbered case either trains correctly or is refused before step 1 with a
`ValueError` naming the setting or column, and faults never reach the weights, a checkpoint or a resume."""

import json
import os
import struct

import numpy as np
import pytest
import torch
from conftest import TINY_METHOD_SETTINGS, image_dataset, text_dataset, tiny_bert, tiny_vit
from huggingface_hub import HfApi, RepoUrl
from huggingface_hub.utils import filter_repo_objects
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTImageProcessor

import hf_lnl
from hf_lnl import CheckpointStateError, NoisyLabelConfig, NoisyLabelTrainer, NonFiniteLossError
from hf_lnl.report import cleanlab_inputs
from hf_lnl.state import STATE_FILE_NAME, load_training_state
from hf_lnl.views import ImageViews

BUILT_IN = ("none", "gce", "sce", "ido", "clid_mu")
COMMON = dict(report_to=[], use_cpu=True, disable_tqdm=True, logging_steps=1, seed=0, save_strategy="no")


def _config(out_dir, method="none", **kwargs):
    settings = dict(
        output_dir=str(out_dir), lnl_method=method, num_train_epochs=3, per_device_train_batch_size=8,
        learning_rate=1e-3, **COMMON, **TINY_METHOD_SETTINGS.get(method, {}),
    )  # fmt: skip
    settings.update(kwargs)
    return NoisyLabelConfig(**settings)


def _trainer(out_dir, method="none", data=None, model=None, **kwargs):
    data = text_dataset(32, seed=1) if data is None else data
    model = tiny_bert(dropout=0.0) if model is None else model
    return NoisyLabelTrainer(model=model, args=_config(out_dir, method, **kwargs), train_dataset=data)


def _losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _with_column(data, name, values):
    return data.remove_columns(name).add_column(name, values) if name in data.column_names else data.add_column(
        name, values
    )


def _noisy(labels, shift=1, every=3):
    labels = np.asarray(labels).copy()
    labels[::every] = (labels[::every] + shift) % 4
    return labels.tolist()


class StopAfter(TrainerCallback):
    def __init__(self, steps):
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.steps:
            control.should_training_stop = True


# ------------------------------------------------------------------------- 1. the configured label column
@pytest.mark.parametrize("method", ["none", "gce"])
def test_1_label_column_is_what_the_loss_counts_and_report_use(tmp_path, method):
    data = text_dataset(32, seed=1)
    noisy = _noisy(data["label"][:])
    both = data.add_column("noisy", noisy)  # `label` keeps the other (clean) labels
    ours = _trainer(tmp_path / "ours", method, both, label_column="noisy", num_train_epochs=1)
    ours.train()
    reference = _trainer(tmp_path / "ref", method, _with_column(data, "label", noisy), num_train_epochs=1)
    reference.train()
    assert _losses(ours) == _losses(reference)
    assert ours.noise_report()["label"][:] == noisy
    assert ours.noise_report()["wrong_events"][:] == reference.noise_report()["wrong_events"][:]


def test_1_label_and_labels_columns_train_and_count_on_label(tmp_path):
    data = text_dataset(32, seed=1)
    both = data.add_column("labels", _noisy(data["label"][:]))
    ours = _trainer(tmp_path / "ours", "none", both, num_train_epochs=1)
    ours.train()
    reference = _trainer(tmp_path / "ref", "none", data, num_train_epochs=1)
    reference.train()
    assert _losses(ours) == _losses(reference)
    assert ours.noise_report()["label"][:] == data["label"][:]


def test_1_a_robust_method_trains_on_a_label_column_of_another_name(tmp_path):
    data = text_dataset(32, seed=1)
    data = data.add_column("noisy", data["label"][:]).remove_columns("label")
    trainer = _trainer(tmp_path, "gce", data, label_column="noisy", num_train_epochs=1)
    trainer.train()
    assert trainer.noise_report()["label"][:] == data["noisy"][:]


# -------------------------------------------------------------- 2 and 10. every setting checked at the config
@pytest.mark.parametrize(
    "method, setting, value",
    [
        ("sce", "sce_alpha", -1.0), ("sce", "sce_beta", -0.5), ("sce", "sce_log_clamp", 4.0),
        ("sce", "sce_alpha", float("nan")), ("clid_mu", "clid_lookahead_lr", -5.0), ("clid_mu", "clid_meta_lr", 0.0),
        ("clid_mu", "clid_meta_weight_decay", -1.0), ("clid_mu", "clid_warmup_epochs", -1.0),
        ("clid_mu", "clid_meta_hidden_size", 0), ("clid_mu", "clid_temperature", 0.0),
        ("none", "clid_temperature", -1.0), ("ido", "ido_min_class_samples", -3), ("ido", "ido_mask_token_id", -1),
        ("ido", "ido_belief_full_at", 0.0), ("ido", "ido_belief_full_at", 1.5),
    ],
)  # fmt: skip
def test_2_10_nonsense_settings_are_refused_by_name(tmp_path, method, setting, value):
    with pytest.raises(ValueError, match=setting):
        _config(tmp_path, method, **{setting: value})


def test_2_sce_without_any_term_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sce_alpha and sce_beta are both 0"):
        _config(tmp_path, "sce", sce_alpha=0.0, sce_beta=0.0)


def test_10_a_mask_token_outside_the_vocabulary_is_refused_before_step_1(tmp_path):
    trainer = _trainer(tmp_path, "ido", ido_mask_token_id=5000)  # tiny BERT: vocab_size=1000
    with pytest.raises(ValueError, match=r"ido_mask_token_id=5000 .*vocab_size=1000"):
        trainer.train()
    assert trainer.state.global_step == 0


# ------------------------------------------------------------------------------ 3. the state file's data
def _tensor_byte(path, tensor_name, element, byte):
    """File offset of byte `byte` of element `element` of a tensor in a safetensors file."""
    with open(path, "rb") as handle:
        header_size = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(header_size))
    entry = header[tensor_name]
    item = torch.empty(0, dtype=getattr(torch, {"I32": "int32", "I16": "int16", "U8": "uint8"}[entry["dtype"]]))
    return 8 + header_size + entry["data_offsets"][0] + element * item.element_size() + byte


def _flip(path, offset, mask):
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def _checkpoint(tmp_path, method="none"):
    _trainer(tmp_path / "a", method, save_strategy="steps", save_steps=4, max_steps=8, num_train_epochs=1).train()
    return tmp_path / "a" / "checkpoint-4"


def test_3_a_bit_flipped_in_the_tensor_data_is_refused(tmp_path):
    checkpoint = _checkpoint(tmp_path)
    path = checkpoint / STATE_FILE_NAME
    _flip(path, _tensor_byte(path, "tracker.wrong_events", element=5, byte=0), 0x04)  # a count + 4: plausible
    with pytest.raises(CheckpointStateError, match="'tracker.wrong_events' fails its SHA-256 checksum"):
        _trainer(tmp_path / "b", save_strategy="steps", save_steps=4).train(resume_from_checkpoint=str(checkpoint))


def test_3_impossible_counts_in_a_file_without_checksums_are_refused(tmp_path):
    checkpoint = _checkpoint(tmp_path)
    path = checkpoint / STATE_FILE_NAME
    tensors = load_file(str(path))
    with open(path, "rb") as handle:
        header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
    metadata = json.loads(header["__metadata__"]["hf_lnl"])
    metadata = {**metadata, "schema_version": 2}
    metadata.pop("tensor_sha256", None)
    tensors["tracker.wrong_events"][:3] = 2**24 + 7  # many flipped bytes: an 11 GiB histogram before
    save_file(tensors, str(path), metadata={"hf_lnl": json.dumps(metadata)})
    with pytest.raises(CheckpointStateError, match="'wrong_events' holds the value 16777223 above"):
        load_training_state(str(checkpoint))


# --------------------------------------------------------------------- 4. a NaN gradient with a finite loss
@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])
def test_4_a_nan_gradient_stops_before_the_step_and_nothing_non_finite_is_saved(tmp_path, max_grad_norm):
    trainer = _trainer(tmp_path / "run", save_strategy="steps", save_steps=4, max_grad_norm=max_grad_norm)
    weight = trainer.model.classifier.weight
    weight.register_hook(lambda g: torch.full_like(g, float("nan")) if trainer.state.global_step == 3 else g)
    with pytest.raises(hf_lnl.NonFiniteGradientError, match=r"Non-finite gradient .*global step 3 ") as error:
        trainer.train()
    if max_grad_norm == 0:  # (clipping spreads the NaN to every gradient)
        assert "classifier.weight" in str(error.value)
    assert not (tmp_path / "run" / "checkpoint-4").exists()  # the save step never came
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_4_non_finite_weights_are_never_saved(tmp_path):
    class Poison(TrainerCallback):
        def on_optimizer_step(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3:  # the step that ends at the save step 4
                with torch.no_grad():
                    trainer.model.classifier.bias[0] = float("inf")

    trainer = _trainer(tmp_path / "run", save_strategy="steps", save_steps=4)
    trainer.add_callback(Poison())
    with pytest.raises(hf_lnl.NonFiniteTrainingError, match="non-finite weights .*classifier.bias"):
        trainer.train()
    assert not (tmp_path / "run" / "checkpoint-4").exists()


def test_4_the_non_finite_loss_error_is_still_raised_for_a_loss(tmp_path):
    trainer = _trainer(tmp_path / "run")
    trainer.model.classifier.register_forward_hook(lambda m, a, out: out * float("nan") if m.training else out)
    with pytest.raises(NonFiniteLossError, match="Non-finite training loss at global step 0"):
        trainer.train()


# -------------------------------------------------------------------- 5. gradient accumulation convention
def _first_step(tmp_path, family, method, batch, accumulation):
    """The first logged loss and gradient norm of a run (image views off: the same pixels reach every run)."""
    if family == "bert":
        model, data, processor = tiny_bert(dropout=0.0), text_dataset(16, seed=1), None
    else:
        model, data = tiny_vit(), image_dataset(16, seed=1)
        processor = ViTImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"height": 32, "width": 32})
    settings = dict(per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, max_grad_norm=0.0)
    out = tmp_path / f"{method}-{batch}"
    if method == "trainer":
        args = TrainingArguments(str(out), num_train_epochs=3, learning_rate=1e-3, **COMMON, **settings)
        trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[StopAfter(1)])
    else:
        extra = {"clid_warmup_epochs": 1.0} if method == "clid_mu" else {}  # unweighted: the loss is a mean CE
        args = _config(out, method, **settings, **extra)
        trainer = NoisyLabelTrainer(
            model=model, args=args, train_dataset=data, processing_class=processor, callbacks=[StopAfter(1)]
        )
    trainer.train()
    (first,) = [entry for entry in trainer.state.log_history if "loss" in entry][:1]
    return first["loss"], first["grad_norm"]


@pytest.mark.parametrize("family, expected", [("bert", 2.0), ("vit", 1.0)])
def test_5_every_method_scales_accumulated_losses_like_trainer(tmp_path, monkeypatch, family, expected):
    """Accumulating 2 micro-batches of 4 against one batch of 8 (same samples, no dropout): transformers' `Trainer`
    sums the micro-batch means of a BERT classifier (its loss ignores `num_items_in_batch`) and averages a ViT's;
    every method does the same, so switching methods never changes the step."""
    monkeypatch.setattr(ImageViews, "weak", lambda self, pixel_values: pixel_values)
    for method in ("trainer", *BUILT_IN):
        loss_8, norm_8 = _first_step(tmp_path / family / "one", family, method, 8, 1)
        loss_4x2, norm_4x2 = _first_step(tmp_path / family / "two", family, method, 4, 2)
        assert loss_4x2 / loss_8 == pytest.approx(expected, rel=1e-4), method
        assert norm_4x2 / norm_8 == pytest.approx(expected, rel=1e-3), method


# ---------------------------------------------------------------------- 6. IDO's restart under fp16 + scaler
def test_6_ido_restart_under_fp16_with_a_grad_scaler_keeps_one_optimizer(tmp_path):
    def run(out, fp16):
        trainer = _trainer(out, "ido", fp16=fp16, data=text_dataset(32, seed=1))
        if fp16:  # accelerate makes no scaler on CPU; CPU autocast and GradScaler("cpu") exist
            trainer.accelerator.native_amp = True
            trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        old = {}
        restart = trainer.restart_optimization

        def remember_and_restart():
            old["optimizer"] = trainer.optimizer.optimizer
            restart()

        trainer.method.context.restart_optimization = remember_and_restart
        trainer.train()
        norms = [e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e and e.get("ido_stage") == 2]
        return trainer, old["optimizer"], norms

    trainer, old, norms = run(tmp_path / "fp16", fp16=True)
    _, _, reference = run(tmp_path / "fp32", fp16=False)
    assert len(trainer.accelerator._optimizers) == 1 and trainer.accelerator._optimizers[0] is trainer.optimizer
    assert len(old.state) == 0  # the stage-1 optimiser's moments were freed
    assert trainer.accelerator.scaler.get_scale() > 1.0
    np.testing.assert_allclose(norms, reference, rtol=0.05)  # unscaled once: 1/1024 of the true norm before


# ------------------------------------------------------------------------------- 7. CLID-MU's look-ahead scope
def test_7_clid_mu_resumed_with_another_scope_is_refused(tmp_path):
    checkpoint = _checkpoint(tmp_path, "clid_mu")
    resumed = _trainer(tmp_path / "b", "clid_mu", clid_scope="last_k", max_steps=8, num_train_epochs=1)
    with pytest.raises(ValueError, match="clid_scope='head'"):
        resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 0


# --------------------------------------------------------------------------- 8. whole-number float labels
@pytest.mark.parametrize("method", BUILT_IN)
def test_8_whole_number_float_labels_are_class_ids(tmp_path, method):
    data = text_dataset(16, seed=1)
    as_floats = _with_column(data, "label", [float(y) for y in data["label"][:]])
    ours = _trainer(tmp_path / "float", method, as_floats)
    ours.train()
    reference = _trainer(tmp_path / "int", method, data)
    reference.train()
    assert _losses(ours) == _losses(reference)
    assert ours.noise_report()["label"][:] == data["label"][:]


# ------------------------------------------------------------------------------------- 9. regression heads
@pytest.mark.parametrize("targets", ["real", "whole"])
def test_9_a_regression_model_trains_like_trainer_with_tracking_off(tmp_path, caplog, targets):
    data = text_dataset(16, seed=1)
    values = np.linspace(0, 5, 16) if targets == "real" else np.arange(16) % 6
    data = _with_column(data, "label", [float(v) for v in values])
    plain_args = TrainingArguments(str(tmp_path / "plain"), num_train_epochs=2, learning_rate=1e-3, **COMMON)
    plain = Trainer(model=tiny_bert(num_labels=1, dropout=0.0), args=plain_args, train_dataset=data)
    plain.train()
    with caplog.at_level("WARNING"):
        ours = _trainer(tmp_path / "ours", data=data, model=tiny_bert(num_labels=1, dropout=0.0), num_train_epochs=2)
    assert "regression model (num_labels=1)" in caplog.text
    ours.train()
    np.testing.assert_allclose(_losses(ours), _losses(plain), rtol=1e-6)
    with pytest.raises(RuntimeError, match="regression"):
        ours.noise_report()


def test_9_a_robust_method_on_a_regression_model_is_refused(tmp_path):
    data = _with_column(text_dataset(16, seed=1), "label", [float(v % 6) for v in range(16)])
    with pytest.raises(ValueError, match="single-label classifier.*num_labels=1"):
        _trainer(tmp_path, "gce", data, model=tiny_bert(num_labels=1))


# ------------------------------------------------------------------------------- 11. empty or too small sets
@pytest.mark.parametrize("method", ["none", "gce"])
def test_11_an_empty_training_set_is_refused(tmp_path, method):
    with pytest.raises(ValueError, match="training set is empty"):
        _trainer(tmp_path, method, text_dataset(8).select([]))


def test_11_drop_last_with_less_than_one_batch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="dataloader_drop_last"):
        _trainer(tmp_path, "none", text_dataset(5), dataloader_drop_last=True)


# ----------------------------------------------------------------------- 12. strong views from the collator
@pytest.mark.parametrize("family", ["bert", "vit"])
def test_12_ido_takes_strong_views_from_the_collator_without_a_processor(tmp_path, family):
    key = "input_ids" if family == "bert" else "pixel_values"
    seen = []

    def collator(features):
        batch = {k: torch.stack([torch.as_tensor(f[k]) for f in features]) for k in features[0] if k != "label"}
        batch["labels"] = torch.tensor([int(f["label"]) for f in features])
        batch[f"{key}_strong"] = batch[key].flip(-1)
        seen.append(True)
        return batch

    data = text_dataset(16, seed=1) if family == "bert" else image_dataset(16, seed=1)
    model = tiny_bert() if family == "bert" else tiny_vit()
    args = _config(tmp_path, "ido", ido_mask_token_id=None, ido_views="augmented")  # no tokenizer/processor/mask id
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data, data_collator=collator)
    trainer.train()
    assert trainer.method.stage == 2 and seen
    assert "stage2_wrong_events" in trainer.noise_report().column_names


# ------------------------------------------------------------------------- 13. a crash while saving a checkpoint
@pytest.mark.parametrize("moment", ["save_model", "_save_optimizer_and_scheduler", "_save_rng_state"])
def test_13_resume_true_skips_a_checkpoint_a_crash_left_incomplete(tmp_path, caplog, moment):
    full = _trainer(tmp_path / "full", "ido", save_strategy="steps", save_steps=4)
    full.train()
    crashed = _trainer(tmp_path / "run", "ido", save_strategy="steps", save_steps=4, save_total_limit=2)
    original = getattr(crashed, moment)

    def killed(*args, **kwargs):
        if crashed.state.global_step == 8:
            raise KeyboardInterrupt(f"killed in {moment}")
        return original(*args, **kwargs)

    setattr(crashed, moment, killed)
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    assert (tmp_path / "run" / "checkpoint-8").is_dir()
    resumed = _trainer(tmp_path / "run", "ido", save_strategy="steps", save_steps=4, save_total_limit=2)
    with caplog.at_level("WARNING"):
        resumed.train(resume_from_checkpoint=True)
    assert "checkpoint-8" in caplog.text and "Skipping incomplete" in caplog.text
    assert resumed.noise_report().to_dict() == full.noise_report().to_dict()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("method, step", [("none", 4), ("ido", 8)])  # epoch 1's end; IDO's stage boundary
def test_13_resuming_from_an_epoch_s_last_step_matches_an_uninterrupted_run(tmp_path, method, step):
    full = _trainer(tmp_path / "full", method, save_strategy="steps", save_steps=4)
    full.train()
    resumed = _trainer(tmp_path / "resumed", method)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / f"checkpoint-{step}"))
    assert resumed.tracker.prediction_changes == full.tracker.prediction_changes
    assert resumed.noise_report().to_dict() == full.noise_report().to_dict()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_13_an_incomplete_checkpoint_passed_by_path_is_named(tmp_path):
    trainer = _trainer(tmp_path / "run", save_strategy="steps", save_steps=4, max_steps=4, num_train_epochs=1)
    trainer.train()
    os.remove(tmp_path / "run" / "checkpoint-4" / "trainer_state.json")
    with pytest.raises(CheckpointStateError, match="checkpoint-4' is incomplete"):
        _trainer(tmp_path / "b").train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-4"))


# ----------------------------------------------------------------------------------------------- 14. cleanlab
def test_14_cleanlab_inputs_leave_out_ignored_samples(tmp_path):
    from cleanlab.filter import find_label_issues

    data = text_dataset(32, seed=1)
    labels = np.asarray(data["label"][:])
    labels[[3, 10]] = -100
    trainer = _trainer(tmp_path, "none", _with_column(data, "label", labels.tolist()), num_train_epochs=1)
    trainer.train()
    given, pred_probs, index = cleanlab_inputs(trainer, return_index=True)
    assert len(given) == len(pred_probs) == len(index) == 30 and (given >= 0).all()
    assert 3 not in index and 10 not in index and np.array_equal(given, labels[index])
    assert find_label_issues(labels=given, pred_probs=pred_probs).shape == (30,)


# ------------------------------------------------------------------------------------------ 15. push_to_hub
def test_15_push_to_hub_after_ido_uploads_no_second_model(tmp_path, monkeypatch):
    uploaded = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: RepoUrl(f"https://huggingface.co/{repo_id}"))

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):
        files = [os.path.relpath(os.path.join(r, n), folder_path) for r, _, ns in os.walk(folder_path) for n in ns]
        uploaded.extend(filter_repo_objects(files, ignore_patterns=ignore_patterns))  # what the Hub client sends
        return "commit"

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    trainer = _trainer(tmp_path / "run", "ido", hub_model_id="me/ido")
    trainer.train()
    trainer.push_to_hub()
    assert "model.safetensors" in uploaded
    assert [name for name in uploaded if name.endswith(".safetensors")] == ["model.safetensors"]
    stage1 = str(tmp_path / "run" / "_ido_stage1")
    reused = _trainer(tmp_path / "again", "ido", num_train_epochs=1, ido_stage1_dir=stage1)
    reused.train()  # the renamed stage-1 export is still reusable
    assert reused.method.stage == 2


# ---------------------------------------------------------------------------------------- 16. FSDP, DeepSpeed
@pytest.mark.parametrize("method", BUILT_IN)
@pytest.mark.parametrize(
    "setting", [{"fsdp": "full_shard"}, {"deepspeed": {"zero_optimization": {"stage": 2}}}, "ACCELERATE_USE_FSDP"]
)
def test_16_fsdp_and_deepspeed_are_refused_at_construction(tmp_path, monkeypatch, method, setting):
    if isinstance(setting, str):
        monkeypatch.setenv(setting, "true")
        setting = {}
    what = "DeepSpeed" if "deepspeed" in setting else "FSDP"
    with pytest.raises(ValueError, match=f"lnl_method='{method}' has not been tested under {what}"):
        _config(tmp_path, method, **setting)


# ------------------------------------------------------------------------------------------ mixed precision
@pytest.mark.parametrize("method", BUILT_IN)
def test_every_method_trains_in_bf16_on_cpu(tmp_path, method):
    trainer = _trainer(tmp_path, method, bf16=True)
    trainer.train()
    losses = _losses(trainer)
    assert len(losses) == 12 and np.isfinite(losses).all()
    scores = np.asarray(trainer.noise_report()["noise_score"][:])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert max(trainer.noise_report()["wrong_events"][:]) > 0


def test_an_inf_gradient_under_a_grad_scaler_is_a_skipped_step_not_an_error(tmp_path):
    trainer = _trainer(tmp_path, "gce", fp16=True, num_train_epochs=1)
    trainer.accelerator.native_amp = True
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    trainer.model.classifier.weight.register_hook(
        lambda g: torch.full_like(g, float("inf")) if trainer.state.global_step == 0 else g
    )
    trainer.train()
    assert trainer.state.global_step == 4 and trainer.accelerator.scaler.get_scale() < 2.0**16
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
