"""Run by tests/test_distributed.py under torchrun (2 CPU processes, gloo) or as a single process.

Usage: python distributed_worker.py OUT_DIR METHOD FROZEN PER_DEVICE_BATCH [EXTRA_JSON]
Writes rank-<r>.json with the losses, the tracker state and the method's state as seen by that process. EXTRA_JSON
holds NoisyLabelConfig fields, plus `import_module`: a module of tests/ to import first (it registers a method).
"""

import importlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from conftest import text_dataset, tiny_bert  # noqa: E402

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer  # noqa: E402


def main() -> None:
    out_dir, method, frozen, per_device = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
    extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    if "import_module" in extra:
        importlib.import_module(extra.pop("import_module"))
    torch.set_num_threads(1)
    data = text_dataset(extra.pop("num_samples", 45), seed=1)
    data = data.add_column("clean_label", data["label"][:])
    args = NoisyLabelConfig(
        output_dir=out_dir,
        lnl_method=method,
        num_train_epochs=extra.pop("num_train_epochs", 3),
        per_device_train_batch_size=per_device,
        learning_rate=0.0 if frozen else 1e-3,
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **extra,
    )
    trainer = NoisyLabelTrainer(model=tiny_bert(dropout=0.0 if frozen else 0.1), args=args, train_dataset=data)
    trainer.train()
    rank = args.process_index
    result = {
        "world_size": args.world_size,
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "tracker": {k: v.tolist() for k, v in trainer.tracker.state_dict().items()},
        "method": {k: v.float().tolist() for k, v in trainer.method.state_dict().items()},
        "method_metadata": trainer.method.metadata(),
        "report": trainer.noise_report().to_dict(),
        "parameters": [p.detach().flatten()[:50].tolist() for p in trainer.model.parameters()],
    }
    with open(os.path.join(out_dir, f"rank-{rank}.json"), "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
