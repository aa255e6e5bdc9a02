"""The method contract, for every registered method and for one written here, outside the package.

Each method trains, resumes bit-identically from a middle checkpoint, ends with identical state on 2 processes,
fills `noise_score` in [0, 1] and its declared report columns, and its model card cites exactly its own paper.
`SoftBootstrapping` below is what a user writes: one class, registered with the public API, with its own settings
(from `lnl_method_kwargs`), per-sample state, a report column and a citation.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_METHOD_SETTINGS, text_dataset, tiny_bert
from test_distributed import run_worker
from transformers import HfArgumentParser

from hf_lnl import (
    IGNORE_INDEX,
    Citation,
    LNLMethod,
    MethodOutput,
    NoisyLabelConfig,
    NoisyLabelTrainer,
    get_method,
    register_method,
)
from hf_lnl.distributed import gather_rows
from hf_lnl.methods import METHOD_NAMES

REED_2015 = Citation(
    key="reed2015bootstrapping",
    title="Training Deep Neural Networks on Noisy Labels with Bootstrapping",
    authors=(
        "Scott E. Reed", "Honglak Lee", "Dragomir Anguelov", "Christian Szegedy", "Dumitru Erhan",
        "Andrew Rabinovich",
    ),
    venue="ICLR workshop",
    booktitle="International Conference on Learning Representations (ICLR), Workshop Track",
    year=2015,
    eprint="1412.6596",
)  # fmt: skip


@dataclass
class SoftBootstrappingSettings:
    beta: float = 0.95  # weight of the given label in the target; Reed et al.'s soft bootstrapping uses 0.95


@register_method
class SoftBootstrapping(LNLMethod):
    """Reed et al.'s soft bootstrapping: cross-entropy against `beta * onehot(y) + (1 - beta) * p` (p detached)."""

    name = "soft_bootstrap"
    title = "soft bootstrapping"
    description = "Cross-entropy against a mix of the given label and the model's own prediction."
    citation = REED_2015
    report_columns = ("label_confidence",)
    state_tensors = ("label_confidence",)
    settings_class = SoftBootstrappingSettings

    def setup(self) -> None:
        self.label_confidence = torch.full((len(self.context.label_info.labels),), float("nan"))

    def compute_loss(self, model, inputs, sample_index, num_items_in_batch):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        log_p = F.log_softmax(outputs.logits.float(), dim=-1)
        keep = labels != IGNORE_INDEX
        given = F.one_hot(labels.clamp_min(0), log_p.shape[-1]).float()
        target = self.settings.beta * given + (1 - self.settings.beta) * log_p.exp().detach()
        per_sample = -(target * log_p).sum(-1) * keep
        confidence = log_p.exp().gather(1, labels.clamp_min(0)[:, None])[:, 0].detach()
        index, confidence = gather_rows(sample_index, confidence)  # every process keeps the same state
        self.label_confidence[index.cpu()] = confidence.float().cpu()
        loss = per_sample.sum() / keep.sum().clamp_min(1)
        metrics = {"mean_confidence": confidence.mean()}
        return MethodOutput(loss, outputs, (outputs.logits,), labels, per_sample_loss=per_sample, metrics=metrics)

    def state_dict(self):
        return {"label_confidence": self.label_confidence}

    def load_state(self, tensors, metadata):
        self.label_confidence.copy_(tensors["label_confidence"])

    def noise_scores(self):
        return np.nan_to_num(1.0 - self.label_confidence.numpy(), nan=0.0)

    def report_values(self):
        return {"label_confidence": self.label_confidence.numpy()}


SETTINGS = {**TINY_METHOD_SETTINGS, "soft_bootstrap": {"lnl_method_kwargs": {"beta": 0.9}}}
METHODS = sorted(METHOD_NAMES)
# IDO's label correction keeps per-sample state of its own (the weak view's last prediction): threshold 0 corrects
# every flagged sample, so the tiny runs below make corrections.
IDO_CORRECTION = {"ido_correction": "pseudo_label", "ido_pseudo_label_threshold": 0.0}
# A tiny model's meta weights barely split (contrast ~0.01, which scales CLID-MU's noise scores): flagging any score
# above 0 still flags its low-weight group, so that some labels are corrected.
CLID_CORRECTION = {
    "clid_correction": "pseudo_label", "clid_pseudo_label_threshold": 0.0, "noise_score_threshold": 0.0,
}  # fmt: skip
CORRECTION_COLUMNS = {"corrected_label", "correction_confidence"}  # written only with label correction on
# The base model's predicted distribution, recorded in stage 1 and taught in stage 2; every label is flagged.
IDO_BASE_PREDICTION = {"ido_correction": "base_prediction", "noise_score_threshold": 0.0}
# Mixup's refined targets on text (mixed word embeddings); every label is flagged, so the report shows corrections.
IDO_MIXUP = {"ido_correction": "mixup", "noise_score_threshold": 0.0}
CORRECTIONS = (IDO_CORRECTION, CLID_CORRECTION, IDO_BASE_PREDICTION, IDO_MIXUP)
# The tiny texts (12 tokens) are too short for the default ("auto") to mask tokens; this masks them (paper's views).
IDO_MASKED = {"ido_views": "augmented"}
IDO_BASE_BELIEF = {"ido_correction": "base_belief"}  # per-sample state recorded in stage 1, read in stage 2
# Per-sample belief recorded until CLID-MU's first epoch end with flags, and a switch that may turn the weighting off.
CLID_DISPUTED = {"clid_disputed_safeguard": True, "noise_score_threshold": 0.0}
VARIANTS = [(m, {}) for m in METHODS] + [
    ("ido", IDO_CORRECTION), ("clid_mu", CLID_CORRECTION), ("ido", IDO_MASKED), ("ido", IDO_BASE_BELIEF),
    ("ido", IDO_BASE_PREDICTION), ("clid_mu", CLID_DISPUTED), ("ido", IDO_MIXUP),
]


def _trainer(out_dir, method, with_clean_label=True, **kwargs):
    data = text_dataset(45, seed=3)
    data = data.add_column("clean_label", data["label"][:]).remove_columns("label")
    noisy = np.asarray(data["clean_label"][:])
    noisy[:10] = (noisy[:10] + 1) % 4
    data = data.add_column("label", noisy.tolist())
    if not with_clean_label:
        data = data.remove_columns("clean_label")
    settings = dict(
        output_dir=str(out_dir), lnl_method=method, num_train_epochs=3, per_device_train_batch_size=8,
        learning_rate=1e-3, save_strategy="steps", save_steps=4, report_to=[], use_cpu=True, disable_tqdm=True,
        logging_steps=1, seed=0, **SETTINGS.get(method, {}),
    )  # fmt: skip
    settings.update(kwargs)
    return NoisyLabelTrainer(model=tiny_bert(), args=NoisyLabelConfig(**settings), train_dataset=data)


def test_the_user_method_is_registered_beside_the_built_in_ones():
    assert {"none", "gce", "sce", "ido", "clid_mu", "soft_bootstrap"} <= set(METHODS)
    assert get_method("soft_bootstrap") is SoftBootstrapping


@pytest.mark.parametrize("method, variant", VARIANTS)
def test_trains_reports_and_cites_its_own_paper(tmp_path, method, variant):
    trainer = _trainer(tmp_path, method, **variant)
    trainer.train()
    report = trainer.noise_report()
    scores = np.asarray(report["noise_score"][:])
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    corrects = variant in CORRECTIONS
    expected = set(trainer.method.report_columns) - (set() if corrects else CORRECTION_COLUMNS)
    assert expected <= set(report.column_names)
    if corrects:  # label correction on: some flagged sample got a corrected label
        assert (np.asarray(report["corrected_label"][:]) != np.asarray(report["label"][:])).any()
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    own = trainer.method.citation
    others = {get_method(m).citation.key for m in METHODS if get_method(m).citation is not None} - {own and own.key}
    assert card.count("@inproceedings") == (own is not None)
    if own is not None:
        assert f"@inproceedings{{{own.key}," in card and " and ".join(own.authors) in card
    assert not any(key in card for key in others)


@pytest.mark.parametrize("method, variant", VARIANTS)
def test_clean_labels_are_never_read_for_training(tmp_path, method, variant):
    with_clean = _trainer(tmp_path / "with", method, save_strategy="no", **variant)
    with_clean.train()
    without = _trainer(tmp_path / "without", method, with_clean_label=False, save_strategy="no", **variant)
    without.train()
    for a, b in zip(with_clean.model.parameters(), without.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    report = with_clean.noise_report().remove_columns("clean_label")
    assert report.to_dict() == without.noise_report().to_dict()
    assert "clean_label" not in without.noise_report().column_names


@pytest.mark.parametrize(
    "method, step, variant",
    [(m, 8, {}) for m in METHODS]
    + [("ido", 16, {}), ("ido", 16, IDO_CORRECTION), ("clid_mu", 8, CLID_CORRECTION), ("ido", 16, IDO_MASKED)]
    + [("ido", 4, IDO_BASE_PREDICTION), ("ido", 16, IDO_BASE_PREDICTION), ("clid_mu", 8, CLID_DISPUTED)]
    + [("ido", 16, IDO_MIXUP)],
)
def test_resumes_bit_identically_from_a_middle_checkpoint(tmp_path, method, step, variant):
    full = _trainer(tmp_path / "full", method, **variant)
    full.train()
    resumed = _trainer(tmp_path / "resumed", method, **variant)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / f"checkpoint-{step}"))
    assert resumed.noise_report().to_dict() == full.noise_report().to_dict()
    assert resumed.method.metadata() == full.method.metadata()
    expected, got = full.method.state_dict(), resumed.method.state_dict()
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, equal_nan=True)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("method, variant", VARIANTS)
def test_every_process_holds_the_same_state(tmp_path, method, variant):
    extra = {**SETTINGS.get(method, {}), **variant}
    if method == "clid_mu":
        extra.update(clid_meta_set_size=16, clid_scope="last_k")
    if method == "soft_bootstrap":
        extra["import_module"] = "test_method_contract"
    ranks = run_worker(tmp_path, "two", method, frozen=False, per_device=4, processes=2, extra=extra)
    assert ranks[0]["world_size"] == 2
    for name in ("tracker", "method", "method_metadata", "parameters", "report"):
        assert ranks[0][name] == ranks[1][name], name
    assert max(ranks[0]["tracker"]["wrong_events"]) <= 3 * get_method(method).num_views


# ------------------------------------------------------------------------------------------- the registry
def test_settings_come_from_yaml_and_the_command_line(tmp_path):
    parser = HfArgumentParser(NoisyLabelConfig)
    (from_cli,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--lnl_method", "soft_bootstrap", "--lnl_method_kwargs", '{"beta": 0.8}']
    )
    assert from_cli.lnl_method_kwargs == {"beta": 0.8}
    (from_yaml,) = parser.parse_dict(
        {"output_dir": str(tmp_path), "lnl_method": "soft_bootstrap", "lnl_method_kwargs": {"beta": 1}}
    )
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=from_yaml, train_dataset=text_dataset(16))
    assert trainer.method.settings == SoftBootstrappingSettings(beta=1.0)
    assert trainer.method.settings_summary() == {"beta": 1.0}


def test_unknown_methods_and_settings_are_refused_with_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit):
        HfArgumentParser(NoisyLabelConfig).parse_args_into_dataclasses(
            ["--output_dir", str(tmp_path), "--lnl_method", "foo"]
        )
    assert "invalid choice: 'foo'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a registered method.*'soft_bootstrap'"):
        NoisyLabelConfig(str(tmp_path), lnl_method="foo")
    with pytest.raises(ValueError, match="no setting 'gamma'.*\\['beta'\\]"):
        NoisyLabelConfig(str(tmp_path), lnl_method="soft_bootstrap", lnl_method_kwargs={"gamma": 1.0})
    with pytest.raises(ValueError, match="must be a float"):
        NoisyLabelConfig(str(tmp_path), lnl_method="soft_bootstrap", lnl_method_kwargs={"beta": "high"})
    with pytest.raises(ValueError, match="takes no lnl_method_kwargs"):
        NoisyLabelConfig(str(tmp_path), lnl_method="gce", lnl_method_kwargs={"q": 0.5})
    with pytest.raises(ValueError, match="JSON object"):
        NoisyLabelConfig(str(tmp_path), lnl_method="soft_bootstrap", lnl_method_kwargs="{beta: 1}")


def test_registration_checks_the_declarations():
    with pytest.raises(ValueError, match="already registered"):
        register_method(type("Other", (SoftBootstrapping,), {}))
    with pytest.raises(ValueError, match="title"):
        register_method(type("Untitled", (LNLMethod,), {"name": "untitled", "compute_loss": lambda *a: None}))
    with pytest.raises(ValueError, match="compute_loss"):
        register_method(type("NoLoss", (LNLMethod,), {"name": "no_loss", "title": "no loss"}))
    with pytest.raises(TypeError, match="LNLMethod subclass"):
        register_method(object)
    assert "untitled" not in METHOD_NAMES and "no_loss" not in METHOD_NAMES


def test_undeclared_state_is_refused_at_the_first_checkpoint(tmp_path):
    @register_method(replace=True)
    class Leaky(SoftBootstrapping):
        name = "leaky"
        state_tensors = ()

    trainer = _trainer(tmp_path, "leaky", max_steps=4, num_train_epochs=1)
    with pytest.raises(ValueError, match="undeclared state tensors \\['label_confidence'\\]"):
        trainer.train()


def test_the_readme_example_method_registers_trains_and_is_cited(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("<!-- example:custom-method -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(block, "README.md", "exec"), namespace)
    assert get_method("hard_bootstrap") is namespace["HardBootstrapping"]
    trainer = _trainer(tmp_path, "hard_bootstrap", lnl_method_kwargs={"beta": 0.8}, save_strategy="no")
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and np.isfinite(losses).all()
    assert len(trainer.noise_report()) == 45
    trainer.create_model_card()
    assert "@inproceedings{reed2015bootstrapping," in (tmp_path / "README.md").read_text()
