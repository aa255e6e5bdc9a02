"""Candidate premise signals from probe.py's histories (one row per run)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from hf_lnl.mixture import ClassConditionalBetaMixture, clean_component_error_rate  # noqa: E402

here = Path(__file__).parent
# stat: IDO's premise statistic on the per-class mixture; trusted_err: last-visit error of the 30% with the
# fewest wrong events; clean_ok: share of the clean labels predicted at the last visit; agree_k: share of predictions
# equal at epochs k and k+1 (1 - the last pair's is the prediction change); stable: equal over epochs 2..E; err_k:
# training error on the given labels at epoch k.
print("run                 ep  stat  trusted_err  clean_ok  agree12  agree23  stable  err1   err2   err3")
for path in sorted(here.glob("*.npz")):
    d = np.load(path)
    labels = d["labels"]
    epochs = sorted(int(k.split("_")[1]) for k in d if k.startswith("predictions_"))
    E = epochs[-1]
    counts = d[f"counts_{E}"]
    num_classes = int(labels.max()) + 1
    stat = clean_component_error_rate(ClassConditionalBetaMixture(num_classes).fit(counts, labels))
    preds = [d[f"predictions_{e}"] for e in epochs]
    err = [float((p != labels).mean()) for p in preds]
    # trusted = low counts (count <= median of counts?) use count <= 1
    trusted = counts <= np.quantile(counts, 0.3)
    last_err_trusted = float((preds[-1][trusted] != labels[trusted]).mean())
    agree = [float((preds[i] == preds[i + 1]).mean()) for i in range(len(preds) - 1)]
    stable = float(np.all(np.stack(preds[1:]) == preds[-1], axis=0).mean())
    flip_info = ""
    if "clean_labels" in d:
        flipped = labels != d["clean_labels"]
        flip_info = f"{float((preds[-1][~flipped] == labels[~flipped]).mean()):.3f}"
    print(f"{path.stem:20s} {E}  {stat:.3f}  {last_err_trusted:.3f}   {flip_info:6s}  "
          + "  ".join(f"{a:.3f}" for a in agree) + f"  {stable:.3f}  " + "  ".join(f"{x:.3f}" for x in err))
