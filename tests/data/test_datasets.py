"""Tests of restaurant_action/data/datasets.py: frame and clip samples, batched decoding, YOLO collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.datasets import ClipDataset, FrameDataset, FrameRef, collate_frames, letterbox_scale
from restaurant_action.data.transforms import AugmentConfig, ClipTransform
from restaurant_action.data.video import open_video

SIZE = 64  # letterbox side; the synthetic videos are 96×64, decoded at 64×43 and padded 10 rows on top
DECODED = (64, 43)
TOP = (SIZE - DECODED[1]) // 2


@pytest.fixture(scope="module")
def annotations(synthetic_root) -> ActionAnnotations:
    return ActionAnnotations.load(synthetic_root)


def _labelled(annotations: ActionAnnotations, video: str, count: int) -> list[int]:
    frames = annotations.labelled_frames(video)
    return frames[np.linspace(0, len(frames) - 1, count).astype(int)].tolist()


def _unlabelled(annotations: ActionAnnotations, video: str) -> int:
    return int(np.setdiff1d(np.arange(annotations.videos[video].num_frames), annotations.labelled_frames(video))[0])


def test_letterbox_scale_fits_inside():
    assert letterbox_scale(96, 64, (64, 64)) == pytest.approx(2 / 3)
    assert letterbox_scale(1280, 720, (320, 320)) == 0.25
    assert letterbox_scale(720, 1280, (320, 320)) == 0.25


def test_frame_samples_hold_the_letterboxed_frame_and_its_boxes(annotations):
    video = annotations.video_names[0]
    frames = _labelled(annotations, video, 4) + [_unlabelled(annotations, video)]
    dataset = FrameDataset(annotations, [FrameRef(video, f) for f in frames], image_size=SIZE)
    source = open_video(annotations.videos[video].path, size=DECODED)
    scale = letterbox_scale(96, 64, (SIZE, SIZE))

    assert len(dataset) == 5
    for index, frame in enumerate(frames):
        sample = dataset[index]
        image = sample["image"]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.shape == (3, SIZE, SIZE)
        assert sample["video"] == video and sample["frame"] == frame
        decoded = torch.from_numpy(source.frames([frame])[0]).permute(2, 0, 1).int()
        assert (image[:, TOP : TOP + DECODED[1]].int() - decoded).abs().float().mean() < 1.0
        assert (image[:, :TOP] == 114).all() and (image[:, TOP + DECODED[1] :] == 114).all()

        boxes, labels, _ = annotations.targets(video, frame)
        assert sample["boxes"].dtype == torch.float32 and sample["labels"].dtype == torch.int64
        assert sample["labels"].tolist() == labels.tolist()
        expected = boxes * scale + np.array([0, TOP, 0, TOP], np.float32)
        np.testing.assert_allclose(sample["boxes"].numpy(), expected.reshape(-1, 4), atol=1.0)
        assert (sample["boxes"] >= 0).all() and (sample["boxes"] <= SIZE).all()
    assert dataset[4]["boxes"].shape == (0, 4) and dataset[4]["labels"].shape == (0,)


def test_augmented_frame_samples_keep_boxes_inside_the_image(annotations):
    video = annotations.video_names[1]
    refs = [FrameRef(video, f) for f in _labelled(annotations, video, 12)]
    torch.manual_seed(0)
    dataset = FrameDataset(annotations, refs, image_size=SIZE, transform=ClipTransform(SIZE, AugmentConfig()))

    kept = 0
    for sample in dataset.__getitems__(range(len(refs))):
        assert sample["image"].shape == (3, SIZE, SIZE)
        boxes = sample["boxes"]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes >= 0).all() and (boxes <= SIZE).all()
        assert ((sample["labels"] >= 0) & (sample["labels"] < annotations.num_classes)).all()
        kept += len(boxes)
    assert kept >= 10


def test_batched_decoding_equals_one_by_one(annotations):
    a, b = annotations.video_names
    refs = [FrameRef(b, 200), FrameRef(a, 7), FrameRef(b, 3), FrameRef(a, 7), FrameRef(a, 350)]
    dataset = FrameDataset(annotations, refs, image_size=SIZE)

    batch = dataset.__getitems__([0, 1, 2, 3, 4])

    for index, sample in enumerate(batch):
        single = FrameDataset(annotations, refs, image_size=SIZE)[index]
        assert (sample["video"], sample["frame"]) == (refs[index].video, refs[index].frame)
        assert torch.equal(sample["image"], single["image"])
        assert torch.equal(sample["boxes"], single["boxes"])
    assert not torch.equal(batch[0]["image"], batch[2]["image"])


def test_a_cached_dataset_serves_the_same_images(annotations, tmp_path):
    video = annotations.video_names[0]
    refs = [FrameRef(video, f) for f in (0, 100, 359)]
    plain = FrameDataset(annotations, refs, image_size=SIZE)
    cached = FrameDataset(annotations, refs, image_size=SIZE, cache_dir=tmp_path / "cache")
    for index in range(3):
        assert torch.equal(plain[index]["image"], cached[index]["image"])
    assert len(list((tmp_path / "cache").iterdir())) == 2


# ---------------------------------------------------------------------------------- clips


def test_clip_indices_end_at_the_key_frame_and_clamp_at_zero(annotations):
    dataset = ClipDataset(annotations, [], image_size=SIZE, clip_length=4, frame_stride=2)
    assert dataset.clip_indices(FrameRef("v", 3)).tolist() == [0, 0, 1, 3]  # the docstring example
    assert dataset.clip_indices(FrameRef("v", 100)).tolist() == [94, 96, 98, 100]
    assert dataset.clip_indices(FrameRef("v", 0)).tolist() == [0, 0, 0, 0]
    sixteen = ClipDataset(annotations, [], image_size=SIZE)
    assert sixteen.clip_indices(FrameRef("v", 40)).tolist() == list(range(25, 41))


@pytest.mark.parametrize(("clip_length", "frame_stride"), [(0, 1), (4, 0)])
def test_clip_dataset_rejects_empty_clips_and_strides(annotations, clip_length, frame_stride):
    with pytest.raises(ValueError):
        ClipDataset(annotations, [], clip_length=clip_length, frame_stride=frame_stride)


def test_clip_samples_end_with_the_key_frame_sample(annotations):
    video = annotations.video_names[0]
    key = int(annotations.labelled_frames(video)[5])
    frames = FrameDataset(annotations, [FrameRef(video, f) for f in (key, key - 2, key - 4, 0, 1)], image_size=SIZE)
    clips = ClipDataset(annotations, [FrameRef(video, key), FrameRef(video, 3)], image_size=SIZE, clip_length=4, frame_stride=2)

    sample = clips[0]

    assert set(sample) == {"clip", "boxes", "labels", "tracks", "video", "frame"}
    assert sample["clip"].dtype == torch.uint8 and sample["clip"].shape == (4, 3, SIZE, SIZE)
    assert sample["frame"] == key and sample["video"] == video
    assert torch.equal(sample["clip"][-1], frames[0]["image"])  # key frame last
    assert torch.equal(sample["clip"][-2], frames[1]["image"])
    assert torch.equal(sample["clip"][-3], frames[2]["image"])
    assert torch.equal(sample["boxes"], frames[0]["boxes"]) and torch.equal(sample["labels"], frames[0]["labels"])
    assert len(sample["boxes"]) >= 1

    early = clips[1]  # key frame 3, stride 2: frames 0, 0, 1, 3
    assert torch.equal(early["clip"][0], frames[3]["image"]) and torch.equal(early["clip"][1], frames[3]["image"])
    assert torch.equal(early["clip"][2], frames[4]["image"])


def test_an_augmented_clip_gets_one_draw(annotations):
    video = annotations.video_names[0]
    torch.manual_seed(1)
    clips = ClipDataset(
        annotations, [FrameRef(video, 0)], image_size=SIZE, clip_length=4, transform=ClipTransform(SIZE, AugmentConfig())
    )
    plain = FrameDataset(annotations, [FrameRef(video, 0)], image_size=SIZE)[0]["image"]
    clip = clips[0]["clip"]  # frames 0, 0, 0, 0
    for t in range(1, 4):
        assert torch.equal(clip[t], clip[0])
    assert not torch.equal(clip[0], plain)


# ---------------------------------------------------------------------------------- collate


def _sample(boxes: list[list[float]], labels: list[int], frame: int, key: str = "image", fill: int = 0) -> dict:
    shape = (3, 8, 8) if key == "image" else (2, 3, 8, 8)
    return {
        key: torch.full(shape, fill, dtype=torch.uint8),
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "tracks": torch.arange(len(labels), dtype=torch.int64) + 10 * frame,
        "video": f"v{frame}",
        "frame": frame,
    }


def test_collate_frames_lays_targets_out_as_image_class_box():
    samples = [
        _sample([[1, 2, 3, 4], [5, 6, 7, 8]], [2, 0], frame=10, fill=1),
        _sample([], [], frame=11, fill=2),
        _sample([[0.5, 1.5, 2.5, 3.5]], [7], frame=12, fill=3),
    ]

    batch = collate_frames(samples)

    assert batch["images"].shape == (3, 3, 8, 8) and batch["images"].dtype == torch.uint8
    assert batch["images"][:, 0, 0, 0].tolist() == [1, 2, 3]
    assert batch["targets"].dtype == torch.float32
    assert batch["targets"].tolist() == [[0, 2, 1, 2, 3, 4], [0, 0, 5, 6, 7, 8], [2, 7, 0.5, 1.5, 2.5, 3.5]]
    assert batch["videos"] == ["v10", "v11", "v12"]
    assert batch["frames"].dtype == torch.int64 and batch["frames"].tolist() == [10, 11, 12]


def test_collate_clips_and_frames_without_boxes():
    batch = collate_frames([_sample([], [], 1, key="clip"), _sample([], [], 2, key="clip")])
    assert batch["clips"].shape == (2, 2, 3, 8, 8) and "images" not in batch
    assert batch["targets"].shape == (0, 6)


def test_collate_real_samples(annotations):
    video = annotations.video_names[0]
    refs = [FrameRef(video, f) for f in _labelled(annotations, video, 3)]
    samples = FrameDataset(annotations, refs, image_size=SIZE).__getitems__([0, 1, 2])

    batch = collate_frames(samples)

    assert batch["images"].shape == (3, 3, SIZE, SIZE)
    for i, sample in enumerate(samples):
        rows = batch["targets"][batch["targets"][:, 0] == i]
        assert torch.equal(rows[:, 1].long(), sample["labels"]) and torch.equal(rows[:, 2:], sample["boxes"])
        assert torch.equal(batch["tracks"][batch["targets"][:, 0] == i], sample["tracks"])
        expected_tracks = annotations.targets(sample["video"], sample["frame"])[2]
        assert sorted(sample["tracks"].tolist()) == sorted(expected_tracks.tolist())


def test_letterbox_to_frame_inverts_the_letterbox_of_samples(synthetic_root) -> None:
    from restaurant_action.data.annotations import ActionAnnotations
    from restaurant_action.data.datasets import FrameDataset, FrameRef, letterbox_to_frame

    annotations = ActionAnnotations.load(synthetic_root)
    row = 0
    ref = FrameRef(annotations.video_names[annotations.video_ids[row]], int(annotations.frames[row]))
    sample = FrameDataset(annotations, [ref], image_size=64)[0]
    info = annotations.videos[ref.video]
    back = letterbox_to_frame(sample["boxes"].numpy(), (info.width, info.height), (64, 64))
    expected, _, _ = annotations.targets(ref.video, ref.frame)
    np.testing.assert_allclose(np.sort(back, 0), np.sort(expected, 0), atol=1.0)
