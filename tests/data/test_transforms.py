"""Tests of restaurant_action/data/transforms.py: one draw per clip, boxes follow pixels, letterbox, no flip, colours."""

from __future__ import annotations

import dataclasses

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from restaurant_action.data.transforms import (
    PAD_VALUE,
    AugmentConfig,
    ClipDraw,
    ClipTransform,
    colour_matrix,
    draw_augmentation,
)

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


# ---------------------------------------------------------------------------------- the combined zoom, shift and paste


@pytest.mark.parametrize("seed", range(20))
def test_boxes_cover_the_rectangle_after_zoom_shift_and_flip(seed):
    rng = np.random.default_rng(300 + seed)
    image = np.zeros((144, 256, 3), np.uint8)
    corner = rng.integers(20, [190, 90])
    size = rng.integers(20, 50, 2)
    box = np.array([*corner, *(corner + size)], np.float32)
    image[box[1].astype(int) : box[3].astype(int), box[0].astype(int) : box[2].astype(int)] = 255
    transform = _transform(128, dataclasses.replace(NO_COLOUR, hflip=0.5), seed)

    out = transform(image[None], box[None], [0], [0])

    assert len(out.boxes) == 1
    white = _white_box(out.frames[0])
    np.testing.assert_allclose(out.boxes[0], white, atol=1.5)


def test_one_draw_maps_every_frame_of_a_clip_the_same_way():
    rng = np.random.default_rng(7)
    scenes = [_scene(rng) for _ in range(4)]
    frames, boxes = np.stack([f for f, _ in scenes]), np.stack([b for _, b in scenes])
    transform = _transform(128, NO_COLOUR, 7)

    out = transform(frames, boxes, np.arange(4), np.arange(4), np.arange(10, 14))

    assert out.box_frames.tolist() == [0, 1, 2, 3] and out.tracks.tolist() == [10, 11, 12, 13]
    factor = (out.boxes[:, 2:] - out.boxes[:, :2]) / (boxes[:, 2:] - boxes[:, :2])
    offset = out.boxes[:, :2] - boxes[:, :2] * factor
    np.testing.assert_allclose(factor, np.repeat(factor[:1], 4, 0), rtol=1e-5)
    np.testing.assert_allclose(offset, np.repeat(offset[:1], 4, 0), atol=1e-3)
    for t in range(4):
        np.testing.assert_allclose(out.boxes[t], _white_box(out.frames[t]), atol=1.5)


def test_geometry_matches_albumentations_affine_after_the_letterbox():
    rng = np.random.default_rng(8)
    frame = cv2.resize(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8), (320, 180), interpolation=cv2.INTER_CUBIC)
    boxes = np.array([[40, 30, 150, 120], [200, 100, 320, 180]], np.float32)
    transform = ClipTransform(160)
    letterboxed = transform(frame[None], boxes, [0, 1], [0, 0])
    for zoom, shift in [((1.2, 0.8), (0.05, -0.1)), ((0.75, 1.25), (-0.1, 0.1))]:
        affine = A.Compose(
            [A.Affine(scale={"x": (zoom[0],) * 2, "y": (zoom[1],) * 2}, translate_percent={"x": (shift[0],) * 2, "y": (shift[1],) * 2},
                      border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE, p=1.0)],
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True),
        )
        reference = affine(image=letterboxed.frames[0], bboxes=letterboxed.boxes, labels=[0, 1])

        out = transform.apply(frame[None], boxes, [0, 1], [0, 0], None, ClipDraw(zoom=zoom, shift=shift))

        np.testing.assert_allclose(out.boxes, reference["bboxes"], atol=1.0)
        assert np.abs(out.frames[0].astype(int) - reference["image"]).mean() < 3


def test_boxes_mostly_outside_are_dropped_and_the_rest_clipped():
    frame = np.zeros((128, 128, 3), np.uint8)
    boxes = np.array([[0, 0, 40, 40], [0, 50, 60, 90], [60, 60, 100, 100]], np.float32)
    transform = ClipTransform(128, AugmentConfig(min_visibility=0.3))

    # a shift of -0.25 × 128 = -32 px leaves 8/40 of the first box and 28/60 of the second
    out = transform.apply(frame[None], boxes, [1, 2, 3], [0, 0, 0], [5, 6, 7], ClipDraw(shift=(-0.25, 0.0)))

    assert out.labels.tolist() == [2, 3] and out.tracks.tolist() == [6, 7] and out.box_frames.tolist() == [0, 0]
    np.testing.assert_allclose(out.boxes, [[0, 50, 28, 90], [28, 60, 68, 100]])


def test_boxes_outside_the_input_frame_are_clipped_or_dropped():
    frame = np.zeros((64, 64, 3), np.uint8)
    boxes = np.array([[-10, 10, 20, 30], [70, 10, 90, 30], [30, 30, 30, 40]], np.float32)
    out = ClipTransform(64)(frame[None], boxes, [0, 1, 2], [0, 0, 0])
    assert out.labels.tolist() == [0]
    np.testing.assert_allclose(out.boxes, [[0, 10, 20, 30]])


# ---------------------------------------------------------------------------------- reproducibility and the draw


def test_the_same_seed_gives_the_same_clip():
    image, box = _scene(np.random.default_rng(9))
    transform = ClipTransform(128, AugmentConfig(hflip=0.5))
    outputs = []
    for seed in (5, 5, 6):
        transform.seed_draw(seed)
        outputs.append(transform(image[None], box[None], [0], [0]))
    np.testing.assert_array_equal(outputs[0].frames, outputs[1].frames)
    np.testing.assert_array_equal(outputs[0].boxes, outputs[1].boxes)
    assert not np.array_equal(outputs[0].frames, outputs[2].frames)


def test_draws_stay_in_the_configured_ranges():
    config = AugmentConfig(hflip=0.5)
    rng = np.random.default_rng(0)
    draws = [draw_augmentation(config, rng) for _ in range(2000)]
    zooms, shifts = np.array([d.zoom for d in draws]), np.array([d.shift for d in draws])
    assert zooms.min() >= 0.75 and zooms.max() <= 1.25 and np.abs(shifts).max() <= 0.1
    assert abs(np.corrcoef(zooms.T)[0, 1]) < 0.1  # x and y zoom drawn independently, as Affine(keep_ratio=False)
    colours = np.array([d.colour for d in draws if d.colour is not None])
    assert 0.77 < len(colours) / len(draws) < 0.83
    low, high = colours.min(0), colours.max(0)
    np.testing.assert_allclose(low, [0.7, 0.7, 0.5, -0.03], atol=0.01)
    np.testing.assert_allclose(high, [1.3, 1.3, 1.5, 0.03], atol=0.01)
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55


# ---------------------------------------------------------------------------------- evaluation letterbox


@pytest.mark.parametrize(("in_size", "out_size"), [((1280, 720), 320), ((640, 360), (320, 256)), ((100, 150), 128), ((320, 180), 320)])
def test_evaluation_is_an_exact_letterbox(in_size, out_size):
    width, height = in_size
    out_w, out_h = (out_size, out_size) if isinstance(out_size, int) else out_size
    frames = np.random.default_rng(10).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    scale = min(out_w / width, out_h / height)
    content_w, content_h = round(width * scale), round(height * scale)
    left, top = (out_w - content_w) // 2, (out_h - content_h) // 2
    reference = np.full((2, out_h, out_w, 3), PAD_VALUE, np.uint8)
    for t in range(2):
        resized = cv2.resize(frames[t], (content_w, content_h), interpolation=cv2.INTER_AREA)
        reference[t, top : top + content_h, left : left + content_w] = resized

    out = ClipTransform(out_size)(frames, np.array([[0, 0, width, height]]), [0], [1])

    np.testing.assert_array_equal(out.frames, reference)
    np.testing.assert_allclose(out.boxes, [[left, top, left + content_w, top + content_h]], atol=1e-3)


# ---------------------------------------------------------------------------------- colour jitter


def _smooth_colours(seed: int) -> np.ndarray:
    small = np.random.default_rng(seed).integers(40, 216, (12, 12, 3), dtype=np.uint8)
    return cv2.resize(small, (160, 160), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize(("brightness", "contrast", "saturation"), [(1.2, 1.0, 1.0), (1.0, 0.75, 1.0), (1.0, 1.0, 1.4), (0.8, 1.2, 0.6)])
def test_colour_matrix_matches_colorjitter_without_hue(brightness, contrast, saturation):
    image = _smooth_colours(0)
    jitter = A.ColorJitter((brightness,) * 2, (contrast,) * 2, (saturation,) * 2, (0.0, 0.0), p=1.0)
    reference = jitter(image=image)["image"].astype(float)
    grey_mean = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean()

    ours = cv2.transform(image, colour_matrix(brightness, contrast, saturation, 0.0, grey_mean)).astype(float)

    assert np.abs(ours - reference).mean() < 1.0
    assert np.abs(image - reference).mean() > 5  # the change itself is much larger


@pytest.mark.parametrize("hue", [0.03, -0.03, 0.015])
def test_colour_matrix_shifts_the_hue_by_the_drawn_angle(hue):
    image = _smooth_colours(1)
    hsv_in = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)

    ours = cv2.transform(image, colour_matrix(1.0, 1.0, 1.0, hue, 0.0))

    hsv_out = cv2.cvtColor(ours.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
    coloured = hsv_in[..., 1] > 0.2
    shift = (hsv_out[..., 0] - hsv_in[..., 0] + 180) % 360 - 180
    assert abs(shift[coloured].mean() - 360 * hue) < 1.0
    assert abs((hsv_out[..., 2] - hsv_in[..., 2])[coloured].mean()) < 2 / 255  # value and saturation kept
    assert abs((hsv_out[..., 1] / hsv_in[..., 1])[coloured].mean() - 1) < 0.02


def test_colour_jitter_leaves_the_padding_grey():
    image, box = _scene(np.random.default_rng(11), width=128, height=64)
    transform = ClipTransform(128, AugmentConfig())
    out = transform.apply(image[None], box[None], [0], [0], None, ClipDraw(colour=(1.3, 0.7, 1.5, 0.03)))
    assert (out.frames[0, :30] == PAD_VALUE).all() and (out.frames[0, -30:] == PAD_VALUE).all()
