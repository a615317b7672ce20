"""Tests of restaurant_action/data/synthetic.py: determinism, the study's classes, long tail, hard pairs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.stats

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.synthetic import (
    ACTIONS,
    APPEARANCE_ACTIONS,
    MOTION_ONLY_PAIRS,
    VIEWS,
    _class_slots,
    make_synthetic_dataset,
)
from restaurant_action.data.video import open_video
from restaurant_action.errors import DatasetError

STUDY_ACTIONS = """Pick up sauce; Squirt sauce; Pickup cut roll from roll machine; Place cut roll into boat;
Put roll into roll cut machine; Pick up from bin with hands; Pick up from bin with tong/scooper; Put tongs/scooper
back in bin; Put food back into bin with tongs/scooper; Put food back into a bin with hands; Pickup a meal (entire
roll/bowl); Operating sushi roll cutter; Operating sushi rice machine; Pick up a drink; Roll a sushi roll; Take a bin
out; Put a bin back; Clean counter; Clean roll cutter; Cleaning knife; Put lid on bowl; Put lid on roll; Put lid on
side; Put item(s) in the bag; Pick up bag from counter; Handing credit card; Handing cash; Inserting chip of credit
card; Operating fivestar; Operating POS; Giving tip; Using a cell phone; Put item into meal using tongs; Put item into
meal using hands; Put drink down; Put gloves on; Roll a sushi burrito; Operating cash drawer; Put sauce down; Pick up
side; Pick up bowl/roll; Put bowl/roll down; Pick side down; Hand item to customer; Other payment"""
STUDY_NAMES = {" ".join(name.split()).replace("/", " or ") for name in STUDY_ACTIONS.split(";")}
ALL = list(range(len(ACTIONS)))
SMALL = {"num_videos": 2, "frames_per_video": 150, "size": (96, 64), "workers": 1}


def _fingerprint(root: Path) -> tuple[bytes, bytes, bytes, dict[str, str]]:
    """Bytes of the three text files and a hash of every video's decoded frames."""
    hashes = {}
    for video in sorted((root / "videos").iterdir()):
        source = open_video(video)
        hashes[video.name] = hashlib.sha1(source.frames(np.arange(source.num_frames)).tobytes()).hexdigest()
    return tuple((root / name).read_bytes() for name in ("classes.txt", "annotations.csv", "annotated_ranges.csv")) + (hashes,)


def test_the_same_seed_gives_the_same_dataset_and_another_seed_another(tmp_path):
    first = _fingerprint(_generated(tmp_path / "first", seed=0))
    again = _fingerprint(_generated(tmp_path / "again", seed=0))
    other = _fingerprint(_generated(tmp_path / "other", seed=1))

    assert first == again
    assert len(first[3]) == 2
    assert other[1] != first[1]
    assert all(other[3][name] != first[3][name] for name in first[3])


def test_parallel_rendering_gives_the_same_dataset(tmp_path):
    serial = _fingerprint(_generated(tmp_path / "serial", seed=0))
    parallel = _fingerprint(_generated(tmp_path / "parallel", seed=0, workers=2))
    assert parallel == serial


def _generated(root: Path, seed: int, **overrides) -> Path:
    make_synthetic_dataset(root, seed=seed, **{**SMALL, **overrides})
    return root


def test_layout_videos_and_annotated_ranges(synthetic_medium):
    root, annotations = synthetic_medium
    names = [f"cam{i % 2}_{i:03d}" for i in range(8)]

    assert sorted(p.name for p in (root / "videos").iterdir()) == sorted(f"{n}.mp4" for n in names)
    assert sorted(annotations.video_names) == sorted(names)
    for name in names:
        info = annotations.videos[name]
        assert (info.num_frames, info.width, info.height) == (900, 128, 72)
        assert info.fps == pytest.approx(30.0)
    assert annotations.annotated_ranges == {name: [(0, 899)] for name in names}
    reloaded = ActionAnnotations.load(root)
    assert len(reloaded) == len(annotations) and reloaded.report.ok
    np.testing.assert_array_equal(reloaded.labels, annotations.labels)


def test_classes_are_the_studys_action_names(synthetic_root):
    classes = (synthetic_root / "classes.txt").read_text(encoding="utf-8").splitlines()

    assert classes == [spec.name for spec in ACTIONS]
    assert len(classes) >= 10 and len(set(classes)) == len(classes)
    assert set(classes) <= STUDY_NAMES, set(classes) - STUDY_NAMES
    assert all("/" not in name for name in classes)


def test_hard_pairs_and_appearance_actions_are_classes():
    names = {spec.name for spec in ACTIONS}
    paired = {name for pair in MOTION_ONLY_PAIRS for name in pair}

    assert len(MOTION_ONLY_PAIRS) >= 3 and all(a != b for a, b in MOTION_ONLY_PAIRS)
    assert paired <= names and set(APPEARANCE_ACTIONS) <= names
    assert not paired & set(APPEARANCE_ACTIONS)
    by_name = {spec.name: spec for spec in ACTIONS}
    for a, b in MOTION_ONLY_PAIRS:  # the same tool along the same path, in opposite directions
        assert (by_name[a].start, by_name[a].end) == (by_name[b].end, by_name[b].start)


# ---------------------------------------------------------------------------------- statistics


def test_class_slots_follow_the_weights_with_a_long_tail():
    weights = np.array([spec.weight for spec in ACTIONS])

    counts = np.bincount(_class_slots(np.random.default_rng(0), 140, ALL, long_tail=True), minlength=len(ACTIONS))

    assert counts.sum() == 140 and counts.min() >= 1
    # floor(weight / 57.6 * 140), at least 1, plus the 7 left over to the 7 heaviest classes
    assert counts.tolist() == [25, 20, 22, 15, 13, 10, 10, 7, 7, 4, 4, 2, 1]
    assert counts.max() >= 15 * counts.min()
    heavier = weights[:, None] > weights[None, :]
    assert (counts[:, None] >= counts[None, :])[heavier].all()  # a heavier class never gets fewer slots
    np.testing.assert_allclose(counts / 140, weights / weights.sum(), atol=0.02)


def test_class_slots_are_a_seeded_shuffle():
    a = _class_slots(np.random.default_rng(5), 300, ALL, long_tail=True)
    assert a == _class_slots(np.random.default_rng(5), 300, ALL, long_tail=True)
    assert a != _class_slots(np.random.default_rng(6), 300, ALL, long_tail=True)
    assert sorted(a) == sorted(_class_slots(np.random.default_rng(6), 300, ALL, long_tail=True))


def test_class_slots_without_the_long_tail_are_balanced_over_the_chosen_actions():
    chosen = [0, 4, 12]

    counts = np.bincount(_class_slots(np.random.default_rng(0), 31, chosen, long_tail=False), minlength=len(ACTIONS))

    assert counts[chosen].tolist() == [11, 10, 10]
    assert counts.sum() == 31


def test_a_subset_of_actions_is_drawn_and_listed_in_the_classes_file(tmp_path):
    chosen = [APPEARANCE_ACTIONS[0], *MOTION_ONLY_PAIRS[0]]

    annotations = make_synthetic_dataset(tmp_path / "subset", actions=chosen, long_tail=False, **SMALL)

    names = [spec.name for spec in ACTIONS]
    assert annotations.classes == sorted(chosen, key=names.index)
    counts = annotations.class_counts("tracks")
    assert counts.min() >= 1 and counts.max() - counts.min() <= 1


def test_val_videos_are_written_to_splits_json(tmp_path):
    root = tmp_path / "split"
    make_synthetic_dataset(root, **{**SMALL, "num_videos": 4}, val_videos=2)

    assert json.loads((root / "splits.json").read_text()) == {"train": ["cam0_000", "cam1_001"], "val": ["cam0_002", "cam1_003"]}
    with pytest.raises(ValueError, match="val_videos"):
        make_synthetic_dataset(tmp_path / "all_val", **SMALL, val_videos=2)


def test_unknown_or_no_actions_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic actions.*'Juggling'"):
        make_synthetic_dataset(tmp_path / "bad", actions=["Juggling"], **SMALL)
    with pytest.raises(ValueError, match="actions is empty"):
        make_synthetic_dataset(tmp_path / "none", actions=[], **SMALL)


def test_generated_clips_have_a_long_tail(synthetic_medium):
    annotations = synthetic_medium.annotations
    clips = annotations.class_counts("clips")
    weights = np.array([spec.weight for spec in ACTIONS])

    assert clips.min() >= 1  # every class appears
    assert clips.max() >= 15 * clips.min()
    assert scipy.stats.spearmanr(clips, weights).statistic > 0.9


def test_about_half_of_the_frames_are_labelled(synthetic_medium, synthetic_root):
    assert 0.35 <= synthetic_medium.annotations.labelled_fraction() <= 0.65
    assert 0.35 <= ActionAnnotations.load(synthetic_root).labelled_fraction() <= 0.65


def test_boxes_are_small_and_inside_the_frame(synthetic_medium):
    boxes = synthetic_medium.annotations.boxes
    width, height = 128, 72
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (width * height)

    assert np.median(area) < 0.05
    assert np.percentile(area, 99) < 0.1
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()


def test_each_track_is_one_continuous_action(synthetic_medium):
    annotations = synthetic_medium.annotations
    keys = np.stack([annotations.video_ids, annotations.tracks], 1)
    pairs, owner = np.unique(keys, axis=0, return_inverse=True)
    owner = owner.reshape(-1)

    for track in range(len(pairs)):
        rows = owner == track
        assert len(np.unique(annotations.labels[rows])) == 1
        frames = np.sort(annotations.frames[rows])
        assert len(frames) >= 20 and np.diff(frames).max() <= 1 + 15
    np.testing.assert_array_equal(annotations.class_counts("tracks"), annotations.class_counts("clips"))
    assert len(annotations.action_instances()) == len(pairs)
    # track ids are unique over the whole dataset
    assert len(np.unique(annotations.tracks)) == len(pairs)


def test_a_video_without_actions_is_a_background_video(tmp_path):
    # with 90-frame videos, seed 0 leaves the first video without a single action spell
    annotations = make_synthetic_dataset(tmp_path / "short", num_videos=4, frames_per_video=90, size=(96, 64), workers=1)
    assert len(annotations.video_names) == 4
    assert any(annotations.labelled_frames(name).size == 0 for name in annotations.video_names)


# ---------------------------------------------------------------------------------- motion-only pairs


def _loo_1nn_accuracy(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Leave-one-track-out 1-nearest-neighbour accuracy: no neighbour from the sample's own track."""
    f = np.asarray(features, np.float64)
    squared = (f**2).sum(1)
    distance = squared[:, None] + squared[None, :] - 2 * f @ f.T
    distance[groups[:, None] == groups[None, :]] = np.inf
    return float((labels[distance.argmin(1)] == labels).mean())


CONTROL_PAIRS = (
    ("Pick up from bin with tong or scooper", "Using a cell phone"),
    ("Pick up a drink", "Operating POS"),
    ("Put item into meal using tongs", "Squirt sauce"),
)


def _geometry(annotations: ActionAnnotations) -> np.ndarray:
    """Per box: centre x, centre y above the counter edge of its view, width, height (fractions of the frame)."""
    boxes = annotations.boxes.astype(np.float64)
    views = np.array([int(name[3]) for name in annotations.video_names])[annotations.video_ids]
    counter = np.array([VIEWS[v].counter_top for v in views])
    width, height = 128.0, 72.0
    return np.stack(
        [
            (boxes[:, 0] + boxes[:, 2]) / 2 / width,
            (boxes[:, 1] + boxes[:, 3]) / 2 / height - counter,
            (boxes[:, 2] - boxes[:, 0]) / height,
            (boxes[:, 3] - boxes[:, 1]) / height,
        ],
        1,
    )


def _pair_rows(annotations: ActionAnnotations, pair: tuple[str, str]) -> np.ndarray:
    ids = [annotations.classes.index(name) for name in pair]
    rows = np.flatnonzero(np.isin(annotations.labels, ids))
    for i in ids:  # enough clips of each (leave-one-track-out needs two) for the statistic to mean something
        assert len(np.unique(annotations.tracks[annotations.labels == i])) >= (4 if pair in MOTION_ONLY_PAIRS else 2)
    return rows


def test_box_geometry_cannot_tell_a_motion_only_pair_apart(synthetic_medium):
    """Per frame, the boxes of the two directions of one path are spread alike: 1-NN on geometry is at chance."""
    annotations = synthetic_medium.annotations
    geometry = _geometry(annotations)
    standardized = (geometry - geometry.mean(0)) / geometry.std(0)
    deciles = np.linspace(0.1, 0.9, 9)

    def height_deciles_gap(pair, rows):
        """Largest gap between the deciles of the two classes' box-centre height above the counter."""
        a, b = (geometry[rows][annotations.labels[rows] == annotations.classes.index(n), 1] for n in pair)
        return np.abs(np.quantile(a, deciles) - np.quantile(b, deciles)).max()

    for pair in MOTION_ONLY_PAIRS:
        rows = _pair_rows(annotations, pair)
        accuracy = _loo_1nn_accuracy(standardized[rows], annotations.labels[rows], annotations.tracks[rows])
        assert accuracy < 0.65, (pair, accuracy)
        assert height_deciles_gap(pair, rows) < 0.05, pair  # of the frame height
    for pair in CONTROL_PAIRS:  # the same measures do separate actions whose place differs
        rows = _pair_rows(annotations, pair)
        assert _loo_1nn_accuracy(standardized[rows], annotations.labels[rows], annotations.tracks[rows]) > 0.9, pair
        assert height_deciles_gap(pair, rows) > 0.1, pair


def test_frame_crops_cannot_tell_a_motion_only_pair_apart(synthetic_medium):
    """1-NN on the pixels of the box (8×8 crops) is at chance for a motion-only pair, near perfect for a control."""
    annotations = synthetic_medium.annotations
    pairs = (*MOTION_ONLY_PAIRS, *CONTROL_PAIRS[:2])
    rows = np.unique(np.concatenate([_pair_rows(annotations, pair) for pair in pairs]))
    crops = {}
    for vid, name in enumerate(annotations.video_names):
        mine = rows[annotations.video_ids[rows] == vid]
        frames = open_video(annotations.videos[name].path).frames(annotations.frames[mine])
        for row, image in zip(mine, frames):
            x1, y1, x2, y2 = np.round(annotations.boxes[row]).astype(int)
            crop = image[y1:y2, x1:x2]
            crops[row] = cv2.resize(crop, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()

    def accuracy(pair):
        pair_rows = _pair_rows(annotations, pair)
        features = np.stack([crops[r] for r in pair_rows])
        return _loo_1nn_accuracy(features, annotations.labels[pair_rows], annotations.tracks[pair_rows])

    for pair in MOTION_ONLY_PAIRS:
        assert accuracy(pair) < 0.65, pair
    for pair in CONTROL_PAIRS[:2]:
        assert accuracy(pair) > 0.9, pair
