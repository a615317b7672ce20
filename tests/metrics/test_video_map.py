"""Tube linking, spatio-temporal IoU and video-mAP on constructed tubes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from restaurant_action.metrics import ActionTube, VideoMAP, link_tubes, spatiotemporal_iou


def moving_box(frame: int, x0: float = 10.0, y0: float = 10.0, speed: float = 2.0) -> list[float]:
    return [x0 + speed * frame, y0, x0 + 40 + speed * frame, y0 + 70]


def tube(frames, x0=10.0, label=0, score=1.0, video=0, y0=10.0) -> ActionTube:
    frames = list(frames)
    return ActionTube(label, frames, [moving_box(f, x0, y0) for f in frames], [score] * len(frames), video)


def test_linking_follows_two_people_and_bridges_short_gaps():
    frames, boxes, scores, labels = [], [], [], []
    for f in range(12):
        for x0, score in ((10.0, 0.9), (200.0, 0.6)):
            if x0 == 10.0 and f in (4, 5):  # a 2-frame gap in the first person's detections
                continue
            frames.append(f), boxes.append(moving_box(f, x0)), scores.append(score), labels.append(0)
    tubes = link_tubes(frames, boxes, scores, labels, max_gap=2)
    assert [(t.start, t.end, len(t.frames)) for t in tubes] == [(0, 11, 10), (0, 11, 12)]
    assert tubes[0].score == pytest.approx(0.9) and tubes[1].score == pytest.approx(0.6)
    assert np.allclose(tubes[1].boxes[:, 0], 200.0 + 2.0 * np.arange(12))
    split = link_tubes(frames, boxes, scores, labels, max_gap=1)
    assert sorted((t.start, t.end) for t in split) == [(0, 3), (0, 11), (6, 11)]


def test_linking_takes_the_best_scoring_overlapping_box_and_keeps_classes_apart():
    frames = [0, 1, 1, 1]
    boxes = [moving_box(0), moving_box(1), moving_box(1, x0=12.0), moving_box(1)]
    scores = [0.5, 0.4, 0.8, 0.99]
    labels = [0, 0, 0, 1]
    tubes = link_tubes(frames, boxes, scores, labels)
    by_class = {(t.label, t.start): t for t in tubes}
    assert len(tubes) == 3
    linked = by_class[(0, 0)]
    assert linked.scores.tolist() == pytest.approx([0.5, 0.8])  # the 0.8 box, not the 0.4 one
    assert by_class[(0, 1)].scores.tolist() == pytest.approx([0.4])
    assert by_class[(1, 1)].scores.tolist() == pytest.approx([0.99])


def test_spatiotemporal_iou_known_values():
    assert spatiotemporal_iou(tube(range(10)), tube(range(10))) == pytest.approx(1.0)
    assert spatiotemporal_iou(tube(range(10)), tube(range(5, 15))) == pytest.approx(5 / 15)
    # half-overlapping boxes on every frame: box IoU 1/3
    assert spatiotemporal_iou(tube(range(10), x0=30.0), tube(range(10))) == pytest.approx(1 / 3)
    # detected tube lacks frames 3 and 4 of the ground truth: they count as IoU 0
    assert spatiotemporal_iou(tube([0, 1, 2, 5, 6, 7, 8, 9]), tube(range(10))) == pytest.approx(0.8)
    assert spatiotemporal_iou(tube(range(10)), tube(range(20, 30))) == 0.0


def test_action_tube_checks_its_fields():
    with pytest.raises(ValueError, match="ascending"):
        ActionTube(0, [3, 2], [[0, 0, 1, 1], [0, 0, 1, 1]])
    with pytest.raises(ValueError, match="one box and score per frame"):
        ActionTube(0, [1, 2], [[0, 0, 1, 1]])


def feed(metric: VideoMAP, videos: dict[int, dict[int, tuple[list, list]]]) -> None:
    """``videos[v][f] = (detections [(box, score, label)], truths [(box, label, track)])``, fed in batches of 5 frames."""
    frames = [(v, f, content) for v, per_frame in videos.items() for f, content in sorted(per_frame.items())]
    for start in range(0, len(frames), 5):
        batch = frames[start : start + 5]
        preds = [
            {
                "boxes": torch.tensor([d[0] for d in dets], dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor([d[1] for d in dets], dtype=torch.float32),
                "labels": torch.tensor([d[2] for d in dets], dtype=torch.int64),
            }
            for _, _, (dets, _) in batch
        ]
        targets = [
            {
                "boxes": torch.tensor([t[0] for t in truths], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([t[1] for t in truths], dtype=torch.int64),
                "tracks": torch.tensor([t[2] for t in truths], dtype=torch.int64),
            }
            for _, _, (_, truths) in batch
        ]
        metric.update(preds, targets, [v for v, _, _ in batch], [f for _, f, _ in batch])


def test_video_map_ranks_tubes_across_videos():
    # class 0: one true tube per video; video 1 also holds a confident false tube elsewhere
    videos = {v: {f: ([], [(moving_box(f), 0, 1)]) for f in range(20)} for v in (0, 1)}
    for f in range(20):
        videos[0][f][0].append((moving_box(f), 0.9, 0))
        videos[1][f][0].extend([(moving_box(f, y0=300.0), 0.95, 0), (moving_box(f), 0.5, 0)])
    metric = VideoMAP(num_classes=2)
    feed(metric, videos)
    result = metric.compute()
    # ranking FP (0.95), TP (0.9), TP (0.5) of 2: precision 0, 1/2, 2/3 -> AP = 1/2 * 2/3 + 1/2 * 2/3
    for key in ("map", "map_10", "map_20", "map_50"):
        assert result[key].item() == pytest.approx(2 / 3)
    assert math.isnan(result["ap_per_class"][1].item())
    assert result["num_ground_truth_tubes_per_class"].tolist() == [2, 0]
    assert result["num_tubes_per_class"].tolist() == [3, 0]
    assert [(t.video, t.start, t.end) for t in metric.tubes()] == [(0, 0, 19), (1, 0, 19), (1, 0, 19)]


def test_short_tube_passes_low_thresholds_only():
    # detections cover 6 of the 20 ground-truth frames: ST-IoU 0.3
    videos = {0: {f: ([(moving_box(f), 0.8, 1)] if f < 6 else [], [(moving_box(f), 1, 4)]) for f in range(20)}}
    metric = VideoMAP(num_classes=2, iou_thresholds=[0.1, 0.2, 0.5])
    feed(metric, videos)
    result = metric.compute()
    assert result["map_10"].item() == 1.0 and result["map_20"].item() == 1.0 and result["map_50"].item() == 0.0
    assert result["map"].item() == pytest.approx(2 / 3)


def test_ground_truth_tracks_split_at_long_gaps():
    truths = {f: ([], [(moving_box(f), 0, 3)]) for f in [*range(0, 5), *range(30, 35)]}
    metric = VideoMAP(num_classes=1, max_gap=15)
    feed(metric, {0: truths})
    assert [(t.start, t.end) for t in metric.ground_truth_tubes()] == [(0, 4), (30, 34)]
    bridged = VideoMAP(num_classes=1, max_gap=25)
    feed(bridged, {0: truths})
    assert [(t.start, t.end) for t in bridged.ground_truth_tubes()] == [(0, 34)]


def test_update_checks_ids_and_tracks():
    preds = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}]
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]]), "labels": torch.tensor([0]), "tracks": torch.tensor([1])}]
    with pytest.raises(ValueError, match="one entry per frame"):
        VideoMAP(1).update(preds, targets, [0, 1], [0])
    with pytest.raises(ValueError, match=r"targets\[0\] has no 'tracks'"):
        VideoMAP(1).update(preds, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}], [0], [0])
