"""Checkpoints count only once complete: `NoisyLabelTrainer` writes a marker file into a checkpoint folder after every
other file of it (on every process), and `resume_from_checkpoint=True` takes the newest folder with the marker,
skipping (with a warning naming them) folders that a crash left half-written.

The Trainer's rotation (`save_total_limit`) runs only after the marker is written, so it never deletes the last
complete checkpoint in favour of one that is not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from .state import CheckpointStateError

if TYPE_CHECKING:
    from transformers import Trainer

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "hf_lnl_checkpoint_complete.json"
TRAINER_STATE_FILE = "trainer_state.json"  # the Trainer's own file, needed to resume
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def is_complete(folder: str) -> bool:
    """Whether `folder` holds a completion marker and every file the marker lists.

    Example:
        >>> is_complete("out/checkpoint-40")  # doctest: +SKIP
        True
    """
    try:
        with open(os.path.join(folder, COMPLETE_MARKER), encoding="utf-8") as handle:
            files = json.load(handle)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(os.path.exists(os.path.join(folder, name)) for name in files)


@contextlib.contextmanager
def complete_when_done(trainer: Trainer, folder: str) -> Iterator[None]:
    """Around the writing of checkpoint `folder`: drop a stale marker first, hold back the Trainer's rotation, and once
    every process has written its files, write the marker, then rotate."""
    args = trainer.args
    if args.should_save:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, COMPLETE_MARKER))  # a folder being rewritten is incomplete until done
    limit, args.save_total_limit = args.save_total_limit, None
    try:
        yield
    finally:
        args.save_total_limit = limit
    trainer.accelerator.wait_for_everyone()
    if args.should_save:
        _write_marker(folder, trainer.state.global_step)
        rotate_checkpoints(
            output_dir=os.path.dirname(folder),
            save_total_limit=limit,
            best_model_checkpoint=trainer.state.best_model_checkpoint,
            use_mtime=True,
        )


def resolve_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from: for `True`, the newest complete one in `output_dir` (incomplete newer
    ones are skipped with a warning naming them); a path is checked for the Trainer's state file.

    Raises:
        ValueError: `True` and no complete checkpoint in `output_dir`.
        CheckpointStateError: a path to a checkpoint that a crash left without the Trainer's state.
    """
    if isinstance(resume_from_checkpoint, bool):
        return _last_complete_checkpoint(output_dir) if resume_from_checkpoint else None
    if resume_from_checkpoint and not is_complete(resume_from_checkpoint):
        if os.path.isdir(resume_from_checkpoint) and not os.path.isfile(
            os.path.join(resume_from_checkpoint, TRAINER_STATE_FILE)
        ):
            raise CheckpointStateError(
                f"The checkpoint {resume_from_checkpoint!r} is incomplete (no {TRAINER_STATE_FILE}): training stopped "
                "while it was being written. Resume from an earlier checkpoint, or pass resume_from_checkpoint=True "
                "to take the newest complete one."
            )
    return resume_from_checkpoint


def _last_complete_checkpoint(output_dir: str) -> str:
    found = sorted(
        (int(match.group(1)), name)
        for name in (os.listdir(output_dir) if os.path.isdir(output_dir) else [])
        if (match := _CHECKPOINT_NAME.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    skipped = []
    for _, name in reversed(found):
        folder = os.path.join(output_dir, name)
        if is_complete(folder):
            if skipped:
                logger.warning(
                    f"Skipping incomplete checkpoint(s) {skipped} (no {COMPLETE_MARKER}: training stopped while they "
                    f"were being written); resuming from {folder}."
                )
            return folder
        skipped.append(folder)
    if skipped:
        raise ValueError(
            f"No complete checkpoint in {output_dir}: {skipped} lack {COMPLETE_MARKER} (an interrupted save, or "
            "written by hf_lnl 0.2.0 or earlier). Pass a checkpoint's path as resume_from_checkpoint to use it."
        )
    raise ValueError(f"No valid checkpoint found in output directory ({output_dir}).")


def _write_marker(folder: str, global_step: int) -> None:
    files = sorted(name for name in os.listdir(folder) if name != COMPLETE_MARKER)
    path = os.path.join(folder, COMPLETE_MARKER)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump({"global_step": global_step, "files": files}, handle)
    os.replace(path + ".tmp", path)
