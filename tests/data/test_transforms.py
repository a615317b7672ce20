"""Tests of restaurant_action/data/transforms.py: one draw per clip, boxes follow pixels, letterbox, no flip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from restaurant_action.data.transforms import PAD_VALUE, AugmentConfig, ClipTransform

NO_COLOUR = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)


def _transform(image_size, augment, seed: int) -> ClipTransform:
    """A transform whose random stream starts from ``seed`` (it seeds itself from torch on first use)."""
    torch.manual_seed(seed)
    return ClipTransform(image_size, augment)


def _scene(rng: np.random.Generator, width: int = 128, height: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A dark noisy RGB frame with one white rectangle; returns it and the rectangle's xyxy box."""
    image = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
    w, h = int(rng.integers(14, 40)), int(rng.integers(12, 32))
    x1, y1 = int(rng.integers(10, width - w - 10)), int(rng.integers(10, height - h - 10))
    image[y1 : y1 + h, x1 : x1 + w] = 255
    return image, np.array([x1, y1, x1 + w, y1 + h], np.float32)


def _white_box(image: np.ndarray, threshold: int = 128) -> np.ndarray | None:
    """xyxy box around the bright pixels (pixel ``x`` spans ``[x, x + 1)``)."""
    ys, xs = np.nonzero(image.mean(2) > threshold)
    return None if xs.size == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return float(inter / (area(a) + area(b) - inter))


# ---------------------------------------------------------------------------------- one draw per clip


@pytest.mark.parametrize("seed", range(6))
def test_one_random_draw_for_every_frame_and_box_of_a_clip(seed):
    image, box = _scene(np.random.default_rng(seed))
    frames = np.repeat(image[None], 5, 0)
    transform = _transform(128, AugmentConfig(), seed)

    out = transform(frames, np.repeat(box[None], 5, 0), np.arange(5), np.arange(5))

    assert out.frames.shape == (5, 128, 128, 3) and out.frames.dtype == np.uint8
    for t in range(1, 5):
        np.testing.assert_array_equal(out.frames[t], out.frames[0])
    assert len(out.boxes) == 5
    np.testing.assert_allclose(out.boxes, np.repeat(out.boxes[:1], 5, 0), atol=1e-4)
    assert out.labels.tolist() == out.box_frames.tolist() == [0, 1, 2, 3, 4]
    # and the draw did something: the clip differs from the letterboxed input
    plain = ClipTransform(128)(frames[:1], box[None], [0], [0])
    assert np.abs(out.frames[0].astype(int) - plain.frames[0]).mean() > 3


def test_successive_clips_get_different_draws():
    image, box = _scene(np.random.default_rng(0))
    transform = _transform(128, AugmentConfig(), 0)
    outputs = [transform(image[None], box[None], [0], [0]) for _ in range(4)]
    for a, b in zip(outputs, outputs[1:]):
        assert not np.array_equal(a.frames, b.frames)


def test_output_types_and_an_empty_box_list():
    image, _ = _scene(np.random.default_rng(1))
    out = ClipTransform((96, 64), AugmentConfig())(image[None], np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    assert out.frames.shape == (1, 64, 96, 3) and out.frames.dtype == np.uint8
    assert out.boxes.shape == (0, 4) and out.boxes.dtype == np.float32
    assert out.labels.dtype == np.int64 and out.box_frames.dtype == np.int64 and out.labels.shape == (0,)


# ---------------------------------------------------------------------------------- boxes follow the image


@pytest.mark.parametrize("seed", range(25))
def test_boxes_move_with_the_image(seed):
    rng = np.random.default_rng(100 + seed)
    (first, box0), (second, box1) = _scene(rng), _scene(rng)
    transform = _transform(128, NO_COLOUR, seed)

    out = transform(np.stack([first, second]), np.stack([box0, box1]), [3, 5], [0, 1])

    for box, label, t in zip(out.boxes, out.labels, out.box_frames):
        assert label == (3 if t == 0 else 5)
        white = _white_box(out.frames[t])
        assert white is not None
        assert _iou(box, white) >= 0.8, (seed, box, white)
        x1, y1, x2, y2 = np.round(box).astype(int)
        assert out.frames[t, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].mean() > 200
    assert len(out.boxes) >= 1


@pytest.mark.parametrize("seed", range(8))
def test_boxes_cover_the_bright_region_with_colour_jitter_too(seed):
    image, box = _scene(np.random.default_rng(200 + seed))
    transform = _transform(128, AugmentConfig(), seed)

    out = transform(image[None], box[None], [0], [0])

    assert len(out.boxes) == 1
    x1, y1, x2, y2 = np.round(out.boxes[0]).astype(int)
    inside = out.frames[0, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].mean()
    outside_mask = np.ones(out.frames.shape[1:3], bool)
    outside_mask[max(0, y1 - 2) : y2 + 2, max(0, x1 - 2) : x2 + 2] = False
    assert inside > out.frames[0][outside_mask].mean() + 60


# ---------------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize(
    ("in_size", "out_size", "content", "pad"),
    [
        ((96, 64), 128, (128, 85), (0, 21)),  # (width, height) of the content; (left, top) padding
        ((96, 64), (160, 96), (144, 96), (8, 0)),
        ((48, 96), 128, (64, 128), (32, 0)),
        ((128, 128), (64, 64), (64, 64), (0, 0)),
    ],
)
def test_letterbox_keeps_the_aspect_and_pads_with_grey(in_size, out_size, content, pad):
    width, height = in_size
    frame = np.full((height, width, 3), 200, np.uint8)
    box = np.array([[0, 0, width, height], [width / 4, height / 4, width / 2, height / 2]], np.float32)

    out = ClipTransform(out_size)(frame[None], box, [0, 1], [0, 0])

    out_w, out_h = (out_size, out_size) if isinstance(out_size, int) else out_size
    assert out.frames.shape == (1, out_h, out_w, 3)
    image = out.frames[0, :, :, 0]
    cols, rows = np.flatnonzero((image == 200).any(0)), np.flatnonzero((image == 200).any(1))
    assert (cols.min(), rows.min()) == pad
    assert (cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()) == content
    assert (image[image != 200] == PAD_VALUE).all()
    assert abs(content[0] / content[1] - width / height) < 0.02 * width / height
    scale_x, scale_y = content[0] / width, content[1] / height
    expected = box * [scale_x, scale_y, scale_x, scale_y] + [pad[0], pad[1], pad[0], pad[1]]
    np.testing.assert_allclose(out.boxes, expected, atol=1.0)


def test_evaluation_transform_is_deterministic():
    image, box = _scene(np.random.default_rng(3))
    transform = ClipTransform(128)
    a, b = transform(image[None], box[None], [1], [0]), transform(image[None], box[None], [1], [0])
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.boxes, b.boxes)


# ---------------------------------------------------------------------------------- no flip by default


def _white_centre_x(image: np.ndarray) -> float:
    return float(np.nonzero(image.mean(2) > 128)[1].mean())


def test_horizontal_flip_is_off_by_default():
    assert AugmentConfig().hflip == 0.0 and NO_COLOUR.hflip == 0.0
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, (96, 128, 3), dtype=np.uint8)
    image[30:60, 6:30] = 255  # on the left: a flip would put it right of the centre line (x = 64)
    box = np.array([[6, 30, 30, 60]], np.float32)
    # colours off so that the grey padding stays below the threshold; hflip left at its default
    transform = _transform(128, NO_COLOUR, 0)

    for _ in range(40):
        out = transform(image[None], box, [0], [0])
        assert _white_centre_x(out.frames[0]) < 50
        assert out.boxes[0, 2] < 64

    flipping = _transform(128, dataclasses.replace(NO_COLOUR, hflip=1.0), 0)
    for _ in range(5):  # the check above can see a flip
        out = flipping(image[None], box, [0], [0])
        assert _white_centre_x(out.frames[0]) > 78
        assert out.boxes[0, 0] > 64


# ---------------------------------------------------------------------------------- DataLoader workers


class _Augmented(Dataset):
    """The same clip, augmented anew for each index; also says which worker drew it."""

    def __init__(self, transform: ClipTransform, image: np.ndarray, box: np.ndarray) -> None:
        self.transform, self.image, self.box = transform, image, box

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int):
        out = self.transform(self.image[None], self.box[None], [0], [0])
        worker = torch.utils.data.get_worker_info()
        return torch.from_numpy(out.frames[0]), torch.from_numpy(out.boxes), worker.id if worker else -1


def test_dataloader_workers_draw_different_augmentations():
    image, box = _scene(np.random.default_rng(4))
    transform = _transform(128, AugmentConfig(), 0)
    transform(image[None], box[None], [0], [0])  # the parent has drawn (and seeded) before the workers fork

    samples = list(DataLoader(_Augmented(transform, image, box), batch_size=None, num_workers=2))

    workers = [int(w) for _, _, w in samples]
    assert workers == [0, 1, 0, 1, 0, 1]
    frames = [f.numpy() for f, _, _ in samples]
    assert not np.array_equal(frames[0], frames[1])  # the first draw of each worker
    assert not np.array_equal(frames[2], frames[3])
    assert not np.array_equal(frames[0], frames[2])  # successive draws of one worker
    boxes = [b.numpy() for _, b, _ in samples]
    assert not np.allclose(boxes[0], boxes[1])
