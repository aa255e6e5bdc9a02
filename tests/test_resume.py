"""Checkpoint faults and the non-finite-loss stop (exact resume of every method: test_method_contract.py)."""

import os

import pytest
from conftest import TINY_METHOD_SETTINGS, text_dataset, tiny_bert

from hf_lnl import CheckpointStateError, NoisyLabelConfig, NoisyLabelTrainer, NonFiniteLossError
from hf_lnl.state import STATE_FILE_NAME


def _trainer(out_dir, method="none", data=None, **kwargs):
    data = data if data is not None else text_dataset(45, seed=3)
    settings = dict(
        output_dir=str(out_dir), lnl_method=method, num_train_epochs=3, per_device_train_batch_size=8,
        learning_rate=1e-3, save_strategy="steps", save_steps=4, report_to=[], use_cpu=True, disable_tqdm=True,
        logging_steps=1, seed=0, **TINY_METHOD_SETTINGS.get(method, {}),
    )
    settings.update(kwargs)
    return NoisyLabelTrainer(model=tiny_bert(), args=NoisyLabelConfig(**settings), train_dataset=data)


def test_missing_state_file_is_named(tmp_path):
    _trainer(tmp_path / "a", max_steps=4, num_train_epochs=1).train()
    checkpoint = tmp_path / "a" / "checkpoint-4"
    os.remove(checkpoint / STATE_FILE_NAME)
    with pytest.raises(CheckpointStateError, match=STATE_FILE_NAME):
        _trainer(tmp_path / "b").train(resume_from_checkpoint=str(checkpoint))


def test_corrupt_state_file_is_named(tmp_path):
    _trainer(tmp_path / "a", max_steps=4, num_train_epochs=1).train()
    checkpoint = tmp_path / "a" / "checkpoint-4"
    (checkpoint / STATE_FILE_NAME).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a safetensors header")
    with pytest.raises(CheckpointStateError, match="corrupt"):
        _trainer(tmp_path / "b").train(resume_from_checkpoint=str(checkpoint))


def test_state_from_another_training_set_is_refused(tmp_path):
    _trainer(tmp_path / "a", max_steps=4, num_train_epochs=1).train()
    other = text_dataset(45, seed=4)
    with pytest.raises(CheckpointStateError, match="different training set"):
        _trainer(tmp_path / "b", data=other).train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-4"))


def test_non_finite_loss_stops_before_the_step_and_keeps_the_last_checkpoint(tmp_path):
    trainer = _trainer(tmp_path / "run", num_train_epochs=2)
    poisoned_step = 6

    def poison(module, args, output):
        if module.training and trainer.state.global_step >= poisoned_step:
            output = output.clone()
            output[1] = float("nan")
        return output

    trainer.model.classifier.register_forward_hook(poison)
    with pytest.raises(NonFiniteLossError, match=r"global step 6 .*sample_index \[\d+\]"):
        trainer.train()
    checkpoint = tmp_path / "run" / "checkpoint-4"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint-4"]
    weights_before = (checkpoint / "model.safetensors").read_bytes()
    resumed = _trainer(tmp_path / "resumed", num_train_epochs=2)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 12
    assert (checkpoint / "model.safetensors").read_bytes() == weights_before
