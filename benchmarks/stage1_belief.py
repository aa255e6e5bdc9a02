"""What IDO's base model believes about the labels its mixture flags: the measurement behind ido_correction="auto".

Runs IDO's stage 1 on a harness task and cell (the harness's data, model, schedule and seed; stage 1 trains the same
with any `ido_correction`), stops at stage 2's first step and prints, for the labels the stage-1 mixture flags
(`p_noisy` > 1/2): their share, the base model's mean probability of the given label (`q_y`) on them and on the
trusted ones, and `believed_share` (flagged labels with `q_y` >= 1/2), the statistic `"auto"` compares with
`MIN_BELIEVED_SHARE`. With clean labels it splits the flagged by truly flipped or not; on Task R by disputed or not.

With `--method clid_mu` it measures CLID-MU's safeguards instead: it trains CLID-MU (the harness's `clid_mu_head`)
until its premise safeguard has decided (from epoch 3 on) and either fired or left the disputed-label safeguard to
decide (at the first epoch end after the warm-up whose wrong-event mixture flags enough samples), and prints the
premise safeguard's statistic (the wrong-event rate of the samples that mixture would trust,
`clean_component_error_rate`) and whether it fires, the share of the flagged labels (`flagged_share`) and of those
the model then gave even odds (`clid_believed_share`), whether the disputed-label safeguard would fire, and the
training signals at the disputed check's epoch end (the share of samples the weighting trusts, their wrong events
per epoch, the training error, the prediction change per epoch): what a safeguard deciding at the end of a
cross-entropy warm-up could read. Until then the run is the harness's run with both safeguards on.

Usage:
    python benchmarks/stage1_belief.py --task R --cell real --seed 0
    python benchmarks/stage1_belief.py --task A --cell asym40 --seed 0 --output /tmp/belief_A_asym40.json
    python benchmarks/stage1_belief.py --task B2 --cell asym40 --method clid_mu
    python benchmarks/stage1_belief.py --task R --cell real --method clid_mu --set clid_warmup_epochs=2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from typing import Any

import numpy as np
import torch
from methods import DETECTION_THRESHOLD, training_kwargs
from run import parse_setting
from tasks import AGREEMENT_COLUMN, REPO, TASKS, load_task
from transformers import TrainerCallback

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer
from hf_lnl.correction import MIN_BELIEVED_SHARE, believed_share
from hf_lnl.methods import clid_mu


class StopAtStage2(TrainerCallback):
    """Keeps the method's per-sample state at stage 2's first step and stops training there."""

    def __init__(self) -> None:
        self.trainer: NoisyLabelTrainer | None = None
        self.state: dict[str, Any] | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        method = self.trainer.method
        if method.stage == 2 and self.state is None:
            self.state = {"fallback": method.fallback}  # the premise safeguard fired: no mixture weighting to study
            if not method.fallback:
                self.state.update(p_noisy=method.noise_scores(), belief=method.base_label_belief.cpu().numpy())
            control.should_training_stop = True


class StopAtCLIDDecision(TrainerCallback):
    """Stops CLID-MU at the first step after its premise safeguard decided and either fired or left its disputed-label
    safeguard to measure `believed_share`. At the epoch end where the disputed-label safeguard may first decide (the
    end of the warm-up, when there is one) it also keeps what the training signals said then: the share of the
    samples the weighting would trust (noise score <= 1/2), how often those were predicted wrongly per epoch so far,
    and the training error on the given labels at each sample's last visit."""

    def __init__(self) -> None:
        self.trainer: NoisyLabelTrainer | None = None
        self.epoch: float | None = None
        self.signals: dict[str, float] | None = None

    def on_epoch_end(self, args, state, control, **kwargs):
        method, tracker = self.trainer.method, self.trainer.tracker
        if self.signals is not None or round(state.epoch) < method.decision_epoch:
            return
        trusted = method.noise_scores() <= DETECTION_THRESHOLD
        labels = np.asarray(self.trainer.label_info.labels)
        self.signals = {
            "trusted_share": float(trusted.mean()),
            "trusted_wrong_event_rate": float(tracker.counts()[trusted].mean() / max(tracker.epochs_counted, 1)),
            "training_error": float((tracker.last_predictions() != labels).mean()),
        }

    def on_step_begin(self, args, state, control, **kwargs):
        method = self.trainer.method
        premise_decided = method.clean_error_rate is not None or not method.args.clid_premise_safeguard
        if premise_decided and (method.believed_share is not None or method.premise_failed) and self.epoch is None:
            self.epoch = state.epoch
            control.should_training_stop = True


def _training_set(task_name: str, cell_name: str, seed: int):
    task, data = TASKS[task_name], load_task(task_name, REPO / "benchmarks" / "results" / "cache")
    cell, train = task.cell(cell_name), data.train
    disputed = None
    if AGREEMENT_COLUMN in train.column_names:  # analysis only, never shown to the method
        disputed = np.asarray(train[AGREEMENT_COLUMN][:]) < 1.0
        train = train.remove_columns(AGREEMENT_COLUMN)
    if cell.has_clean_labels:
        features = data.instance_features() if cell.kind == "instance" and data.instance_features else None
        train = cell.apply(train, seed, features)
    return task, data, train, disputed


def _train_until(
    stop: StopAtStage2 | StopAtCLIDDecision | None, task, data, train, seed: int, **settings: Any
) -> NoisyLabelTrainer:
    """Train the harness's run of `task` with `settings` (no evaluation) until the `stop` callback ends it (its
    `trainer` is set), or to the end without one; returns the trainer."""
    with tempfile.TemporaryDirectory() as workdir:
        trainer = NoisyLabelTrainer(
            model=data.make_model(seed),
            args=NoisyLabelConfig(**training_kwargs(task, seed, workdir, evaluate=False), **settings),
            train_dataset=train,
            processing_class=data.processing_class,
            callbacks=[] if stop is None else [stop],
        )
        if stop is not None:
            stop.trainer = trainer
        trainer.train()
    return trainer


def measure_clid(task_name: str, cell_name: str, seed: int, **overrides: Any) -> dict[str, object]:
    task, data, train, _ = _training_set(task_name, cell_name, seed)
    stop = StopAtCLIDDecision()
    settings = {
        **task.method_settings("clid_mu"), "clid_scope": "head", "clid_premise_safeguard": True,
        "clid_disputed_safeguard": True, **overrides,
    }  # fmt: skip
    _train_until(stop, task, data, train, seed, lnl_method="clid_mu", **settings)
    method = stop.trainer.method
    result: dict[str, object] = {"task": task_name, "cell": cell_name, "seed": seed, "method": "clid_mu"}
    result["clid_warmup_epochs"] = clid_mu.warmup_epochs(stop.trainer.args)
    result["prediction_change_share"] = [
        entry["prediction_change"] / len(train) for entry in stop.trainer.state.log_history
        if "prediction_change" in entry and entry["epoch"] <= method.decision_epoch + 1e-6
    ]  # fmt: skip
    result.update(stop.signals or {})
    result["clean_component_error_rate"] = method.clean_error_rate  # clid_premise_safeguard's statistic
    result["premise_fails"] = method.premise_failed
    if method.believed_share is None:
        return {**result, "decided": False, "contrast": method.contrast}
    decision = next(entry for entry in stop.trainer.state.log_history if "clid_flagged_share" in entry)
    result["flagged_share"] = decision["clid_flagged_share"]  # the share of the samples the safeguard's mixture flags
    return {
        **result, "decided_after_epoch": stop.epoch, "contrast": method.contrast,
        "believed_share": method.believed_share, "fires": method.believed_share >= clid_mu.DISPUTED_BELIEVED_SHARE,
    }  # fmt: skip


def measure(task_name: str, cell_name: str, seed: int, **overrides: Any) -> dict[str, object]:
    task, data, train, disputed = _training_set(task_name, cell_name, seed)
    stop = StopAtStage2()
    settings = {**task.method_settings("ido"), "ido_correction": "base_belief", **overrides}
    _train_until(stop, task, data, train, seed, lnl_method="ido", **settings)
    if stop.state is None or stop.state["fallback"]:
        return {"task": task_name, "cell": cell_name, "seed": seed, "premise_safeguard_fired": True}
    p_noisy, belief = stop.state["p_noisy"], stop.state["belief"]
    flagged = p_noisy > 0.5
    result = {
        "task": task_name, "cell": cell_name, "seed": seed, "flagged": float(flagged.mean()),
        "belief_flagged": float(belief[flagged].mean()), "belief_trusted": float(belief[~flagged].mean()),
        "believed_share": believed_share(p_noisy, belief),
    }  # fmt: skip
    result["auto_picks"] = "base_belief" if result["believed_share"] >= MIN_BELIEVED_SHARE else "entropy"
    if "clean_label" in train.column_names:
        flipped = np.asarray(train["label"][:]) != np.asarray(train["clean_label"][:])
        result["belief_flagged_flipped"] = float(belief[flagged & flipped].mean())
        result["belief_flagged_clean"] = float(belief[flagged & ~flipped].mean())
    if disputed is not None:
        result["belief_flagged_disputed"] = float(belief[flagged & disputed].mean())
        result["belief_flagged_agreed"] = float(belief[flagged & ~disputed].mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--cell", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=("ido", "clid_mu"), default="ido")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", help="also write the result as JSON here")
    parser.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[], metavar="KEY=VALUE",
                        help="A NoisyLabelConfig override on top of the harness's settings (repeatable).")  # fmt: skip
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    measure_method = measure_clid if options.method == "clid_mu" else measure
    result = measure_method(options.task, options.cell, options.seed, **dict(options.settings))
    print(json.dumps(result, indent=1))
    if options.output:
        with open(options.output, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
