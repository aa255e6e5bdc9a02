"""Screen (not part of hf_lnl): does IDO's stage 2 gain from a higher peak learning rate?

Runs `benchmarks/run.py` unchanged except that, when IDO restarts its optimiser for stage 2, the learning rate is
multiplied by `STAGE2_LR_SCALE` (stage 1, the warm-up share and the schedule's shape are unchanged). On Task A's
4 stage-2 epochs at 5e-5 every run still rises at its last epochs, so stage 2 may be short of steps, not of labels.

    STAGE2_LR_SCALE=2 python benchmarks/results/ablations/stage2_lr_probe.py -- --suite headline --tasks A \
        --cells sym40 --methods ido --seeds 0 --output DIR
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
import run  # noqa: E402

from hf_lnl import NoisyLabelTrainer  # noqa: E402

SCALE = float(os.environ.get("STAGE2_LR_SCALE", "1"))
if len(sys.argv) < 3 or sys.argv[1] != "--":
    sys.exit("usage: STAGE2_LR_SCALE=<x> stage2_lr_probe.py -- <benchmarks/run.py arguments>")

original_restart = NoisyLabelTrainer.restart_optimization


def restart_scaled(self):
    self.args.learning_rate *= SCALE  # only stage 2 (and a premise fallback) restart the optimiser
    print(f"stage-2 learning rate: {self.args.learning_rate:g} (x{SCALE:g})", flush=True)
    original_restart(self)


NoisyLabelTrainer.restart_optimization = restart_scaled
sys.exit(run.main(sys.argv[2:]))
