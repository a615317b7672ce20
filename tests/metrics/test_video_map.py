"""Tube linking, spatio-temporal IoU and video-mAP on constructed tubes with known answers."""

from __future__ import annotations

import logging
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


def _with_tracks(targets: list[dict]) -> list[dict]:
    return [{**t, "tracks": torch.arange(len(t["labels"]))} for t in targets]


def _perturbed(preds: list[dict], seed: int) -> list[dict]:
    """Copies of ``preds`` with scores moved by about 1e-4, as a re-run in another batch gives."""
    g = torch.Generator().manual_seed(seed)
    return [{**p, "scores": (p["scores"] + torch.randn(p["scores"].shape, generator=g) * 1e-4).clamp(0, 1)} for p in preds]


def _assert_same_result(actual: VideoMAP, expected: VideoMAP) -> None:
    got, want = actual.compute(), expected.compute()
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], equal_nan=True, rtol=0, atol=0, msg=key)
    for got_tubes, want_tubes in ((actual.tubes(), expected.tubes()), (actual.ground_truth_tubes(), expected.ground_truth_tubes())):
        assert len(got_tubes) == len(want_tubes)
        for a, b in zip(got_tubes, want_tubes):
            assert (a.video, a.label) == (b.video, b.label)
            assert np.array_equal(a.frames, b.frames) and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)


@pytest.fixture()
def two_videos(random_case):
    """24 random frames as frames 0-11 of videos 3 and 7: ``(preds, targets, video_ids, frame_indices)``."""
    preds, targets = random_case(4, num_frames=24, tied_scores=False)
    return preds, _with_tracks(targets), [3] * 12 + [7] * 12, list(range(12)) * 2


@pytest.mark.parametrize("perturb", [False, True])
def test_a_batch_submitted_twice_counts_once(two_videos, perturb, caplog):
    preds, targets, videos, frames = two_videos
    once = VideoMAP(5)
    once.update(preds, targets, videos, frames)
    twice = VideoMAP(5)
    twice.update(preds, targets, videos, frames)
    with caplog.at_level(logging.DEBUG, logger="restaurant_action.metrics.video_map"):
        twice.update(_perturbed(preds, 1) if perturb else preds, targets, videos, frames)
        _assert_same_result(twice, once)
    assert "dropped 24 repeated" in caplog.text
    # sampler-style padding: a few frames again, at the end, in another batch composition
    padded = VideoMAP(5)
    padded.update(preds[:16], targets[:16], videos[:16], frames[:16])
    padded.update(preds[16:], targets[16:], videos[16:], frames[16:])
    padded.update(_perturbed(preds[10:14], 2) if perturb else preds[10:14], targets[10:14], videos[10:14], frames[10:14])
    _assert_same_result(padded, once)
    # reset clears the frames seen: after it, a single submission counts again
    twice.reset()
    twice.update(preds, targets, videos, frames)
    _assert_same_result(twice, once)


def test_frames_repeated_within_one_batch_count_once(two_videos):
    preds, targets, videos, frames = two_videos
    once = VideoMAP(5)
    once.update(preds, targets, videos, frames)
    repeats = [0, 5, 13, 5]
    batch = VideoMAP(5)
    batch.update(
        preds + _perturbed([preds[i] for i in repeats], 3),
        targets + [targets[i] for i in repeats],
        videos + [videos[i] for i in repeats],
        frames + [frames[i] for i in repeats],
    )
    _assert_same_result(batch, once)


def test_a_repeated_frame_without_detections_counts_once():
    # frame 4 has ground truth only; it is submitted again, once as it was and once with a
    # detection (a copy that differs): the first submission is kept, the others are dropped
    videos = {0: {f: ([(moving_box(f), 0.8, 0)] if f != 4 else [], [(moving_box(f), 0, 1)]) for f in range(10)}}
    once = VideoMAP(1)
    feed(once, videos)
    repeated = VideoMAP(1)
    feed(repeated, videos)
    feed(repeated, {0: {4: ([], [(moving_box(4), 0, 1)])}})
    feed(repeated, {0: {4: ([(moving_box(4), 0.9, 0)], [(moving_box(4), 0, 1)])}})
    _assert_same_result(repeated, once)
    assert [len(t.frames) for t in repeated.ground_truth_tubes()] == [10]
    assert [t.frames.tolist() for t in repeated.tubes()] == [[0, 1, 2, 3, 5, 6, 7, 8, 9]]
