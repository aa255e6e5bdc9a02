import numpy as np
import torch

from hf_lnl.tracking import WrongEventTracker, first_occurrence, flag_ordered_scores, select_base_epoch


def test_counts_once_per_epoch_and_view_and_skips_ignored_labels():
    tracker = WrongEventTracker(num_samples=5, num_views=2)
    tracker.start_epoch()
    index = torch.tensor([0, 1, 2, 0, 4])  # sample 0 repeated (padding of the last batch)
    predictions = torch.tensor([1, 1, 0, 1, 3])
    labels = torch.tensor([0, 1, -100, 0, 2])
    tracker.update(index, predictions, labels, view=0)
    tracker.update(index, predictions, labels, view=0)  # same epoch and view: nothing new
    tracker.update(index, predictions, labels, view=1)  # the second view counts once more
    tracker.end_epoch()
    assert tracker.counts().tolist() == [2, 0, 0, 0, 2]
    assert tracker.given_labels().tolist() == [0, 1, -100, -100, 2]
    tracker.start_epoch()
    tracker.update(index, predictions, labels, view=0)
    tracker.end_epoch()
    assert tracker.counts().tolist() == [3, 0, 0, 0, 3]


def test_prediction_changes_and_last_predictions():
    tracker = WrongEventTracker(num_samples=3, num_views=1)
    labels = torch.tensor([0, 0, 0])
    for predictions in ([0, 1, 2], [0, 2, 2], [1, 0, 2]):
        tracker.start_epoch()
        tracker.update(torch.tensor([0, 1, 2]), torch.tensor(predictions), labels)
        tracker.end_epoch()
    assert tracker.prediction_changes == [1, 2]
    assert tracker.last_predictions().tolist() == [1, 0, 2]


def test_start_epoch_is_idempotent_while_open():
    tracker = WrongEventTracker(num_samples=2, num_views=1)
    tracker.start_epoch()
    tracker.update(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]))
    tracker.start_epoch()  # e.g. resumed mid-epoch: must not forget sample 0 was counted
    tracker.update(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]))
    assert tracker.counts().tolist() == [1, 0]


def test_state_round_trip_and_size():
    tracker = WrongEventTracker(num_samples=4, num_views=2)
    tracker.start_epoch()
    tracker.update(torch.tensor([0, 3]), torch.tensor([2, 1]), torch.tensor([1, 1]))
    state, metadata = tracker.state_dict(), tracker.metadata()
    assert sum(t.element_size() for t in state.values()) <= 16
    restored = WrongEventTracker(num_samples=4, num_views=2)
    restored.load_state_dict(state, metadata)
    assert restored.counts().tolist() == tracker.counts().tolist()
    assert restored.epoch_open
    restored.update(torch.tensor([0]), torch.tensor([2]), torch.tensor([1]))  # already counted this epoch
    assert restored.counts().tolist() == [1, 0, 0, 0]


def testfirst_occurrence():
    assert first_occurrence(torch.tensor([3, 1, 3, 2, 1])).tolist() == [True, True, False, True, False]


def test_select_base_epoch():
    assert select_base_epoch([50, 30, 35, 20]) == 3
    assert select_base_epoch([50, 30, 20]) == 4
    assert select_base_epoch([10]) == 2
    assert select_base_epoch([10, 10]) == 2


def test_flag_ordered_scores_keep_the_decision_and_rank_by_counts():
    flagged = np.array([True, True, False, False, True, False])
    counts = np.array([2, 9, 0, 8, 0, 9])  # a flagged sample with no wrong events, unflagged ones with many
    scores = flag_ordered_scores(flagged, counts, max_wrong_events=9, threshold=0.5)
    np.testing.assert_array_equal(scores > 0.5, flagged)
    assert scores.min() >= 0.0 and scores.max() == 1.0
    np.testing.assert_array_equal(np.argsort(scores), [2, 3, 5, 4, 0, 1])  # unflagged by count, then flagged by count
    np.testing.assert_array_equal(flag_ordered_scores(flagged, counts, 9, threshold=0.0) > 0.0, flagged)
    assert flag_ordered_scores(np.array([True]), np.array([50]), 9, 0.5)[0] == 1.0  # counts past the maximum clip
