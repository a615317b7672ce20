"""Clip-consistent augmentation with albumentations.

A clip of ``T`` frames goes through one random draw: the same crop, shift, scale, flip and
colour change for every frame and for every frame's boxes. Frame-level models use ``T = 1``,
so they draw per frame. Boxes are absolute pixels, xyxy (albumentations' ``pascal_voc``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import albumentations as A
import cv2
import numpy as np
import torch

PAD_VALUE = 114


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation of training clips; every field is one albumentations transform.

    Attributes:
        scale: range of the random zoom (``Affine`` scale).
        translate: maximum random shift, as a fraction of the image size.
        brightness, contrast, saturation, hue: ``ColorJitter`` strengths.
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


class ClipTransform:
    """Letterbox to ``image_size`` and, for training, one random augmentation per clip.

    Letterboxing keeps the aspect ratio (long side resized to fit, the rest padded with grey
    114), as YOLO training does.

    Args:
        image_size: output ``(width, height)`` or one int for a square.
        augment: the random augmentation; ``None`` for evaluation (letterbox only).
    """

    def __init__(self, image_size: int | tuple[int, int], augment: AugmentConfig | None = None) -> None:
        width, height = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.image_size = (int(width), int(height))
        self.augment = augment
        steps: list[A.BasicTransform] = [
            A.LongestMaxSize(max_size_hw=(height, width), interpolation=cv2.INTER_AREA),
            A.PadIfNeeded(height, width, position="center", border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE),
        ]
        if augment is not None:
            steps += [
                A.Affine(
                    scale=augment.scale,
                    translate_percent=(-augment.translate, augment.translate),
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=PAD_VALUE,
                    p=1.0,
                ),
                A.ColorJitter(augment.brightness, augment.contrast, augment.saturation, augment.hue, p=0.8),
            ]
            if augment.hflip > 0:
                steps.append(A.HorizontalFlip(p=augment.hflip))
        self.compose = A.Compose(
            steps,
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["labels", "box_frames", "tracks"],
                min_visibility=augment.min_visibility if augment else 0.0,
                clip=True,
                filter_invalid_bboxes=True,
            ),
        )
        self._seeded_pid: int | None = None

    def _seed_for_this_process(self) -> None:
        """Give every DataLoader worker its own random stream (forked copies would repeat draws)."""
        if self._seeded_pid != os.getpid():
            worker = torch.utils.data.get_worker_info()
            seed = worker.seed if worker is not None else torch.initial_seed()
            self.compose.set_random_seed(int(seed) % 2**32)
            self._seeded_pid = os.getpid()

    def seed_draw(self, seed: int) -> None:
        """Fix the next random draw: the same seed gives the same augmentation (one clip, many calls)."""
        self.compose.set_random_seed(seed)
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
        self._seed_for_this_process()
        out = self.compose(
            images=np.ascontiguousarray(frames),
            bboxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels),
            box_frames=np.asarray(box_frames),
            tracks=np.zeros(len(labels), np.int64) if tracks is None else np.asarray(tracks),
        )
        return TransformedClip(
            np.ascontiguousarray(out["images"]),
            np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
            np.asarray(out["labels"], np.float64).astype(np.int64).reshape(-1),
            np.asarray(out["box_frames"], np.float64).astype(np.int64).reshape(-1),
            np.asarray(out["tracks"], np.float64).astype(np.int64).reshape(-1),
        )
