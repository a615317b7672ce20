"""Action-clip segmentation and the clip split."""

from __future__ import annotations

import numpy as np

from restaurant_action.data.annotations import ActionAnnotations, VideoInfo
from restaurant_action.data.clips import segment_clips, split_clips


def _annotations(frames_by_video: dict[str, list[int]], num_frames: int = 900) -> ActionAnnotations:
    videos = {v: VideoInfo(v, None, num_frames, 30.0, 320, 180) for v in frames_by_video}
    rows = [(i, f) for i, v in enumerate(frames_by_video) for f in frames_by_video[v]]
    n = len(rows)
    return ActionAnnotations(
        ["a"], videos, [r[0] for r in rows], [r[1] for r in rows], np.tile([10, 10, 20, 20], (n, 1)), np.zeros(n), np.zeros(n)
    )


def test_run_is_padded_and_grown_to_min_length() -> None:
    clips = segment_clips(_annotations({"v": list(range(200, 260))}), padding=30, min_frames=150)
    assert [(c.start, c.end) for c in clips] == [(155, 304)]


def test_gaps_up_to_max_gap_are_bridged_and_longer_ones_split() -> None:
    ann = _annotations({"v": list(range(100, 120)) + list(range(130, 150)) + list(range(400, 420))})
    clips = segment_clips(ann, max_gap=15, padding=30, min_frames=100)
    assert [(c.start, c.end) for c in clips] == [(70, 179), (360, 459)]


def test_long_runs_are_cut_into_pieces_of_at_most_max_frames() -> None:
    ann = _annotations({"v": list(range(0, 2500))}, num_frames=2500)
    clips = segment_clips(ann, max_frames=1000)
    assert sorted(c.num_frames for c in clips) == [833, 833, 834]
    assert clips[0].start == 0 and clips[-1].end == 2499
    assert all(b.start == a.end + 1 for a, b in zip(clips, clips[1:]))


def test_clips_stay_inside_the_video() -> None:
    clips = segment_clips(_annotations({"v": [2, 3, 895, 896]}, num_frames=900))
    assert [(c.start, c.end) for c in clips] == [(0, 99), (800, 899)]


def test_split_keeps_overlapping_clips_together_and_is_seeded(synthetic_root) -> None:
    clips = segment_clips(ActionAnnotations.load(synthetic_root), min_frames=120)
    train, val = split_clips(clips, 0.3, seed=1)
    assert sorted(c.clip_id for c in train + val) == [c.clip_id for c in clips]
    for a in train:
        for b in val:
            assert a.video != b.video or a.end < b.start or b.end < a.start
    assert split_clips(clips, 0.3, seed=1) == (train, val)
    assert len(val) >= round(0.3 * len(clips))
