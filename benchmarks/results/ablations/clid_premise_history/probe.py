"""Per-sample history of CLID-MU's first epochs, to look for a premise signal that separates a ViT from scratch
(Task B) from a pretrained model at high noise (Task A sym60): the harness's `clid_mu_head` run at its defaults
(no evaluation) until the end of epoch `--until`, saving at each epoch end every sample's prediction at its last
visit, its wrong events so far and (once recorded) the probability its label got at that visit.

    python benchmarks/results/ablations/clid_premise_history/probe.py --task B --cell sym40 --seed 0 --until 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
from stage1_belief import _train_until, _training_set  # noqa: E402


class History(TrainerCallback):
    def __init__(self, until: int) -> None:
        self.until, self.trainer, self.epochs = until, None, []

    def on_epoch_end(self, args, state, control, **kwargs):
        method, tracker = self.trainer.method, self.trainer.tracker
        belief = method.label_belief
        self.epochs.append({
            "predictions": tracker.last_predictions().copy(), "counts": tracker.counts().copy(),
            "belief": None if belief is None else belief.cpu().numpy().copy(),
        })
        if round(state.epoch) >= self.until:
            control.should_training_stop = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", required=True)
    parser.add_argument("--cell", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--until", type=int, default=3)
    options = parser.parse_args()
    torch.set_num_threads(1)
    task, data, train, _ = _training_set(options.task, options.cell, options.seed)
    history = History(options.until)
    settings = {**task.method_settings("clid_mu"), "clid_scope": "head"}
    _train_until(history, task, data, train, options.seed, lnl_method="clid_mu", **settings)
    out = Path(__file__).parent / f"{options.task}_{options.cell}_seed{options.seed}.npz"
    arrays = {"labels": np.asarray(train["label"][:])}
    if "clean_label" in train.column_names:
        arrays["clean_labels"] = np.asarray(train["clean_label"][:])
    for e, entry in enumerate(history.epochs, start=1):
        for key, value in entry.items():
            if value is not None:
                arrays[f"{key}_{e}"] = value
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({len(history.epochs)} epochs)")


if __name__ == "__main__":
    main()
