"""The state file's one schema: what the trainer, IDO's stage-1 export and the callback write; 0.1's and 0.2.0's
files; the per-tensor checksums."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_METHOD_SETTINGS, text_dataset, tiny_bert
from safetensors.torch import load_file, save_file

from hf_lnl import CheckpointStateError, NoisyLabelConfig, NoisyLabelTrainer
from hf_lnl.methods.ido import STAGE1_FOLDER
from hf_lnl.state import (
    SCHEMA_VERSION,
    STATE_FILE_NAME,
    TrainingState,
    labels_checksum,
    load_training_state,
    save_training_state,
    tensor_checksum,
)


def _trainer(out_dir, method="none", **kwargs):
    settings = dict(
        output_dir=str(out_dir), lnl_method=method, num_train_epochs=3, per_device_train_batch_size=8,
        learning_rate=1e-3, save_strategy="steps", save_steps=4, report_to=[], use_cpu=True, disable_tqdm=True,
        seed=0, **TINY_METHOD_SETTINGS.get(method, {}),
    )  # fmt: skip
    settings.update(kwargs)
    return NoisyLabelTrainer(model=tiny_bert(), args=NoisyLabelConfig(**settings), train_dataset=text_dataset(45))


def _rewrite_as_schema_1(folder, drop=()):
    """Rewrite a state file the way hf_lnl 0.1 wrote it: `version` 1 and each writer's own metadata layout."""
    path = folder / STATE_FILE_NAME
    tensors = load_file(str(path))
    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    metadata = json.loads(header["__metadata__"]["hf_lnl"])
    kind = metadata.pop("kind")
    metadata = {"version": 1, **{k: v for k, v in metadata.items() if k != "schema_version"}}
    if kind == "ido_stage1":  # 0.1's stage-1 export kept the method's facts at the top level
        metadata.update(metadata.pop("method"))
        metadata.pop("noise_rate_history")
    if kind == "callback":
        metadata = {"version": 1, "lnl_method": "callback", "tracker": metadata["tracker"]}
    for key in drop:
        metadata.pop(key)
    save_file(tensors, str(path), metadata={"hf_lnl": json.dumps(metadata)})


def _rewrite_as_schema_2(folder, **changes):
    """Rewrite a state file the way hf_lnl 0.2.0 wrote it: schema 2, no tensor checksums."""
    path = folder / STATE_FILE_NAME
    tensors = load_file(str(path))
    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    metadata = json.loads(header["__metadata__"]["hf_lnl"])
    metadata = {**metadata, "schema_version": 2, **changes}
    metadata.pop("tensor_sha256")
    save_file(tensors, str(path), metadata={"hf_lnl": json.dumps(metadata)})


def test_save_and_load_round_trip(tmp_path):
    state = TrainingState(
        kind="checkpoint", lnl_method="gce", num_samples=3, labels_sha256=labels_checksum(np.array([0, 1, 1])),
        tracker_tensors={"wrong_events": torch.tensor([0, 2, 1], dtype=torch.int32)}, tracker_metadata={"a": 1},
        method_tensors={"x": torch.ones(3)}, method_metadata={"stage": 2}, noise_rate_history=[0.5, 0.25],
    )  # fmt: skip
    save_training_state(str(tmp_path), state)
    loaded = load_training_state(str(tmp_path))
    assert loaded.schema_version == SCHEMA_VERSION == 3
    assert (loaded.kind, loaded.lnl_method, loaded.num_samples) == ("checkpoint", "gce", 3)
    assert loaded.labels_sha256 == state.labels_sha256 and loaded.noise_rate_history == [0.5, 0.25]
    assert torch.equal(loaded.tracker_tensors["wrong_events"], state.tracker_tensors["wrong_events"])
    assert torch.equal(loaded.method_tensors["x"], state.method_tensors["x"])
    assert (loaded.tracker_metadata, loaded.method_metadata) == ({"a": 1}, {"stage": 2})


@pytest.mark.parametrize("schema, method", [(1, "none"), (1, "ido"), (2, "none"), (2, "clid_mu")])
def test_a_checkpoint_written_by_an_older_hf_lnl_resumes_exactly(tmp_path, schema, method):
    """Schema 1 is hf_lnl 0.1's, schema 2 hf_lnl 0.2.0's."""
    full = _trainer(tmp_path / "full", method)
    full.train()
    middle = tmp_path / "full" / "checkpoint-8"
    {1: _rewrite_as_schema_1, 2: _rewrite_as_schema_2}[schema](middle)
    assert load_training_state(str(middle)).schema_version == schema
    resumed = _trainer(tmp_path / "resumed", method)
    resumed.train(resume_from_checkpoint=str(middle))
    assert resumed.noise_report().to_dict() == full.noise_report().to_dict()


def test_every_tensor_is_checksummed_and_a_changed_one_is_refused(tmp_path):
    tensors = {"wrong_events": torch.tensor([0, 2, 1], dtype=torch.int32), "labels": torch.tensor([0, 1, 1])}
    state = TrainingState("checkpoint", "gce", 3, tracker_tensors=tensors, method_tensors={"x": torch.ones(2)})
    save_training_state(str(tmp_path), state)
    path = tmp_path / STATE_FILE_NAME
    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    checksums = json.loads(header["__metadata__"]["hf_lnl"])["tensor_sha256"]
    assert sorted(checksums) == ["method.x", "tracker.labels", "tracker.wrong_events"]
    assert checksums["method.x"] == tensor_checksum(torch.ones(2))
    changed = load_file(str(path))
    changed["method.x"][1] = 2.0  # a consistent file around different data: the header alone cannot tell
    save_file(changed, str(path), metadata=header["__metadata__"])
    with pytest.raises(CheckpointStateError, match="'method.x' fails its SHA-256 checksum"):
        load_training_state(str(tmp_path))


def test_an_ido_stage_1_written_by_hf_lnl_0_1_is_reused(tmp_path):
    first = _trainer(tmp_path / "first", "ido", save_strategy="no")
    first.train()
    stage1 = tmp_path / "first" / STAGE1_FOLDER
    _rewrite_as_schema_1(stage1)
    reused = _trainer(tmp_path / "second", "ido", save_strategy="no", num_train_epochs=1, ido_stage1_dir=str(stage1))
    reused.train()
    counts = np.asarray(reused.noise_report()["stage1_wrong_events"][:])
    assert np.array_equal(counts, np.asarray(first.noise_report()["stage1_wrong_events"][:]))


def test_a_callback_state_written_by_hf_lnl_0_1_loads(tmp_path):
    tracker_tensors = {"wrong_events": torch.tensor([1, 0, 2, 0], dtype=torch.int32)}
    save_training_state(str(tmp_path), TrainingState("callback", "callback", 4, tracker_tensors=tracker_tensors))
    _rewrite_as_schema_1(tmp_path)
    loaded = load_training_state(str(tmp_path))
    assert (loaded.kind, loaded.num_samples, loaded.schema_version) == ("callback", 4, 1)


def test_an_unknown_schema_version_is_refused_by_name(tmp_path):
    save_training_state(str(tmp_path), TrainingState("checkpoint", "none", 2))
    path = tmp_path / STATE_FILE_NAME
    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={"hf_lnl": json.dumps({"schema_version": 7, "kind": "checkpoint"})})
    with pytest.raises(CheckpointStateError, match="schema version 7; this hf_lnl reads schema versions 1, 2, 3\\."):
        load_training_state(str(tmp_path))


def test_a_state_of_another_kind_or_method_is_refused(tmp_path):
    state = TrainingState("ido_stage1", "ido", 2, labels_sha256="x")
    with pytest.raises(CheckpointStateError, match="'ido_stage1' state, not a 'checkpoint' one"):
        state.check_matches("here", kind="checkpoint", lnl_method="ido", num_samples=2, labels_sha256="x")
    with pytest.raises(CheckpointStateError, match="lnl_method='ido', this run uses 'gce'"):
        state.check_matches("here", kind="ido_stage1", lnl_method="gce", num_samples=2, labels_sha256="x")
    with pytest.raises(CheckpointStateError, match="different training set"):
        state.check_matches("here", kind="ido_stage1", lnl_method="ido", num_samples=3, labels_sha256="x")


def test_a_schema_1_file_missing_its_facts_is_refused(tmp_path):
    _trainer(tmp_path / "a", max_steps=4, num_train_epochs=1).train()
    checkpoint = tmp_path / "a" / "checkpoint-4"
    _rewrite_as_schema_1(checkpoint, drop=("tracker",))
    with pytest.raises(CheckpointStateError, match="lacks 'tracker'"):
        load_training_state(str(checkpoint))
