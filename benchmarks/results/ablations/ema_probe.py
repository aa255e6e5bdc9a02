"""Screen (not part of hf_lnl): do exponential moving averages (EMA) of the weights help IDO?

Runs `benchmarks/run.py` unchanged, with a callback that keeps EMA copies of the parameters for horizons of 0.5, 1, 2
and 4 epochs (decay 1 - 1 / (horizon x steps per epoch), restarted when IDO's stage changes) and evaluates each after
every epoch (every fifth on runs of more than 8 epochs) under `torch.random.fork_rng`, so the run itself trains and
scores exactly as without the probe. With `EMA_BASE_H=<horizon>` IDO's base model (the weights stage 2 starts from)
is that EMA of stage 1 instead of the weights themselves; the wrong events, the mixture and the beliefs are unchanged.
Each evaluation appends one JSON line to RESULT.jsonl (each run is a forked child of run.py).

    python benchmarks/results/ablations/ema_probe.py RESULT.jsonl -- --suite headline --tasks A --cells sym40 \
        --methods ido --seeds 0 --output DIR
    EMA_BASE_H=0.5 python benchmarks/results/ablations/ema_probe.py RESULT.jsonl -- <the same run.py arguments>
"""

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
import methods  # noqa: E402
import run  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from hf_lnl import NoisyLabelTrainer  # noqa: E402

HORIZONS = (0.5, 1.0, 2.0, 4.0)  # epochs
if len(sys.argv) < 4 or sys.argv[2] != "--":
    sys.exit("usage: ema_probe.py RESULT.jsonl -- <benchmarks/run.py arguments>")
OUT = sys.argv[1]


class EmaProbe(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.ema, self.stage, self.busy, self.updates, self.decays = trainer, None, None, False, 0, {}

    def _params(self):
        return list(self.trainer.model.parameters())

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        steps = len(train_dataloader) // max(args.gradient_accumulation_steps, 1)
        self.decays = {h: 1.0 - 1.0 / (h * steps) for h in HORIZONS}

    def _reset(self):
        params = [p.detach().float().clone() for p in self._params()]
        self.ema = {h: [p.clone() for p in params] for h in self.decays}
        self.updates = 0

    def on_step_end(self, args, state, control, **kwargs):
        stage = getattr(getattr(self.trainer, "method", None), "stage", None)
        fallback = getattr(getattr(self.trainer, "method", None), "fallback", None)
        if self.ema is None or (stage, fallback) != self.stage:
            self.stage = (stage, fallback)
            self._reset()
            return
        self.updates += 1
        current = [p.detach().float() for p in self._params()]
        for h, ema in self.ema.items():
            torch._foreach_lerp_(ema, current, 1.0 - self.decays[h])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.busy or self.ema is None:
            return
        epoch, total = round(state.epoch), int(args.num_train_epochs)
        if total > 8 and epoch % 5 and epoch != total:
            return
        self.busy = True
        params = self._params()
        backup = [p.detach().clone() for p in params]
        row = {
            "method": getattr(args, "lnl_method", "plain"),
            "seed": args.seed,
            "epoch": epoch,
            "stage": list(self.stage),
            "updates": self.updates,
            "eval_accuracy": (metrics or {}).get("eval_accuracy"),
        }
        with torch.random.fork_rng(devices=[]):
            for h, ema in self.ema.items():
                with torch.no_grad():
                    for p, q in zip(params, ema):
                        p.copy_(q.to(p.dtype))
                prefix = f"ema{h:g}".replace(".", "p")
                result = self.trainer.evaluate(metric_key_prefix=prefix)
                row[f"ema_{h:g}"] = result[f"{prefix}_accuracy"]
            with torch.no_grad():
                for p, q in zip(params, backup):
                    p.copy_(q)
        print("EMA", json.dumps(row), flush=True)
        with open(OUT, "a") as f:  # each run is a forked child: append one line per evaluation
            f.write(json.dumps(row) + "\n")
        self.busy = False


PROBE = {}
BASE_H = float(os.environ.get("EMA_BASE_H", "0"))  # > 0: IDO's base model is the EMA of this horizon (epochs)


def probed(base):
    class Probed(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            PROBE["current"] = EmaProbe(self)
            self.add_callback(PROBE["current"])

    return Probed


if BASE_H > 0:
    from hf_lnl.methods.ido import IDO

    original_snapshot = IDO._snapshot_base

    def snapshot_ema(self, epoch):
        original_snapshot(self, epoch)
        probe = PROBE["current"]
        names = [name for name, _ in probe.trainer.model.named_parameters()]
        ema = probe.ema[BASE_H]
        replaced = 0
        for name, tensor in zip(names, ema):
            if name in self.base_state:
                self.base_state[name] = tensor.detach().to("cpu", self.base_state[name].dtype, copy=True)
                replaced += 1
        print(f"EMA base: epoch {epoch}, {replaced} tensors from the {BASE_H:g}-epoch EMA", flush=True)

    IDO._snapshot_base = snapshot_ema

methods.NoisyLabelTrainer = probed(NoisyLabelTrainer)
methods.Trainer = probed(Trainer)
sys.exit(run.main(sys.argv[3:]))
