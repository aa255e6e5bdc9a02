"""The per-sample state file: one schema for NoisyLabelTrainer's checkpoints, IDO's stage-1 export and
`WrongEventCallback`.

A state file (`hf_lnl_state.safetensors`) holds the wrong-event tracker's tensors (`tracker.*`), the method's tensors
(`method.*`) and, as JSON in the safetensors metadata, everything small: what wrote it (`kind`), the method, the
training set it belongs to (size and a checksum of the labels), the tracker's and the method's metadata and the
per-epoch noise-rate estimates. safetensors cannot execute code on load, unlike pickle. Files are written under a
temporary name and renamed, so a crash never leaves a half-written state file.

The metadata also holds a SHA-256 checksum of each tensor (dtype, shape and bytes), checked on load, so a flipped bit
in the tensor data is refused like a corrupt header; the tracker's counters are also checked for their ranges (which
is all files without checksums get).

Schema versions: 1 (hf_lnl 0.1, one metadata layout per writer) is read and converted; 2 (hf_lnl 0.2.0, no tensor
checksums) is read; 3 is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

STATE_FILE_NAME = "hf_lnl_state.safetensors"
SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
STATE_KINDS = ("checkpoint", "ido_stage1", "callback")
_METADATA_KEY = "hf_lnl"
_TRACKER_PREFIX, _METHOD_PREFIX = "tracker.", "method."
MAX_VIEWS = 8  # the tracker's `seen` is a uint8 bit set: at most 8 views, so 8 wrong events per sample and epoch
UNSEEN_PREDICTION = -1
IGNORED_LABEL = -100


class CheckpointStateError(ValueError):
    """The hf_lnl state file of a checkpoint is missing, corrupt, of an unknown schema or does not match this run."""


@dataclass
class TrainingState:
    """Everything a state file holds.

    Attributes:
        kind: What wrote it: `"checkpoint"` (NoisyLabelTrainer), `"ido_stage1"` (IDO's finished stage 1) or
            `"callback"` (`WrongEventCallback`).
        lnl_method: The method of the run (`"callback"` for the callback).
        num_samples: Training-set size.
        labels_sha256: Checksum of the given labels in `sample_index` order (`labels_checksum`); None if unknown.
        tracker_tensors / tracker_metadata: `WrongEventTracker.state_dict()` and `.metadata()`.
        method_tensors / method_metadata: The method's `state_dict()` and `metadata()`.
        noise_rate_history: The estimated noise rate after each epoch.
        schema_version: The schema the file was written with (read-only; files are always written with the newest).
    """

    kind: str
    lnl_method: str
    num_samples: int
    labels_sha256: str | None = None
    tracker_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    tracker_metadata: dict[str, Any] = field(default_factory=dict)
    method_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    method_metadata: dict[str, Any] = field(default_factory=dict)
    noise_rate_history: list[float] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def check_matches(self, folder: str, *, kind: str, lnl_method: str, num_samples: int, labels_sha256: str) -> None:
        """Raise `CheckpointStateError` unless this state was written by `kind` for this method and training set."""
        if self.kind != kind:
            raise CheckpointStateError(
                f"The hf_lnl state in {folder!r} is a {self.kind!r} state, not a {kind!r} one. Pass the folder that "
                f"holds a {kind!r} state."
            )
        if self.lnl_method != lnl_method:
            raise CheckpointStateError(
                f"The hf_lnl state in {folder!r} was written by lnl_method={self.lnl_method!r}, this run uses "
                f"{lnl_method!r}. Resume with the same lnl_method."
            )
        if self.num_samples != num_samples or self.labels_sha256 != labels_sha256:
            raise CheckpointStateError(
                f"The hf_lnl state in {folder!r} was made with a different training set ({self.num_samples} samples; "
                f"this one has {num_samples}, or the labels differ). Use the training set, in the same order, that "
                "the checkpoint was made with."
            )


def labels_checksum(labels: np.ndarray) -> str:
    """SHA-256 of the given labels (as int64, in `sample_index` order): ties a state file to its training set.

    Example:
        >>> labels_checksum(np.array([0, 1, 1]))[:12]
        'ccb1ac866b7d'
    """
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


def save_training_state(folder: str, state: TrainingState) -> str:
    """Atomically write `state` to `folder/hf_lnl_state.safetensors`; returns the path.

    Example:
        >>> save_training_state("out/checkpoint-10", TrainingState("checkpoint", "none", num_samples=4))
        'out/checkpoint-10/hf_lnl_state.safetensors'
    """
    if state.kind not in STATE_KINDS:
        raise ValueError(f"Unknown state kind {state.kind!r}; one of {STATE_KINDS}.")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, STATE_FILE_NAME)
    tmp_path = path + ".tmp"
    tensors = {f"{_TRACKER_PREFIX}{k}": v for k, v in state.tracker_tensors.items()}
    tensors.update({f"{_METHOD_PREFIX}{k}": v for k, v in state.method_tensors.items()})
    metadata = {
        "schema_version": SCHEMA_VERSION,
        "kind": state.kind,
        "lnl_method": state.lnl_method,
        "num_samples": state.num_samples,
        "labels_sha256": state.labels_sha256,
        "tracker": state.tracker_metadata,
        "method": state.method_metadata,
        "noise_rate_history": list(state.noise_rate_history),
    }
    cpu_tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    metadata["tensor_sha256"] = {name: tensor_checksum(t) for name, t in cpu_tensors.items()}
    save_file(cpu_tensors, tmp_path, metadata={_METADATA_KEY: json.dumps(metadata)})
    os.replace(tmp_path, path)
    return path


def tensor_checksum(tensor: torch.Tensor) -> str:
    """SHA-256 of a CPU tensor's dtype, shape and bytes.

    Example:
        >>> tensor_checksum(torch.zeros(3, dtype=torch.int32))[:12]
        '615015d4450d'
    """
    digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_training_state(folder: str) -> TrainingState:
    """Read the state file in `folder` (schema 1, 2 or 3), checking each tensor's checksum (schema 3) and the ranges of
    the tracker's counters.

    Raises:
        CheckpointStateError: the file is missing, corrupt (a tensor that fails its checksum or holds impossible
            counts included) or of a schema this hf_lnl does not read; the message names the file and what to do.
    """
    path = os.path.join(folder, STATE_FILE_NAME)
    if not os.path.isfile(path):
        raise CheckpointStateError(
            f"The checkpoint {folder!r} has no hf_lnl state file ({STATE_FILE_NAME}); it was not written by "
            "NoisyLabelTrainer or was copied incompletely. Resume from a complete checkpoint folder, or start anew."
        )
    try:
        tensors = load_file(path)
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_size))
        metadata = json.loads(header["__metadata__"][_METADATA_KEY])
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        raise CheckpointStateError(
            f"The hf_lnl state file {path!r} is corrupt ({error}). Resume from an earlier checkpoint folder."
        ) from error
    version = metadata.get("schema_version", metadata.get("version"))
    if version not in READABLE_SCHEMA_VERSIONS:
        raise CheckpointStateError(
            f"The hf_lnl state file {path!r} has schema version {version!r}; this hf_lnl reads schema versions "
            f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}. Resume with the hf_lnl version that wrote it."
        )
    if version >= 3:
        _check_checksums(path, tensors, metadata.get("tensor_sha256"))
    try:
        if version == 1:
            metadata = _from_schema_1(metadata, tensors)
        state = TrainingState(
            kind=metadata["kind"],
            lnl_method=metadata["lnl_method"],
            num_samples=int(metadata["num_samples"]),
            labels_sha256=metadata.get("labels_sha256"),
            tracker_tensors=_with_prefix(tensors, _TRACKER_PREFIX),
            tracker_metadata=metadata["tracker"],
            method_tensors=_with_prefix(tensors, _METHOD_PREFIX),
            method_metadata=metadata.get("method") or {},
            noise_rate_history=[float(r) for r in metadata.get("noise_rate_history", [])],
            schema_version=int(version),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointStateError(
            f"The hf_lnl state file {path!r} lacks {error} in its metadata. Resume from an earlier checkpoint folder."
        ) from error
    _check_tracker_ranges(path, state)
    return state


def _check_checksums(path: str, tensors: dict[str, torch.Tensor], checksums: Any) -> None:
    if not isinstance(checksums, dict) or set(checksums) != set(tensors):
        raise CheckpointStateError(
            f"The hf_lnl state file {path!r} is corrupt (its tensor checksums do not list its tensors). Resume from "
            "an earlier checkpoint folder."
        )
    for name, tensor in tensors.items():
        if tensor_checksum(tensor) != checksums[name]:
            raise CheckpointStateError(
                f"The hf_lnl state file {path!r} is corrupt: the data of tensor {name!r} fails its SHA-256 checksum. "
                "Resume from an earlier checkpoint folder."
            )


def _check_tracker_ranges(path: str, state: TrainingState) -> None:
    """Counts within what the epochs allow, predictions and labels within their codes (files without checksums)."""
    tensors, meta = state.tracker_tensors, state.tracker_metadata
    epochs = int(meta["epochs_completed"]) + int(bool(meta.get("epoch_open"))) if "epochs_completed" in meta else None
    limits = {
        "wrong_events": (0, None if epochs is None else MAX_VIEWS * epochs),
        "predictions": (UNSEEN_PREDICTION, None),
        "previous_predictions": (UNSEEN_PREDICTION, None),
        "labels": (IGNORED_LABEL, None),
    }
    for name, tensor in tensors.items():
        low, high = limits.get(name, (None, None))
        problem = None
        if tensor.dim() != 1 or tensor.numel() != state.num_samples:
            problem = f"shape {tuple(tensor.shape)} for {state.num_samples} samples"
        elif tensor.numel() and low is not None and int(tensor.min()) < low:
            problem = f"the value {int(tensor.min())} below {low}"
        elif tensor.numel() and high is not None and int(tensor.max()) > high:
            problem = f"the value {int(tensor.max())} above {high} ({epochs} epochs counted)"
        elif name == "labels" and bool(((tensor < 0) & (tensor != IGNORED_LABEL)).any()):
            problem = "a negative label other than -100"
        if problem is not None:
            raise CheckpointStateError(
                f"The hf_lnl state file {path!r} is corrupt: tracker tensor {name!r} holds {problem}. Resume from an "
                "earlier checkpoint folder."
            )


def _from_schema_1(metadata: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """hf_lnl 0.1 wrote one layout per writer: the trainer's, IDO's stage-1 export's and the callback's."""
    if metadata.get("lnl_method") == "callback":  # it did not record the training-set size
        size = tensors[f"{_TRACKER_PREFIX}wrong_events"].numel()
        return {**metadata, "kind": "callback", "num_samples": size}
    if "stage1_epochs" in metadata:
        method = {"base_epoch": metadata["base_epoch"], "stage1_epochs": metadata["stage1_epochs"]}
        return {**metadata, "kind": "ido_stage1", "method": method}
    return {**metadata, "kind": "checkpoint"}


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
