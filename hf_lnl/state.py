"""Saving and restoring hf_lnl's per-sample state in a checkpoint folder.

The state goes into its own safetensors file (it cannot execute code on load, unlike pickle), never into
`trainer_state.json`. Small facts (stage, prediction changes, mixture parameters) travel as JSON in the file's
metadata. Files are written to a temporary name and renamed, so a crash never leaves a half-written state file.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

STATE_FILE_NAME = "hf_lnl_state.safetensors"
_METADATA_KEY = "hf_lnl"
FORMAT_VERSION = 1


class CheckpointStateError(ValueError):
    """The hf_lnl state file of a checkpoint is missing, corrupt or does not match this run."""


def save_state(folder: str, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> str:
    """Atomically write `tensors` and JSON `metadata` to `folder/hf_lnl_state.safetensors`.

    Example:
        >>> save_state("out/checkpoint-10", {"wrong_events": torch.zeros(4, dtype=torch.int32)}, {"stage": 1})
        'out/checkpoint-10/hf_lnl_state.safetensors'
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, STATE_FILE_NAME)
    tmp_path = path + ".tmp"
    payload = {"version": FORMAT_VERSION, **metadata}
    cpu_tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    save_file(cpu_tensors, tmp_path, metadata={_METADATA_KEY: json.dumps(payload)})
    os.replace(tmp_path, path)
    return path


def load_state(folder: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read the state written by `save_state`; raises `CheckpointStateError` naming the file on any problem."""
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
    if metadata.get("version") != FORMAT_VERSION:
        raise CheckpointStateError(
            f"The hf_lnl state file {path!r} has format version {metadata.get('version')!r}; this hf_lnl reads "
            f"version {FORMAT_VERSION}. Resume with the hf_lnl version that wrote it."
        )
    return tensors, metadata
