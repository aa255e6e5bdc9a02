from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from hf_lnl.human_noise import attach_human_noise, load_cifar_n_labels

N = 200


@pytest.fixture()
def cifar(tmp_path) -> tuple[datasets.Dataset, Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 10, N)
    arrays = {
        "clean_label": clean.copy(),
        "aggre_label": np.where(rng.random(N) < 0.1, rng.integers(0, 10, N), clean),
        "worse_label": np.where(rng.random(N) < 0.4, rng.integers(0, 10, N), clean).astype(np.int32),
        "random_label1": np.where(rng.random(N) < 0.17, rng.integers(0, 10, N), clean).astype(np.uint8),
    }
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save(arrays, path)
    features = datasets.Features({"label": datasets.ClassLabel(num_classes=10)})
    return datasets.Dataset.from_dict({"label": clean}, features=features), path, arrays


def test_load_returns_each_array(cifar):
    _, path, arrays = cifar
    for key, values in arrays.items():
        loaded = load_cifar_n_labels(path, key)
        assert loaded.dtype == np.int64
        np.testing.assert_array_equal(loaded, values)


def test_attach_sets_noisy_and_clean_columns(cifar):
    dataset, path, arrays = cifar
    noisy = attach_human_noise(dataset, path, "worse_label")
    np.testing.assert_array_equal(noisy["label"][:], arrays["worse_label"])
    np.testing.assert_array_equal(noisy["clean_label"][:], dataset["label"][:])
    assert noisy.features["label"] == noisy.features["clean_label"] == dataset.features["label"]
    again = attach_human_noise(noisy, path, "random_label1")  # an existing clean column is kept
    np.testing.assert_array_equal(again["label"][:], arrays["random_label1"])
    np.testing.assert_array_equal(again["clean_label"][:], dataset["label"][:])


def test_unknown_key_and_length_mismatch(cifar):
    dataset, path, _ = cifar
    with pytest.raises(ValueError, match=r"Key 'noisy_label' not in .*available keys: \['aggre_label', 'clean_label'"):
        load_cifar_n_labels(path, "noisy_label")
    with pytest.raises(ValueError, match=f"has {N} labels .* dataset has {N - 1} rows"):
        attach_human_noise(dataset.select(range(N - 1)), path)


def test_clean_label_disagreement_warns_and_keeps_dataset_labels(cifar):
    dataset, path, arrays = cifar
    shuffled = dataset.shuffle(seed=0)
    with pytest.warns(UserWarning, match="differ from the file's 'clean_label'"):
        noisy = attach_human_noise(shuffled, path)
    np.testing.assert_array_equal(noisy["clean_label"][:], shuffled["label"][:])
    np.testing.assert_array_equal(noisy["label"][:], arrays["aggre_label"])


def test_file_written_with_numpy_1_names_loads(cifar, tmp_path):
    """The published files reference numpy.core.multiarray._reconstruct (numpy 1.x); simulate one."""
    _, path, arrays = cifar
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    pickled = next(name for name in members if name.endswith("data.pkl"))
    assert b"numpy._core.multiarray" in members[pickled]
    members[pickled] = members[pickled].replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    old = tmp_path / "old.pt"
    with zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    np.testing.assert_array_equal(load_cifar_n_labels(old, "aggre_label"), arrays["aggre_label"])


class _WritesAFile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return open, (str(self.target), "w")  # unpickling this creates the file


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"aggre_label": np.zeros(3, dtype=np.int64), "payload": _WritesAFile(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match="Refusing to load"):
        load_cifar_n_labels(path, "aggre_label")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: plain unpickling runs it
    assert marker.exists()
