"""FrameMAP: hand-worked VOC numbers, an independent VOC reference, equality with torchmetrics."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest
import torch
from torchmetrics.detection import MeanAveragePrecision

from restaurant_action.metrics import FrameMAP


def frame(boxes, labels, scores=None, **extra):
    """One frame's dict from plain lists."""
    item = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64)}
    if scores is not None:
        item["scores"] = torch.tensor(scores, dtype=torch.float32)
    item.update({key: torch.tensor(value) for key, value in extra.items()})
    return item


def hand_case():
    """Two frames, three classes; class 0's ranking is TP, FP (duplicate), FP, TP, TP of 3 positives."""
    preds = [
        frame([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0, 0, 0, 2], [0.9, 0.8, 0.6, 0.4]),
        frame([[100, 100, 110, 110], [0, 0, 10, 12]], [0, 0], [0.7, 0.5]),
    ]
    targets = [
        frame([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0]),
        frame([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 1]),
    ]
    return preds, targets


def test_voc_hand_worked_example():
    preds, targets = hand_case()
    metric = FrameMAP(num_classes=3, interpolation="voc")
    metric.update(preds, targets)
    result = metric.compute()
    # class 0: recall 1/3 1/3 1/3 2/3 1, precision 1 1/2 1/3 1/2 3/5 -> envelope 1 .6 .6 .6 .6
    expected_class0 = 1 / 3 * 1 + 1 / 3 * 0.6 + 1 / 3 * 0.6
    assert result["ap_per_class"][0].item() == pytest.approx(expected_class0, abs=1e-6)
    assert result["ap_per_class"][1].item() == 0.0  # ground truth, no detection
    assert math.isnan(result["ap_per_class"][2].item())  # detection, no ground truth: excluded
    assert result["map"].item() == pytest.approx(expected_class0 / 2, abs=1e-6)
    assert result["map_50"].item() == pytest.approx(expected_class0 / 2, abs=1e-6)
    # all class-0 detections have score >= 0.5: 3 TP of 5
    assert result["precision_per_class"][0].item() == pytest.approx(0.6)
    assert result["recall_per_class"][0].item() == pytest.approx(1.0)
    assert result["precision_per_class"][1].item() == 0.0 and result["recall_per_class"][1].item() == 0.0
    # best F1 over thresholds 0.9 .8 .7 .6 .5: F1 .5 .4 .333 .571 .75 -> at 0.5
    assert result["best_f1_per_class"][0].item() == pytest.approx(0.75)
    assert result["best_f1_precision_per_class"][0].item() == pytest.approx(0.6)
    assert result["best_f1_recall_per_class"][0].item() == pytest.approx(1.0)
    assert result["best_f1_score_threshold_per_class"][0].item() == pytest.approx(0.5)
    assert result["num_ground_truths_per_class"].tolist() == [3, 1, 0]
    assert result["num_detections_per_class"].tolist() == [5, 0, 1]


def test_score_threshold_moves_the_operating_point():
    preds, targets = hand_case()
    metric = FrameMAP(num_classes=3, score_threshold=0.65)
    metric.update(preds, targets)
    result = metric.compute()
    assert result["precision_per_class"][0].item() == pytest.approx(1 / 3)
    assert result["recall_per_class"][0].item() == pytest.approx(1 / 3)
    assert result["precision"].item() == pytest.approx((1 / 3 + 0) / 2)


def test_voc_and_coco_matching_differ_where_the_best_ground_truth_is_taken():
    # detection b's best ground truth (IoU .905) is taken by a; the other one overlaps .739
    preds = [frame([[0, 0, 10, 10], [0, 0.5, 10, 10.5]], [0, 0], [0.9, 0.8])]
    targets = [frame([[0, 0, 10, 10], [0, 2, 10, 12]], [0, 0])]
    voc, coco = FrameMAP(1, interpolation="voc"), FrameMAP(1, interpolation="coco101")
    for metric in (voc, coco):
        metric.update(preds, targets)
    assert voc.compute()["map"].item() == pytest.approx(0.5)  # TP, FP
    assert coco.compute()["map"].item() == pytest.approx(1.0)  # TP, TP


def test_iou_exactly_at_threshold_is_a_hit():
    preds = [frame([[0, 0, 10, 5]], [0], [0.9])]
    targets = [frame([[0, 0, 10, 10]], [0])]
    for interpolation in ("voc", "coco101"):
        metric = FrameMAP(1, interpolation=interpolation)
        metric.update(preds, targets)
        assert metric.compute()["map"].item() == pytest.approx(1.0)
        above = FrameMAP(1, iou_thresholds=0.51, interpolation=interpolation)
        above.update(preds, targets)
        assert above.compute()["map"].item() == 0.0


def _iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def voc_reference(preds, targets, num_classes, threshold=0.5):
    """The VOC devkit's per-class AP, written from its definition with plain loops."""
    result = []
    for c in range(num_classes):
        detections = [
            (score, f, box)
            for f, p in enumerate(preds)
            for box, score, label in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist())
            if label == c
        ]
        detections.sort(key=lambda d: -d[0])  # stable: ties keep frame order
        truths = {}
        for f, t in enumerate(targets):
            flags = t.get("difficult", torch.zeros(len(t["labels"]))).tolist()
            truths[f] = [(box, bool(flag)) for box, label, flag in zip(t["boxes"].tolist(), t["labels"].tolist(), flags) if label == c]
        positives = sum(not flag for boxes in truths.values() for _, flag in boxes)
        if positives == 0:
            result.append(math.nan)
            continue
        used = {f: [False] * len(boxes) for f, boxes in truths.items()}
        tp, fp = [], []
        for _, f, box in detections:
            best, best_j = -1.0, -1
            for j, (truth, _) in enumerate(truths[f]):
                overlap = _iou(box, truth)
                if overlap > best:
                    best, best_j = overlap, j
            if best >= threshold:
                if truths[f][best_j][1]:
                    tp.append(0), fp.append(0)
                elif not used[f][best_j]:
                    used[f][best_j] = True
                    tp.append(1), fp.append(0)
                else:
                    tp.append(0), fp.append(1)
            else:
                tp.append(0), fp.append(1)
        tp, fp = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
        recall = list(tp / positives)
        precision = list(tp / np.maximum(tp + fp, np.finfo(np.float64).eps))
        mrec, mpre = [0.0] + recall + [1.0], [0.0] + precision + [0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        result.append(sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i]))
    return result


@pytest.mark.parametrize("seed", range(12))
def test_voc_equals_independent_reference(seed, random_case):
    preds, targets = random_case(seed, tied_scores=seed % 2 == 0)
    if seed % 3 == 0:
        g = torch.Generator().manual_seed(seed)
        for target in targets:
            target["difficult"] = (torch.rand(len(target["labels"]), generator=g) < 0.25).long()
    for threshold in (0.5, 0.3):
        metric = FrameMAP(5, iou_thresholds=threshold, interpolation="voc")
        metric.update(preds[:10], targets[:10])
        metric.update(preds[10:], targets[10:])
        ours = metric.compute()["ap_per_class"].tolist()
        reference = voc_reference(preds, targets, 5, threshold)
        np.testing.assert_allclose(ours, reference, atol=1e-6, equal_nan=True)


def torchmetrics_ap(preds, targets, iou_thresholds=(0.5,), num_classes=5):
    """Per-class AP (NaN without ground truth) and mAP from torchmetrics' default backend."""
    reference = MeanAveragePrecision(iou_thresholds=list(iou_thresholds), class_metrics=True)
    reference.update(preds, targets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = reference.compute()
    per_class = np.full(num_classes, np.nan)
    for label, value in zip(np.atleast_1d(result["classes"].numpy()), np.atleast_1d(result["map_per_class"].numpy())):
        per_class[label] = value if value > -1 else np.nan
    return per_class, float(result["map"])


@pytest.mark.parametrize("seed", range(30))
def test_coco101_equals_torchmetrics(seed, random_case):
    preds, targets = random_case(seed, tied_scores=seed % 2 == 1, crowd=seed % 5 == 4)
    metric = FrameMAP(5, interpolation="coco101")
    for start in range(0, len(preds), 7):
        metric.update(preds[start : start + 7], targets[start : start + 7])
    result = metric.compute()
    per_class, mean_ap = torchmetrics_ap(preds, targets)
    np.testing.assert_allclose(result["ap_per_class"].numpy(), per_class, atol=1e-6, equal_nan=True)
    assert result["map"].item() == pytest.approx(mean_ap, abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_coco101_equals_torchmetrics_over_several_thresholds(seed, random_case):
    preds, targets = random_case(100 + seed)
    thresholds = [0.5, 0.75, 0.3]
    metric = FrameMAP(5, iou_thresholds=thresholds, interpolation="coco101")
    metric.update(preds, targets)
    result = metric.compute()
    per_class, mean_ap = torchmetrics_ap(preds, targets, thresholds)
    assert result["map"].item() == pytest.approx(mean_ap, abs=1e-6)
    np.testing.assert_allclose(result["ap_per_class"].numpy(), per_class, atol=1e-6, equal_nan=True)
    single = FrameMAP(5, iou_thresholds=0.75, interpolation="coco101")
    single.update(preds, targets)
    assert result["map_75"].item() == pytest.approx(single.compute()["map"].item(), abs=1e-7)


def test_coco101_caps_detections_per_frame_and_class_like_torchmetrics():
    g = torch.Generator().manual_seed(7)
    truth = torch.tensor([[10.0, 10.0, 60.0, 60.0]])
    boxes = truth + torch.randn(130, 4, generator=g) * 6
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    preds = [{"boxes": boxes, "scores": torch.rand(130, generator=g), "labels": torch.zeros(130, dtype=torch.int64)}]
    targets = [{"boxes": truth.repeat(3, 1) + torch.tensor([[0.0], [40.0], [80.0]]), "labels": torch.zeros(3, dtype=torch.int64)}]
    metric = FrameMAP(1, interpolation="coco101")
    metric.update(preds, targets)
    per_class, _ = torchmetrics_ap(preds, targets, num_classes=1)
    result = metric.compute()  # torchmetrics squeezes one-element results to 0-d
    assert result["ap_per_class"].item() == pytest.approx(per_class[0], abs=1e-6)
    assert result["num_detections_per_class"].item() == 100


def test_top_k_means_follow_the_given_ranking():
    preds, targets = hand_case()
    metric = FrameMAP(3, class_ranking=[1, 0, 2], top_k=[1, 2, 3])
    metric.update(preds, targets)
    result = metric.compute()
    ap = result["ap_per_class"]
    assert result["map_top1"].item() == pytest.approx(ap[1].item())
    assert result["map_top2"].item() == pytest.approx((ap[0].item() + ap[1].item()) / 2)
    assert result["map_top3"].item() == pytest.approx(result["map_top2"].item())  # class 2 has no ground truth
    assert result["recall_top1"].item() == pytest.approx(0.0)


def test_top_k_without_ranking_ranks_by_ground_truth_boxes():
    preds, targets = hand_case()
    metric = FrameMAP(3, top_k=[1])
    metric.update(preds, targets)
    result = metric.compute()
    assert result["map_top1"].item() == pytest.approx(result["ap_per_class"][0].item())


def test_precision_recall_curves_match_the_ranking():
    preds, targets = hand_case()
    metric = FrameMAP(3)
    metric.update(preds, targets)
    curves = metric.precision_recall_curves()
    assert sorted(curves) == [0, 1]
    precision, recall, scores = curves[0]
    np.testing.assert_allclose(precision.numpy(), [1, 1 / 2, 1 / 3, 1 / 2, 3 / 5])
    np.testing.assert_allclose(recall.numpy(), [1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(scores.numpy(), [0.9, 0.8, 0.7, 0.6, 0.5], rtol=1e-6)
    assert len(curves[1][0]) == 0


def test_merged_states_equal_one_metric_fed_everything(random_case):
    preds, targets = random_case(3, tied_scores=True)
    for interpolation in ("voc", "coco101"):
        first, second, whole = (FrameMAP(5, interpolation=interpolation) for _ in range(3))
        first.update(preds[:11], targets[:11])
        second.update(preds[11:], targets[11:])
        whole.update(preds[11:], targets[11:])
        whole.update(preds[:11], targets[:11])
        first.merge_state(second)  # incoming state first, as when ranks are concatenated
        merged, expected = first.compute(), whole.compute()
        for key in expected:
            torch.testing.assert_close(merged[key], expected[key], equal_nan=True)


def test_no_data_gives_nan():
    metric = FrameMAP(2)
    metric.update([frame([], [], [])], [frame([], [])])
    result = metric.compute()
    assert math.isnan(result["map"].item()) and math.isnan(result["map_top5"].item())


@pytest.mark.parametrize(
    ("preds", "targets", "message"),
    [
        ([frame([[0, 0, 1, 1]], [0], [0.5])], [], "one entry per frame"),
        ([frame([], [], []), frame([[5, 0, 1, 1]], [0], [0.5])], [frame([], []), frame([], [])], r"preds\[1\]\['boxes'\]\[0\].*x2 < x1"),
        ([frame([[0, 5, 1, 1]], [0], [0.5])], [frame([], [])], r"preds\[0\]\['boxes'\]\[0\].*y2 < y1"),
        ([frame([[0, 0, 1, 1], [0, 0, 2, 2]], [0, 1], [0.5, float("nan")])], [frame([], [])], r"preds\[0\]\['scores'\]\[1\].*not a finite"),
        ([frame([[0, 0, 1, 1]], [3], [0.5])], [frame([], [])], r"preds\[0\]\['labels'\]\[0\] = 3 is outside \[0, 3\)"),
        ([frame([], [], [])], [frame([[0, 0, 1, 1]], [-1])], r"targets\[0\]\['labels'\]\[0\] = -1"),
        ([frame([[0, 0, 1, 1]], [0], [0.5, 0.6])], [frame([], [])], r"preds\[0\]\['scores'\] must have shape \(1,\)"),
        ([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}], [frame([], [])], r"preds\[0\] has no 'scores'"),
        ([frame([[0, 0, 1, float("inf")]], [0], [0.5])], [frame([], [])], r"preds\[0\]\['boxes'\]\[0\].*non-finite"),
        ([frame([[0, 0, 1, 1]], [0], [0.5])], [{"boxes": torch.zeros(1, 3), "labels": torch.zeros(1)}], r"targets\[0\]\['boxes'\] must have shape \(K, 4\)"),
    ],
)
def test_bad_input_names_frame_and_field(preds, targets, message):
    with pytest.raises(ValueError, match=message):
        FrameMAP(3).update(preds, targets)


def test_bad_arguments():
    with pytest.raises(ValueError, match="interpolation"):
        FrameMAP(3, interpolation="coco")
    with pytest.raises(ValueError, match="iou_thresholds"):
        FrameMAP(3, iou_thresholds=[0.0])
    with pytest.raises(ValueError, match="class_ranking"):
        FrameMAP(3, class_ranking=[0, 5])


def _jittered(preds: list[dict]) -> list[dict]:
    """The same frames' detections as another batch composition gives them: slightly different."""
    return [{**p, "boxes": p["boxes"] + 0.5, "scores": (p["scores"] * 0.9 + 0.05)} for p in preds]


def test_a_frame_submitted_again_with_ids_counts_once(random_case, caplog):
    preds, targets = random_case(5, num_frames=12, tied_scores=True, crowd=True)
    videos, frames = [7] * 6 + [9] * 6, torch.arange(12) % 6
    for interpolation in ("voc", "coco101"):
        once, twice = FrameMAP(5, interpolation=interpolation), FrameMAP(5, interpolation=interpolation)
        once.update(preds, targets, videos, frames)
        twice.update(preds, targets, video_ids=videos, frame_indices=frames)
        with caplog.at_level(logging.DEBUG, logger="restaurant_action.metrics._repeats"):
            twice.update(_jittered(preds[3:8]), targets[3:8], video_ids=videos[3:8], frame_indices=frames[3:8])
            result = twice.compute()
        assert "FrameMAP: dropped 5 repeated submissions of 12 frames" in caplog.text
        expected = once.compute()
        for key in expected:
            torch.testing.assert_close(result[key], expected[key], equal_nan=True, msg=lambda m: f"{interpolation} {key}: {m}")
        curves, expected_curves = twice.precision_recall_curves(), once.precision_recall_curves()
        assert curves.keys() == expected_curves.keys()
        for label, curve in curves.items():
            for actual, wanted in zip(curve, expected_curves[label]):
                torch.testing.assert_close(actual, wanted)


def test_a_repeat_inside_one_batch_keeps_the_first_and_without_ids_counts_twice():
    preds, targets = hand_case()
    repeated_preds, repeated_targets = preds + [_jittered(preds)[0]], targets + [targets[0]]
    with_ids, without_ids, once = FrameMAP(3), FrameMAP(3), FrameMAP(3)
    with_ids.update(repeated_preds, repeated_targets, [0, 0, 0], [4, 5, 4])
    without_ids.update(repeated_preds, repeated_targets)
    once.update(preds, targets)
    assert with_ids.compute()["map"].item() == pytest.approx(once.compute()["map"].item())
    assert without_ids.compute()["num_ground_truths_per_class"].tolist() == [5, 1, 0]  # as before: counted twice
    assert with_ids.compute()["num_ground_truths_per_class"].tolist() == [3, 1, 0]


def test_frame_ids_are_checked():
    preds, targets = hand_case()
    with pytest.raises(ValueError, match="video_ids and frame_indices must be given together"):
        FrameMAP(3).update(preds, targets, video_ids=[0, 0])
    with pytest.raises(ValueError, match="video_ids and frame_indices must be given together"):
        FrameMAP(3).update(preds, targets, frame_indices=[0, 1])
    with pytest.raises(ValueError, match=r"video_ids \(3\) and frame_indices \(2\) must give one entry per frame \(2\)"):
        FrameMAP(3).update(preds, targets, video_ids=[0, 0, 1], frame_indices=[0, 1])
    metric = FrameMAP(3)
    metric.update(preds, targets)
    with pytest.raises(ValueError, match="called without video_ids/frame_indices before"):
        metric.update(preds, targets, video_ids=[0, 0], frame_indices=[0, 1])
    metric = FrameMAP(3)
    metric.update(preds, targets, video_ids=[0, 0], frame_indices=[0, 1])
    with pytest.raises(ValueError, match="called with video_ids/frame_indices before"):
        metric.update(preds, targets)
    metric.reset()
    metric.update(preds, targets)  # a reset starts afresh
    assert metric.compute()["num_ground_truths_per_class"].tolist() == [3, 1, 0]
