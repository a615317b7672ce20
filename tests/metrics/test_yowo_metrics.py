"""YOWO's localization recall and classification accuracy against a port of YOWO's test loop."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import Tensor

from restaurant_action.metrics import ClassificationAccuracy, LocalizationRecall


def _iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def yowo_reference(preds, targets, score_threshold=0.005, iou_threshold=0.5):
    """YOWO's ``test_ucf24_jhmdb21`` loop: boxes in NMS order (by score), strict comparisons."""
    total = localized = correct = 0
    for p, t in zip(preds, targets):
        order = sorted(range(len(p["scores"])), key=lambda j: -float(p["scores"][j]))
        boxes = [(p["boxes"][j].tolist(), int(p["labels"][j])) for j in order if float(p["scores"][j]) > score_threshold]
        for truth, label in zip(t["boxes"].tolist(), t["labels"].tolist()):
            total += 1
            best_iou, best_label = 0.0, -1
            for box, box_label in boxes:
                iou = _iou(truth, box)
                if iou > best_iou:
                    best_iou, best_label = iou, box_label
            if best_iou > iou_threshold:
                localized += 1
                correct += best_label == label
    return localized / total, correct / localized


@pytest.mark.parametrize("seed", range(10))
def test_equal_to_yowo_loop(seed, random_case):
    preds, targets = random_case(seed, num_frames=30, max_dets=10, tied_scores=seed % 2 == 0)
    recall, accuracy = LocalizationRecall(5), ClassificationAccuracy(5)
    for start in range(0, 30, 8):
        recall.update(preds[start : start + 8], targets[start : start + 8])
        accuracy.update(preds[start : start + 8], targets[start : start + 8])
    expected_recall, expected_accuracy = yowo_reference(preds, targets)
    assert recall.compute().item() == pytest.approx(expected_recall, abs=1e-6)
    assert accuracy.compute().item() == pytest.approx(expected_accuracy, abs=1e-6)
    higher = LocalizationRecall(5, score_threshold=0.6)
    higher.update(preds, targets)
    assert higher.compute().item() == pytest.approx(yowo_reference(preds, targets, score_threshold=0.6)[0], abs=1e-6)


def test_hand_example_with_strict_thresholds():
    truth = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 110.0], [200.0, 200.0, 210.0, 210.0], [300.0, 0.0, 310.0, 10.0]])
    preds = [
        {
            "boxes": torch.tensor(
                [
                    [0.0, 0.0, 10.0, 5.0],  # IoU exactly 0.5 with box 0: not localized (YOWO compares >)
                    [100.0, 100.0, 110.0, 109.0],  # IoU 0.9 with box 1, wrong class
                    [100.0, 100.0, 110.0, 110.0],  # IoU 1 with box 1, score at the threshold: ignored
                    [200.0, 200.0, 210.0, 209.0],  # IoU 0.9 with box 2, right class, any class counts
                    [300.0, 0.0, 310.0, 9.0],  # box 3: equal IoU, lower score, right class
                    [300.0, 1.0, 310.0, 10.0],  # box 3: equal IoU, higher score, wrong class -> best
                ]
            ),
            "scores": torch.tensor([0.9, 0.3, 0.005, 0.8, 0.4, 0.7]),
            "labels": torch.tensor([0, 2, 1, 2, 3, 0]),
        }
    ]
    targets = [{"boxes": truth, "labels": torch.tensor([0, 1, 2, 3])}]
    recall, accuracy = LocalizationRecall(4), ClassificationAccuracy(4)
    recall.update(preds, targets)
    accuracy.update(preds, targets)
    assert recall.compute().item() == pytest.approx(3 / 4)
    assert recall.per_class().tolist()[1:] == [1.0, 1.0, 1.0] and recall.per_class()[0].item() == 0.0
    assert accuracy.compute().item() == pytest.approx(1 / 3)
    confusion = accuracy.confusion_matrix()
    assert confusion[1, 2] == 1 and confusion[2, 2] == 1 and confusion[3, 0] == 1 and confusion.sum() == 3


def test_ignored_ground_truth_is_left_out_and_empty_gives_nan():
    recall = LocalizationRecall(2)
    recall.update(
        [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}],
        [{"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]), "labels": torch.tensor([1]), "difficult": torch.tensor([1])}],
    )
    assert math.isnan(recall.compute().item())
    accuracy = ClassificationAccuracy(2)
    accuracy.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])
    assert math.isnan(accuracy.compute().item())


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"preds\[0\]\['scores'\]\[0\].*not a finite"):
        LocalizationRecall(2).update(
            [{"boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]]), "scores": torch.tensor([float("nan")]), "labels": torch.tensor([0])}],
            [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}],
        )
    with pytest.raises(ValueError, match="one entry per frame"):
        ClassificationAccuracy(2).update([], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])


def _jittered(preds: list[dict]) -> list[dict]:
    """The same frames' detections as another batch composition gives them: slightly different."""
    return [{**p, "boxes": p["boxes"] + 1.5, "scores": p["scores"] * 0.9 + 0.05} for p in preds]


def _measures(metric_class, *updates) -> tuple[Tensor, Tensor]:
    """``compute()`` and ``per_class()``/``confusion_matrix()`` of a metric fed ``updates``."""
    metric = metric_class(5)
    for update in updates:
        metric.update(*update[:2], **update[2])
    detail = metric.per_class() if metric_class is LocalizationRecall else metric.confusion_matrix()
    return metric.compute(), detail


@pytest.mark.parametrize("metric_class", [LocalizationRecall, ClassificationAccuracy])
def test_a_frame_submitted_again_with_ids_counts_once(metric_class, random_case, caplog):
    preds, targets = random_case(4, num_frames=20, max_dets=10, crowd=True)
    ids = {"video_ids": [3] * 10 + [4] * 10, "frame_indices": torch.arange(20) % 10}
    repeat = {"video_ids": ids["video_ids"][5:14], "frame_indices": ids["frame_indices"][5:14]}
    once = _measures(metric_class, (preds, targets, ids))
    with caplog.at_level(logging.DEBUG, logger="restaurant_action.metrics._repeats"):
        twice = _measures(metric_class, (preds, targets, ids), (_jittered(preds[5:14]), targets[5:14], repeat))
    assert f"{metric_class.__name__}: dropped 9 repeated submissions of 20 frames" in caplog.text
    torch.testing.assert_close(twice, once, equal_nan=True)
    # the jitter moves results: without ids the repeats count twice, as before
    without_ids = _measures(metric_class, (preds, targets, {}), (_jittered(preds[5:14]), targets[5:14], {}))
    assert not torch.equal(without_ids[1], once[1])
    # ids change nothing when no frame repeats
    torch.testing.assert_close(_measures(metric_class, (preds, targets, {})), once, equal_nan=True)


def test_frame_ids_are_checked():
    preds, targets = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}]
    with pytest.raises(ValueError, match="video_ids and frame_indices must be given together"):
        LocalizationRecall(2).update(preds, targets, video_ids=[0])
    with pytest.raises(ValueError, match=r"video_ids \(1\) and frame_indices \(2\) must give one entry per frame \(1\)"):
        ClassificationAccuracy(2).update(preds, targets, video_ids=[0], frame_indices=[0, 1])
    metric = ClassificationAccuracy(2)
    metric.update(preds, targets, video_ids=[0], frame_indices=[0])
    with pytest.raises(ValueError, match="ClassificationAccuracy.update was called with video_ids/frame_indices before"):
        metric.update(preds, targets)
