"""Tests of restaurant_action/data/datamodules.py on a tiny generated dataset."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler, WeightedRandomSampler

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.clips import segment_clips
from restaurant_action.data.datamodules import ClipDataModule, FrameDataModule, SequenceDataModule, background_frames
from restaurant_action.data.datasets import ClipDataset, FrameDataset
from restaurant_action.data.splits import block_split
from restaurant_action.data.synthetic import ACTIONS
from restaurant_action.errors import DatasetError

SIZE = 64


def _frame_module(root: Path, **kwargs) -> FrameDataModule:
    options = {"image_size": SIZE, "batch_size": 4, "num_workers": 0, "seed": 0, **kwargs}
    return FrameDataModule(root, **options)


def _labelled(annotations: ActionAnnotations, ref) -> bool:
    return len(annotations.targets(ref.video, ref.frame)[1]) > 0


def test_dataset_facts_before_setup(synthetic_root):
    dm = _frame_module(synthetic_root)

    assert dm.num_classes == len(ACTIONS) == 13
    assert dm.classes == [spec.name for spec in ACTIONS]
    assert dm.datasets == {}  # nothing built yet

    anchors = np.array(dm.anchors(9))
    assert anchors.shape == (9, 2) and (anchors > 0).all() and (anchors <= SIZE).all()
    areas = anchors.prod(1)
    assert (np.diff(areas) >= 0).all()
    assert dm.anchors(9) == anchors.tolist()  # cached, stable
    assert dm.datasets == {}


def test_training_boxes_are_the_train_split_boxes_at_image_size(synthetic_root):
    dm = _frame_module(synthetic_root)
    ann = dm.annotations
    expected = []
    for video, allowed in dm.split["train"].items():
        rows = (ann.video_ids == ann.video_names.index(video)) & np.isin(ann.frames, allowed)
        expected.append(ann.boxes[rows] * (SIZE / 96))
    np.testing.assert_allclose(dm.training_boxes(), np.concatenate(expected), rtol=1e-5)
    assert len(dm.training_boxes()) < len(ann)  # val boxes are left out


def test_train_and_val_frames_are_disjoint_and_follow_the_block_split(synthetic_root):
    dm = _frame_module(synthetic_root)
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    lengths = {name: info.num_frames for name, info in dm.annotations.videos.items()}

    assert isinstance(train, FrameDataset) and isinstance(val, FrameDataset)
    expected_split = block_split(lengths, 0.2, seed=0)
    for part in ("train", "val"):
        for video in lengths:
            np.testing.assert_array_equal(dm.split[part][video], expected_split[part][video])
    train_refs, val_refs = set(train.items), set(val.items)
    assert train_refs and val_refs and not train_refs & val_refs
    for refs, part in ((train_refs, "train"), (val_refs, "val")):
        for ref in refs:
            assert ref.frame in dm.split[part][ref.video]
    for video in lengths:  # no 120-frame block feeds both
        train_blocks = {r.frame // 120 for r in train_refs if r.video == video}
        val_blocks = {r.frame // 120 for r in val_refs if r.video == video}
        assert not train_blocks & val_blocks
    # every labelled frame of a split is served
    for part, refs in (("train", train_refs), ("val", val_refs)):
        for video, allowed in dm.split[part].items():
            labelled = set(np.intersect1d(dm.annotations.labelled_frames(video), allowed).tolist())
            assert labelled <= {r.frame for r in refs if r.video == video}


@pytest.mark.parametrize("ratio", [0.0, 0.25, 1.0])
def test_background_ratio_is_honoured(synthetic_root, ratio):
    dm = _frame_module(synthetic_root, background_ratio=ratio)
    ann = dm.annotations

    for part in ("train", "val"):
        refs = dm.frames_of(part)
        labelled = [r for r in refs if _labelled(ann, r)]
        background = [r for r in refs if not _labelled(ann, r)]
        assert len(background) == round(ratio * len(labelled))
        assert len(set(refs)) == len(refs)
        for ref in background:  # unlabelled, inside the annotated ranges, and in this split
            assert ref.frame in background_frames(ann, ref.video)
            assert ref.frame in dm.split[part][ref.video]
    assert dm.frames_of("train") == dm.frames_of("train")  # seeded


def test_background_frames_without_annotated_ranges_are_near_actions(synthetic_root):
    ann = ActionAnnotations.load(synthetic_root)
    ann.annotated_ranges = None
    video = ann.video_names[0]
    labelled = set(ann.labelled_frames(video).tolist())

    background = background_frames(ann, video, padding=5)

    assert background.size and not set(background.tolist()) & labelled
    for frame in background.tolist():
        assert any(abs(frame - f) <= 5 for f in labelled)
    near = [i for i in ann.action_instances() if i.video == video]
    assert set(range(near[0].start - 5, near[0].start)) - labelled <= set(background.tolist())


def test_balanced_sampling_draws_rare_classes_more_often(synthetic_root):
    dm = _frame_module(synthetic_root, balanced_sampling=1.0, background_ratio=0.0)
    loader = dm.train_dataloader()
    items = dm.datasets["train"].items
    ann = dm.annotations
    assert isinstance(loader.sampler, WeightedRandomSampler)

    frame_labels = [set(ann.targets(r.video, r.frame)[1].tolist()) for r in items]
    counts = ann.class_counts("frames")
    present = sorted({c for labels in frame_labels for c in labels}, key=lambda c: counts[c])
    rare, common = present[0], present[-1]
    assert counts[rare] < counts[common]
    draws = np.concatenate([list(loader.sampler) for _ in range(40)])
    # the documented weight of a frame: count(rarest class in it) ** -1
    weights = np.array([1.0 / min(counts[c] for c in labels) for labels in frame_labels])

    for c in (rare, common):
        holds = np.array([c in labels for labels in frame_labels])
        drawn, expected, uniform = holds[draws].mean(), weights[holds].sum() / weights.sum(), holds.mean()
        assert drawn == pytest.approx(expected, abs=0.015)
        assert (drawn > uniform + 0.02) if c == rare else (drawn < uniform - 0.02), (c, drawn, uniform)

    plain = _frame_module(synthetic_root).train_dataloader()
    assert isinstance(plain.sampler, RandomSampler)


def _check_batch(batch: dict, key: str, shape: tuple, num_classes: int) -> None:
    frames = batch[key]
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == shape
    batch_size = shape[0]
    targets = batch["targets"]
    assert targets.dtype == torch.float32 and targets.ndim == 2 and targets.shape[1] == 6
    assert ((targets[:, 0] >= 0) & (targets[:, 0] < batch_size)).all()
    assert torch.equal(targets[:, 0], targets[:, 0].round()) and torch.equal(targets[:, 1], targets[:, 1].round())
    assert ((targets[:, 1] >= 0) & (targets[:, 1] < num_classes)).all()
    assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= SIZE)).all()
    assert (targets[:, 4] > targets[:, 2]).all() and (targets[:, 5] > targets[:, 3]).all()
    assert len(batch["videos"]) == batch_size
    assert batch["frames"].dtype == torch.int64 and batch["frames"].shape == (batch_size,)


def test_frame_batches_from_two_workers(synthetic_root):
    dm = _frame_module(synthetic_root, num_workers=2)
    gc.collect()  # no garbage decord reader may reach the forked workers
    loader = dm.train_dataloader()
    assert loader.num_workers == 2

    batches = iter(loader)
    first, second = next(batches), next(batches)

    for batch in (first, second):
        _check_batch(batch, "images", (4, 3, SIZE, SIZE), dm.num_classes)
    assert len(first["targets"]) + len(second["targets"]) > 0
    del batches, loader


def test_clip_batches_from_two_workers(synthetic_root):
    dm = ClipDataModule(synthetic_root, image_size=SIZE, clip_length=4, frame_stride=2, batch_size=3, num_workers=2)
    assert isinstance(dm.num_classes, int) and dm.clip_length == 4 and dm.frame_stride == 2
    gc.collect()
    loader = dm.val_dataloader()
    assert isinstance(dm.datasets["val"], ClipDataset)

    batch = next(iter(loader))

    _check_batch(batch, "clips", (3, 4, 3, SIZE, SIZE), dm.num_classes)
    assert torch.equal(batch["frames"], torch.tensor([r.frame for r in dm.datasets["val"].items[:3]]))
    del loader


def test_clip_module_defaults_follow_yowo(synthetic_root):
    dm = ClipDataModule(synthetic_root)
    assert (dm.image_size, dm.clip_length, dm.frame_stride) == (224, 16, 1)


# ---------------------------------------------------------------------------------- splits.json and empty splits


@pytest.fixture
def dataset_copy(synthetic_root, tmp_path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    return root


def test_splits_json_splits_by_whole_video(dataset_copy):
    first, second = sorted(p.stem for p in (dataset_copy / "videos").iterdir())
    (dataset_copy / "splits.json").write_text(json.dumps({"train": [first], "val": [second]}), encoding="utf-8")
    dm = _frame_module(dataset_copy)
    dm.setup()

    assert {r.video for r in dm.datasets["train"].items} == {first}
    assert {r.video for r in dm.datasets["val"].items} == {second}
    assert list(dm.split["train"]) == [first] and list(dm.split["val"]) == [second]
    np.testing.assert_array_equal(dm.split["val"][second], np.arange(360))


def test_splits_json_splits_sequence_clips_by_whole_video_too(dataset_copy):
    first, second = sorted(p.stem for p in (dataset_copy / "videos").iterdir())
    (dataset_copy / "splits.json").write_text(json.dumps({"train": [first], "val": [second]}), encoding="utf-8")

    dm = SequenceDataModule(dataset_copy, image_size=64, lanes=2, steps=4, num_workers=0, min_clip_frames=60)

    assert {clip.video for clip in dm.clips["train"]} == {first}
    assert {clip.video for clip in dm.clips["val"]} == {second}
    assert len(dm.clips["train"]) + len(dm.clips["val"]) == len(segment_clips(dm.annotations, **dm.clip_options))


@pytest.mark.parametrize("empty", ["val", "train"])
def test_an_empty_split_is_a_dataset_error(dataset_copy, empty):
    videos = sorted(p.stem for p in (dataset_copy / "videos").iterdir())
    split = {"train": videos, "val": videos} | {empty: []}
    (dataset_copy / "splits.json").write_text(json.dumps(split), encoding="utf-8")
    dm = _frame_module(dataset_copy)

    with pytest.raises(DatasetError) as caught:
        dm.setup()

    assert Path(caught.value.path).name == "annotations.csv"
    assert f"{empty} split" in str(caught.value)


def test_a_missing_dataset_is_a_dataset_error(tmp_path):
    dm = _frame_module(tmp_path / "absent")
    with pytest.raises(DatasetError, match="not found"):
        dm.num_classes


# ---------------------------------------------------------------------------------- class ranking


def test_top_classes_rank_the_training_clips_only(tmp_path, mp4_writer, frame_pattern):
    root = tmp_path / "ranking"
    mp4_writer(root / "videos" / "long.mp4", frame_pattern(240))
    (root / "classes.txt").write_text("cut\nwipe\n", encoding="utf-8")
    val_block = int(block_split({"long": 240}, 0.5, seed=0)["val"]["long"][0]) // 120
    train_start, val_start = 120 * (1 - val_block), 120 * val_block
    rows = ["video,frame,x1,y1,x2,y2,action,track"]
    for clip in range(2):  # two "cut" clips in the train block
        rows += [f"long,{train_start + 40 * clip + f},5,5,20,20,cut,{clip}" for f in range(3)]
    for clip in range(3):  # three "wipe" clips in the val block
        rows += [f"long,{val_start + 30 * clip + f},5,5,20,20,wipe,{10 + clip}" for f in range(3)]
    (root / "annotations.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    dm = _frame_module(root, val_fraction=0.5)

    assert dm.annotations.class_counts("clips").tolist() == [2, 3]
    assert dm.top_classes(1) == [0]
