"""Clip-consistent letterbox and augmentation.

A clip of ``T`` frames goes through one random draw: the same zoom, shift, flip and colour
change for every frame and for every frame's boxes. Frame-level models use ``T = 1``, so they
draw per frame. Boxes are absolute pixels, xyxy (albumentations' ``pascal_voc``).

The augmentation is albumentations' ``Affine(scale, translate_percent)`` + ``ColorJitter`` +
``HorizontalFlip`` after a ``LongestMaxSize`` + ``PadIfNeeded`` letterbox, done cheaply
(``benchmarks/augmentation.py``, docs/performance.md): the zoom and shift are one bilinear
resize of the letterboxed content pasted at a whole-pixel offset into the grey canvas (no warp
of the padded image), and the colour jitter is one 3×4 colour matrix per clip (no HSV round
trip) applied to the content only, with the clip's mean grey as the contrast pivot; the padding
stays grey 114. Boxes are clipped and filtered as albumentations' ``BboxParams`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import torch

PAD_VALUE = 114

# ITU-R 601 luma, the weights of cv2.COLOR_RGB2GRAY (ColorJitter's grey for contrast and saturation)
_LUMA = np.array([0.299, 0.587, 0.114])
# the unit vector along the grey axis and its cross-product matrix (hue = rotation about it)
_GREY_AXIS_CROSS = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / np.sqrt(3.0)


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation of training clips; the fields follow albumentations' transforms.

    Attributes:
        scale: range of the random zoom (``Affine`` scale, drawn for x and y independently).
        translate: maximum random shift, as a fraction of the image size.
        brightness, contrast, saturation, hue: ``ColorJitter`` strengths, applied with p = 0.8.
        hflip: probability of a horizontal flip; 0 by default because many actions are
            handedness-specific.
        min_visibility: a box keeping less than this fraction of its area after the crop is
            dropped from the augmented sample (it is mostly outside the image).
    """

    scale: tuple[float, float] = (0.75, 1.25)
    translate: float = 0.1
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.5
    hue: float = 0.03
    hflip: float = 0.0
    min_visibility: float = 0.3


class TransformedClip(NamedTuple):
    """A clip after transformation.

    Attributes:
        frames: uint8 ``(T, H, W, 3)``.
        boxes: float32 ``(K, 4)`` absolute xyxy in the output image.
        labels: int64 ``(K,)`` class ids.
        box_frames: int64 ``(K,)`` index in ``0..T-1`` of the frame each box belongs to.
        tracks: int64 ``(K,)`` track id of each box.
    """

    frames: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    box_frames: np.ndarray
    tracks: np.ndarray


class ClipDraw(NamedTuple):
    """One clip's random augmentation.

    Attributes:
        zoom: ``(x, y)`` scale factors about the image centre.
        shift: ``(x, y)`` shift as a fraction of the output ``(W, H)``.
        colour: ``(brightness, contrast, saturation, hue)`` factors as ``ColorJitter`` draws them
            (hue in turns, ``[-0.5, 0.5]``), or ``None`` for no colour change.
        flip: mirror left-right.
    """

    zoom: tuple[float, float] = (1.0, 1.0)
    shift: tuple[float, float] = (0.0, 0.0)
    colour: tuple[float, float, float, float] | None = None
    flip: bool = False


def draw_augmentation(config: AugmentConfig, rng: np.random.Generator) -> ClipDraw:
    """Draw one clip's augmentation from ``config`` (the ranges of albumentations' transforms)."""
    zoom = (float(rng.uniform(*config.scale)), float(rng.uniform(*config.scale)))
    shift = (float(rng.uniform(-config.translate, config.translate)), float(rng.uniform(-config.translate, config.translate)))
    colour = None
    if rng.random() < 0.8:
        colour = (
            float(rng.uniform(max(0.0, 1 - config.brightness), 1 + config.brightness)),
            float(rng.uniform(max(0.0, 1 - config.contrast), 1 + config.contrast)),
            float(rng.uniform(max(0.0, 1 - config.saturation), 1 + config.saturation)),
            float(rng.uniform(-config.hue, config.hue)),
        )
    flip = bool(config.hflip > 0 and rng.random() < config.hflip)
    return ClipDraw(zoom, shift, colour, flip)


def colour_matrix(brightness: float, contrast: float, saturation: float, hue: float, grey_mean: float) -> np.ndarray:
    """``ColorJitter``'s four adjustments as one affine colour map for ``cv2.transform``.

    Brightness multiplies, contrast blends with the mean grey level, saturation blends each pixel
    with its own grey (``COLOR_RGB2GRAY`` weights) and hue rotates colours about the grey axis by
    ``hue`` turns (as DALI's ``ColorTwist`` composes them). Without the clipping between steps
    brightness, contrast and saturation commute, and the small hue rotation nearly does (it keeps
    the mean of R, G and B rather than the luma), so one fixed order stands for ColorJitter's
    random one. The rotation shifts the HSV hue by the drawn angle, keeping value and saturation
    within about 2 % (ColorJitter's uint8 HSV round trip moves hue in 2-degree steps).

    Args:
        brightness, contrast, saturation: factors, 1 = unchanged.
        hue: shift in turns (1 = 360 degrees).
        grey_mean: mean grey level of the clip, 0..255 (the pivot of the contrast change).

    Returns:
        float32 ``(3, 4)``: RGB out = ``matrix[:, :3] @ RGB in + matrix[:, 3]``.
    """
    angle = 2 * np.pi * hue
    hue_rotation = np.eye(3) + np.sin(angle) * _GREY_AXIS_CROSS + (1 - np.cos(angle)) * _GREY_AXIS_CROSS @ _GREY_AXIS_CROSS
    desaturate = saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), _LUMA)
    linear = brightness * contrast * desaturate @ hue_rotation
    offset = np.full((3, 1), brightness * (1 - contrast) * grey_mean)
    return np.hstack([linear, offset]).astype(np.float32)


def _span(start: int, length: int, limit: int) -> tuple[slice, slice]:
    """Source and destination slices of a run of ``length`` pixels pasted at ``start`` into ``0..limit``."""
    lo, hi = max(start, 0), min(start + length, limit)
    if hi <= lo:
        return slice(0, 0), slice(0, 0)
    return slice(lo - start, hi - start), slice(lo, hi)


class ClipTransform:
    """Letterbox to ``image_size`` and, for training, one random augmentation per clip.

    Letterboxing keeps the aspect ratio (long side resized to fit with ``INTER_AREA``, the rest
    padded with grey 114), as YOLO training does. Training zooms and shifts the letterboxed
    content about the image centre (the padding stays grey 114), jitters its colours and
    optionally mirrors it; boxes follow and are dropped below ``min_visibility``.

    Args:
        image_size: output ``(width, height)`` or one int for a square.
        augment: the random augmentation; ``None`` for evaluation (letterbox only).
    """

    def __init__(self, image_size: int | tuple[int, int], augment: AugmentConfig | None = None) -> None:
        width, height = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.image_size = (int(width), int(height))
        self.augment = augment
        self._rng = np.random.default_rng()
        self._seeded_pid: int | None = None

    def _seed_for_this_process(self) -> None:
        """Give every DataLoader worker its own random stream (forked copies would repeat draws)."""
        if self._seeded_pid != os.getpid():
            worker = torch.utils.data.get_worker_info()
            seed = worker.seed if worker is not None else torch.initial_seed()
            self._rng = np.random.default_rng(int(seed) % 2**32)
            self._seeded_pid = os.getpid()

    def seed_draw(self, seed: int) -> None:
        """Fix the next random draw: the same seed gives the same augmentation (one clip, many calls)."""
        self._rng = np.random.default_rng(seed)
        self._seeded_pid = os.getpid()

    def __call__(
        self, frames: np.ndarray, boxes: np.ndarray, labels: np.ndarray, box_frames: np.ndarray, tracks: np.ndarray | None = None
    ) -> TransformedClip:
        """Transform one clip.

        Args:
            frames: uint8 ``(T, H, W, 3)``.
            boxes: ``(K, 4)`` absolute xyxy in the input frames.
            labels: ``(K,)`` class ids.
            box_frames: ``(K,)`` frame index (``0..T-1``) of each box.
            tracks: ``(K,)`` track ids (zeros if ``None``).

        Returns:
            The transformed clip; boxes follow the image.
        """
        draw = ClipDraw()
        if self.augment is not None:
            self._seed_for_this_process()
            draw = draw_augmentation(self.augment, self._rng)
        return self.apply(frames, boxes, labels, box_frames, tracks, draw)

    def apply(
        self,
        frames: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        box_frames: np.ndarray,
        tracks: np.ndarray | None,
        draw: ClipDraw,
    ) -> TransformedClip:
        """Transform one clip with a given draw (``ClipDraw()`` is the plain letterbox); see ``__call__``."""
        frames = np.ascontiguousarray(frames)
        clip_length, in_height, in_width = frames.shape[:3]
        width, height = self.image_size
        scale = min(width / in_width, height / in_height)
        content_w, content_h = max(1, round(in_width * scale)), max(1, round(in_height * scale))
        zoomed_w, zoomed_h = max(1, round(content_w * draw.zoom[0])), max(1, round(content_h * draw.zoom[1]))
        # Affine scales about the canvas centre, where the letterbox centres the content
        centre_x = (width - content_w) // 2 + content_w / 2
        centre_y = (height - content_h) // 2 + content_h / 2
        left = round(width / 2 + draw.zoom[0] * (centre_x - width / 2) + draw.shift[0] * width - zoomed_w / 2)
        top = round(height / 2 + draw.zoom[1] * (centre_y - height / 2) + draw.shift[1] * height - zoomed_h / 2)
        src_x, dst_x = _span(left, zoomed_w, width)
        src_y, dst_y = _span(top, zoomed_h, height)
        if draw.flip:
            dst_x = slice(width - dst_x.stop, width - dst_x.start)

        visible = []
        for frame in frames:
            if (in_width, in_height) != (content_w, content_h):
                frame = cv2.resize(frame, (content_w, content_h), interpolation=cv2.INTER_AREA)
            if (zoomed_w, zoomed_h) != (content_w, content_h):
                frame = cv2.resize(frame, (zoomed_w, zoomed_h), interpolation=cv2.INTER_LINEAR)
            visible.append(frame[src_y, src_x])
        if draw.colour is not None and visible[0].size:
            grey_mean = float(np.mean([cv2.mean(v)[:3] for v in visible], 0) @ _LUMA)
            matrix = colour_matrix(*draw.colour, grey_mean=grey_mean)
            visible = [cv2.transform(v, matrix) for v in visible]
        out = np.full((clip_length, height, width, 3), PAD_VALUE, np.uint8)
        for t, v in enumerate(visible):
            out[t, dst_y, dst_x] = v[:, ::-1] if draw.flip else v

        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        factor = (zoomed_w / in_width, zoomed_h / in_height)
        out_boxes, kept = self._follow_boxes(boxes, (in_width, in_height), factor, (left, top), draw.flip)
        tracks = np.zeros(len(boxes), np.int64) if tracks is None else tracks
        labels, box_frames, tracks = (np.asarray(values).astype(np.int64).reshape(-1)[kept] for values in (labels, box_frames, tracks))
        return TransformedClip(out, out_boxes, labels, box_frames, tracks)

    def _follow_boxes(
        self, boxes: np.ndarray, in_size: tuple[int, int], factor: tuple[float, float], offset: tuple[int, int], flip: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Map ``(K, 4)`` xyxy input boxes into the output and clip them; drop empty or hidden ones.

        As albumentations' ``BboxParams(clip=True, filter_invalid_bboxes=True, min_visibility)``:
        boxes are clipped to the input frame (empty ones dropped), mapped, clipped to the output,
        and dropped when less than ``min_visibility`` of their mapped area is left.

        Returns:
            float32 ``(K', 4)`` output boxes and the int64 ``(K',)`` indices of the kept input boxes.
        """
        width, height = self.image_size
        min_visibility = self.augment.min_visibility if self.augment is not None else 0.0
        inside, valid = _clip_boxes(boxes, in_size, 0.0)
        mapped = inside * [factor[0], factor[1], factor[0], factor[1]] + [offset[0], offset[1], offset[0], offset[1]]
        if flip:
            mapped[:, [0, 2]] = width - mapped[:, [2, 0]]
        clipped, visible = _clip_boxes(mapped, (width, height), min_visibility)
        kept = np.flatnonzero(valid & visible)
        return clipped[kept].astype(np.float32), kept


def _clip_boxes(boxes: np.ndarray, size: tuple[int, int], min_visibility: float) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``(K, 4)`` xyxy pixel boxes to a ``(W, H)`` image.

    Returns:
        The clipped ``(K, 4)`` boxes and a ``(K,)`` mask of those that keep a positive width and
        height and at least ``min_visibility`` of their area.
    """
    clipped = np.clip(boxes, 0, [size[0], size[1], size[0], size[1]])
    extent, clipped_extent = boxes[:, 2:] - boxes[:, :2], clipped[:, 2:] - clipped[:, :2]
    area, clipped_area = extent.prod(1), clipped_extent.prod(1)
    keep = (clipped_extent > 0).all(1) & (clipped_area >= min_visibility * area - 1e-6)
    return clipped, keep
