"""What the integrations receive: the noise-detection metrics reach TensorBoard's one event file and the console."""

from pathlib import Path

import numpy as np
import pytest
from conftest import text_dataset, tiny_bert
from transformers import ProgressCallback

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer


def _noisy_text(n=32):
    data = text_dataset(n, seed=3)
    clean = np.asarray(data["label"][:])
    noisy = clean.copy()
    noisy[: n // 4] = (noisy[: n // 4] + 1) % 4
    return data.remove_columns("label").add_column("label", noisy.tolist()).add_column("clean_label", clean.tolist())


def _train(tmp_path, **kwargs):
    args = NoisyLabelConfig(
        str(tmp_path / "run"), num_train_epochs=2, per_device_train_batch_size=8, learning_rate=1e-3, use_cpu=True,
        save_strategy="no", logging_steps=2, **kwargs,
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=_noisy_text())
    trainer.train()
    return trainer


def test_tensorboard_gets_one_event_file_with_the_detection_metrics(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    trainer = _train(tmp_path, report_to=["tensorboard"], disable_tqdm=True)
    files = sorted(Path(trainer.args.output_dir, "runs").rglob("events.out.tfevents.*"))
    assert len(files) == 1, files  # logged after on_train_end, TensorBoard would open a second file
    events = event_accumulator.EventAccumulator(str(files[0]))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "train/noise_detection_f1" in tags and "train/noise_detection_auroc" in tags
    (f1,) = events.Scalars("train/noise_detection_f1")
    assert f1.value == pytest.approx(trainer.state.log_history[-1]["noise_detection_f1"])
    assert f1.step == trainer.state.global_step


def test_detection_metrics_print_with_the_default_progress_bar(tmp_path, capsys):
    # disable_tqdm's default depends on transformers' verbosity, which other tests may have raised: say it.
    trainer = _train(tmp_path, report_to=[], disable_tqdm=False)
    assert any(isinstance(c, ProgressCallback) for c in trainer.callback_handler.callbacks)
    printed = capsys.readouterr()
    assert "'noise_detection_f1'" in printed.out + printed.err
    # The closing summary comes first, the detection metrics right after it; nothing is logged after training.
    assert "train_loss" in trainer.state.log_history[-2] and "noise_detection_f1" in trainer.state.log_history[-1]
