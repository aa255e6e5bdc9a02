"""Label correction (`hf_lnl.correction`): the per-sample prediction memory and the pseudo-label loss, and CLID-MU's
use of them (IDO's is in test_ido.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_METHOD_SETTINGS, text_dataset, tiny_bert

from hf_lnl import NoisyLabelConfig, NoisyLabelTrainer
from hf_lnl.correction import NOT_SEEN, PredictionMemory, SoftTargetMemory, pseudo_label_loss
from hf_lnl.methods.clid_mu import split_weights


def test_soft_target_memory_keeps_each_samples_top_classes_renormalised():
    memory = SoftTargetMemory(num_samples=3, num_classes=4, device="cpu", top_k=2)
    assert memory.targets(torch.tensor([0])).sum() == 0  # never seen: no target
    memory.update(torch.tensor([1, 0]), torch.tensor([[0.0, 2.0, 1.0, -5.0], [3.0, 0.0, 0.0, 0.0]]))
    memory.update(torch.tensor([0]), torch.tensor([[0.0, 0.0, 0.0, 4.0]]))  # a later visit replaces the earlier one
    targets = memory.targets(torch.tensor([1, 0]))
    torch.testing.assert_close(targets.sum(-1), torch.ones(2))
    p = torch.softmax(torch.tensor([2.0, 1.0]), -1)  # the two most probable classes, renormalised
    torch.testing.assert_close(targets[0], torch.tensor([0.0, p[0], p[1], 0.0]))
    assert targets[1].argmax() == 3
    predicted, confidence = memory.predictions()
    assert predicted[:2].tolist() == [3, 1] and confidence[1] == pytest.approx(torch.softmax(
        torch.tensor([0.0, 2.0, 1.0, -5.0]), -1)[1].item())
    restored = SoftTargetMemory(num_samples=3, num_classes=4, device="cpu", top_k=2)
    restored.load_state_dict(memory.state_dict("x_"), "x_")
    torch.testing.assert_close(restored.targets(torch.arange(3)), memory.targets(torch.arange(3)))


def test_memory_keeps_each_samples_latest_prediction_and_confidence():
    memory = PredictionMemory(num_samples=3, device="cpu")
    assert memory.prediction.tolist() == [NOT_SEEN] * 3 and memory.confidence.tolist() == [0.0] * 3
    memory.update(torch.tensor([2, 0]), torch.tensor([[0.0, 5.0], [3.0, 0.0]]))
    memory.update(torch.tensor([2]), torch.tensor([[1.0, 0.0]]))  # a later visit replaces the earlier one
    assert memory.prediction.tolist() == [0, NOT_SEEN, 0]
    torch.testing.assert_close(memory.confidence[2], F.softmax(torch.tensor([1.0, 0.0]), -1)[0])
    prediction, confidence = memory.lookup(torch.tensor([0, 1]))
    assert prediction.tolist() == [0, NOT_SEEN] and confidence[1] == 0


def test_only_flagged_confident_seen_samples_are_corrected():
    memory = PredictionMemory(num_samples=5, device="cpu")
    memory.update(torch.tensor([0, 1, 2, 4]), torch.tensor([[9.0, 0.0], [9.0, 0.0], [0.1, 0.0], [9.0, 0.0]]))
    labels = np.array([1, 1, 1, 1, -100])
    flagged = np.array([True, False, True, True, True])
    # 0: corrected; 1: not flagged; 2: not confident; 3: never seen; 4: label ignored
    assert memory.corrected_labels(labels, flagged, threshold=0.9).tolist() == [0, 1, 1, 1, -100]
    assert memory.corrected_labels(labels, flagged, threshold=0.0).tolist() == [0, 1, 0, 1, -100]


def test_pseudo_label_loss_weights_by_p_noisy_and_gates_by_confidence():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 0.0]], requires_grad=True)
    loss, weight = pseudo_label_loss(
        logits, torch.tensor([0, 0, NOT_SEEN]), torch.tensor([0.99, 0.5, 1.0]), torch.tensor([0.5, 1.0, 1.0]), 0.9
    )
    assert weight.tolist() == [0.5, 0.0, 0.0]
    torch.testing.assert_close(loss[0].detach(), 0.5 * F.cross_entropy(logits[:1], torch.tensor([0])).detach())
    loss.sum().backward()
    assert logits.grad[0].abs().sum() > 0 and logits.grad[1:].abs().sum() == 0


def test_clid_mu_corrects_from_the_previous_visit_once_samples_are_flagged(tmp_path):
    data = text_dataset(45, seed=3)
    noisy = np.asarray(data["label"][:])
    noisy[:10] = (noisy[:10] + 1) % 4
    data = data.remove_columns("label").add_column("label", noisy.tolist())
    args = NoisyLabelConfig(
        str(tmp_path), lnl_method="clid_mu", num_train_epochs=4, per_device_train_batch_size=8, learning_rate=1e-3,
        report_to=[], use_cpu=True, disable_tqdm=True, logging_steps=1, seed=0, save_strategy="no",
        clid_correction="pseudo_label", clid_pseudo_label_threshold=0.0, **TINY_METHOD_SETTINGS["clid_mu"],
    )  # fmt: skip
    trainer = NoisyLabelTrainer(model=tiny_bert(), args=args, train_dataset=data)
    # A tiny model's meta weights never separate (contrast < 0.2), so its noise scores flag nothing; score as a
    # weighting that has switched on does (contrast 1: the low-weight posterior itself).
    method = trainer.method
    method.noise_scores = lambda: split_weights(method.meta_weight[:-1].float().cpu().numpy())[0]
    trainer.train()
    history = trainer.state.log_history
    corrected = [(entry["epoch"], entry["clid_corrected"]) for entry in history if "clid_corrected" in entry]
    assert all(share == 0 for epoch, share in corrected if epoch <= 1)  # nothing flagged before the first epoch end
    assert any(share > 0 for epoch, share in corrected if epoch > 1)
    report = trainer.noise_report()
    flagged = np.asarray(report["noise_score"][:]) > 0.5
    changed = np.asarray(report["corrected_label"][:]) != np.asarray(report["label"][:])
    assert changed.any() and not (changed & ~flagged).any()
    with pytest.raises(ValueError, match="clid_correction='soft'"):
        NoisyLabelConfig(str(tmp_path), lnl_method="clid_mu", clid_correction="soft")
