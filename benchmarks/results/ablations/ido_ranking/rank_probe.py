"""One-off: does IDO's p_noisy rank B2 asym40's flips worse than its raw wrong-event counts? (seed 0, defaults)"""
import sys, tempfile, json
import numpy as np, torch
sys.path.insert(0, '.')
torch.set_num_threads(2)
from stage1_belief import _training_set
from methods import training_kwargs
from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer
from sklearn.metrics import roc_auc_score
task, data, train, _ = _training_set("B2", "asym40", 0)
with tempfile.TemporaryDirectory() as workdir:
    args = NoisyLabelConfig(**training_kwargs(task, 0, workdir, evaluate=False), lnl_method="ido", ido_stage1_epochs=task.ido_stage1_epochs)
    trainer = NoisyLabelTrainer(model=data.make_model(0), args=args, train_dataset=train, processing_class=data.processing_class)
    trainer.train()
    report = trainer.noise_report()
cols = report.column_names
print("columns", cols)
flipped = np.asarray(report["label"]) != np.asarray(report["clean_label"])
out = {}
for c in cols:
    v = np.asarray(report[c])
    if v.dtype.kind in "fi" and c not in ("label", "clean_label", "source_index", "corrected_label") and np.isfinite(v).all():
        out[c] = float(roc_auc_score(flipped, v))
counts = trainer.method.context.counts()
out["raw_counts"] = float(roc_auc_score(flipped, counts))
out["distinct_noise_scores"] = int(len(np.unique(np.asarray(report["noise_score"]))))
out["distinct_counts"] = int(len(np.unique(counts)))
print(json.dumps(out, indent=1))
json.dump(out, open("results/ablations/ido_believed_share/B2_asym40_ranking_seed0.json", "w"), indent=1)
