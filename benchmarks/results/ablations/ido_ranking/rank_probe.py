"""One-off probe: does IDO's `p_noisy` rank Task B2 asym40's flips worse than its raw wrong-event counts?

Trains IDO at its defaults on the harness's B2 asym40 (the given seed, default 0; no evaluation) and prints the AUROC
of every numeric report column against "flipped". Run from `benchmarks/`:

    python results/ablations/ido_ranking/rank_probe.py [seed]
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, ".")  # benchmarks/: the harness's modules
from stage1_belief import _train_until, _training_set  # noqa: E402

SKIPPED = ("label", "clean_label", "source_index", "corrected_label")


def main(seed: int) -> None:
    torch.set_num_threads(1)
    task, data, train, _ = _training_set("B2", "asym40", seed)
    trainer = _train_until(None, task, data, train, seed, lnl_method="ido", ido_stage1_epochs=task.ido_stage1_epochs)
    report = trainer.noise_report()
    arrays = {column: np.asarray(report[column]) for column in report.column_names}
    arrays = {column: values for column, values in arrays.items() if values.dtype.kind in "fiu"}
    flipped = arrays["label"] != arrays["clean_label"]
    result = {}
    for column, values in arrays.items():
        if values.dtype.kind in "fi" and column not in SKIPPED and np.isfinite(values).all():
            result[column] = float(roc_auc_score(flipped, values))
    result["distinct_noise_scores"] = len(np.unique(arrays["noise_score"]))
    result["distinct_wrong_events"] = len(np.unique(arrays["wrong_events"]))
    print(json.dumps(result, indent=1))
    np.savez_compressed(Path(__file__).parent / f"B2_asym40_report_seed{seed}.npz", **arrays)
    (Path(__file__).parent / f"B2_asym40_ranking_seed{seed}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
