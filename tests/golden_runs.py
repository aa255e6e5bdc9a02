"""Golden runs: every built-in method on a tiny BERT and a tiny ViT, recorded exactly.

A golden run trains one method for 3 epochs on 48 noisy samples and keeps everything a refactoring must not change:
the loss of every training step (as computed, not as rounded by the logs), the logged metrics, a checksum of the
final weights and the whole noise report. `tests/golden/golden_runs.json` holds the runs recorded at the commit a
behaviour-preserving redesign starts from; `tests/test_golden.py` replays them and compares with atol 0.

Record anew (only when a change of numbers is intended, and say so in the commit):
    python tests/golden_runs.py tests/golden/golden_runs.json
"""

from __future__ import annotations

import json
import math
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy
import scipy
import torch
from conftest import TINY_METHOD_SETTINGS, image_dataset, text_dataset, tiny_bert, tiny_vit
from transformers import ViTImageProcessor

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer
from hf_lnl.noise import add_label_noise

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from report import cpu_model  # noqa: E402  (the CPU model as the benchmark rows' machine line has it)

METHODS = ("none", "gce", "sce", "ido", "clid_mu")  # the built-in methods when the golden runs were recorded
# Settings whose default changed after the recording, pinned to the values the golden runs were recorded with.
# hf_lnl 0.3 made "auto" the default of both (views: "dropout" for images and short texts; correction: "base_belief"
# where the base model still believes the flagged labels).
RECORDED_SETTINGS = {
    "ido": {"ido_views": "augmented", "ido_correction": "entropy", "ido_stage1_constant_lr": False},  # 0.3: True
    # hf_lnl 0.3 made a third of the epochs CLID-MU's default warm-up, turned its disputed-label check on and ranked
    # its noise report by wrong events (clid_noise_score)
    "clid_mu": {"clid_warmup_epochs": 0, "clid_disputed_safeguard": False, "clid_noise_score": "meta_weight"},
}
# Log entries added since the recording that report on training without changing it (left out of the comparison).
ADDED_LOGS = ("meta_weight_contrast",)  # CLID-MU, hf_lnl 0.3
FAMILIES = ("bert", "vit")
# Keys of the log history that measure time or throughput, not training.
UNTIMED = ("runtime", "per_second", "total_flos")


def environment() -> dict[str, str]:
    """What bit-exactness depends on besides the code: the torch build, the CPU's instruction set and its model (two
    AVX512 CPUs of different makers round the same matrix kernels differently in the last bit), and the numpy and
    scipy builds that fit IDO's beta mixture (another scipy moved a mixture parameter in its last bit)."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def golden_run(family: str, method: str, output_dir: str) -> dict[str, Any]:
    """Train `method` on the tiny `family` model (single thread) and return what the run must reproduce."""
    if family == "bert":
        model, data, processing_class = tiny_bert(), text_dataset(48, seed=5), None
    else:
        model, data = tiny_vit(), image_dataset(48, seed=5)
        size = {"height": 32, "width": 32}
        processing_class = ViTImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3, size=size)
    data = add_label_noise(data, "symmetric", 0.4, seed=0)
    args = NoisyLabelConfig(
        output_dir=output_dir, lnl_method=method, num_train_epochs=3, per_device_train_batch_size=8,
        learning_rate=1e-3, report_to=[], use_cpu=True, disable_tqdm=True, logging_steps=1, seed=0,
        save_strategy="no", **TINY_METHOD_SETTINGS.get(method, {}), **RECORDED_SETTINGS.get(method, {}),
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=model, args=args, train_dataset=data, processing_class=processing_class)
    losses: list[float] = []
    compute_loss = trainer.compute_loss

    def recording_compute_loss(*arguments: Any, **keywords: Any) -> Any:
        result = compute_loss(*arguments, **keywords)
        if trainer.model.training:
            loss = result[0] if isinstance(result, tuple) else result
            losses.append(float(loss.detach()))
        return result

    trainer.compute_loss = recording_compute_loss
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    logs = [
        {k: v for k, v in entry.items() if not any(t in k for t in UNTIMED) and k not in ADDED_LOGS}
        for entry in trainer.state.log_history
    ]
    weights = math.fsum(float(p.detach().double().sum()) for p in trainer.model.parameters())
    return {"losses": losses, "logs": logs, "weight_sum": weights, "report": trainer.noise_report().to_dict()}


def record(path: str) -> None:
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for family in FAMILIES:
            for method in METHODS:
                runs[f"{family}-{method}"] = golden_run(family, method, f"{folder}/{family}-{method}")
                print(f"{family}-{method}: {len(runs[f'{family}-{method}']['losses'])} steps", flush=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"environment": environment(), "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    record(sys.argv[1])
