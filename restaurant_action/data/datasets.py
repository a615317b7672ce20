"""Frame and clip datasets over ``ActionAnnotations``.

Both decode through ``VideoSource`` at the letterbox size (a 1280×720 video trained at 320 px
is decoded straight to 320×180), batch their decoding per video in ascending frame order
(``__getitems__``), and return uint8 images; models scale to ``[0, 1]`` themselves.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.transforms import ClipTransform
from restaurant_action.data.video import VideoSource, open_video


@dataclass(frozen=True)
class FrameRef:
    """One sample: a frame of a video (the key frame, for clips)."""

    video: str
    frame: int


def letterbox_scale(width: int, height: int, image_size: tuple[int, int]) -> float:
    """Factor that fits a ``width``×``height`` frame inside ``image_size`` ``(W, H)`` keeping its aspect."""
    return min(image_size[0] / width, image_size[1] / height)


def letterbox_content_size(width: int, height: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """``(W, H)`` of a ``width``×``height`` frame resized into ``image_size`` ``(W, H)`` keeping its
    aspect: the letterbox's content, what the decoders resize to."""
    scale = letterbox_scale(width, height, image_size)
    return max(1, round(width * scale)), max(1, round(height * scale))


def letterbox_to_frame(boxes: np.ndarray, frame_size: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Map boxes from a letterboxed image back to the original frame.

    Args:
        boxes: ``(K, 4)`` xyxy pixels in the ``image_size`` ``(W, H)`` letterboxed image.
        frame_size: the original frame's ``(width, height)``.
        image_size: the letterboxed image's ``(W, H)``.

    Returns:
        ``(K, 4)`` xyxy pixels in the original frame, clipped to it.
    """
    width, height = frame_size
    scale = letterbox_scale(width, height, image_size)
    content_width, content_height = letterbox_content_size(width, height, image_size)
    pad_x = (image_size[0] - content_width) // 2
    pad_y = (image_size[1] - content_height) // 2
    out = (np.asarray(boxes, np.float64).reshape(-1, 4) - [pad_x, pad_y, pad_x, pad_y]) / scale
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out.astype(np.float32)


class _VideoFrames:
    """Per-video sources decoding at the letterbox size, opened lazily in each process."""

    def __init__(
        self,
        annotations: ActionAnnotations,
        image_size: tuple[int, int],
        cache_dir: str | Path | None,
        decode_threads: int,
        wanted: dict[str, np.ndarray] | None = None,
        video_backend: str = "auto",
    ) -> None:
        self.annotations = annotations
        self.image_size = image_size
        self.cache_dir = cache_dir
        self.decode_threads = decode_threads
        self.video_backend = video_backend
        self.wanted = wanted or {}
        self._sources: dict[str, VideoSource] = {}

    def scale(self, video: str) -> float:
        info = self.annotations.videos[video]
        return letterbox_scale(info.width, info.height, self.image_size)

    def source(self, video: str) -> VideoSource:
        if video not in self._sources:
            info = self.annotations.videos[video]
            size = letterbox_content_size(info.width, info.height, self.image_size)
            self._sources[video] = open_video(
                info.path, size, self.decode_threads, self.cache_dir, fps=info.fps,
                fill_frames=self.wanted.get(video), backend=self.video_backend,
            )
        return self._sources[video]

    def decode(self, requests: Sequence[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        """Decode ``(video, frame indices)`` requests, one batched, sorted read per video."""
        by_video: dict[str, list[int]] = defaultdict(list)
        for i, (video, _) in enumerate(requests):
            by_video[video].append(i)
        out: list[np.ndarray | None] = [None] * len(requests)
        for video, positions in by_video.items():
            indices = np.concatenate([requests[i][1] for i in positions])
            frames = self.source(video).frames(indices)
            offset = 0
            for i in positions:
                count = len(requests[i][1])
                out[i] = frames[offset : offset + count]
                offset += count
        return out  # type: ignore[return-value]


class FrameDataset(Dataset):
    """Single frames with their boxes, for frame-level detectors (YOLOv3).

    A sample is a dict: ``image`` uint8 ``(3, H, W)``, ``boxes`` float32 ``(K, 4)`` absolute
    xyxy in the output image, ``labels`` int64 ``(K,)``, ``video`` and ``frame``.

    Args:
        annotations: the dataset.
        items: frames to serve (labelled or background).
        image_size: output ``(W, H)`` or an int for a square.
        transform: letterbox/augmentation; defaults to letterbox only.
        cache_dir: optional folder for the resized-frame cache.
        decode_threads: decoder threads per video reader.
        video_backend: decoder of video files (``open_video``'s ``backend``).
    """

    def __init__(
        self,
        annotations: ActionAnnotations,
        items: Sequence[FrameRef],
        image_size: int | tuple[int, int] = 320,
        transform: ClipTransform | None = None,
        cache_dir: str | Path | None = None,
        decode_threads: int = 1,
        video_backend: str = "auto",
    ) -> None:
        self.annotations = annotations
        self.items = list(items)
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.transform = transform or ClipTransform(self.image_size)
        self.videos = _VideoFrames(annotations, self.image_size, cache_dir, decode_threads, self.wanted_frames(), video_backend)

    def wanted_frames(self) -> dict[str, np.ndarray]:
        """Every frame this dataset can ask for, per video (what a frame cache should keep)."""
        frames: dict[str, list[np.ndarray]] = defaultdict(list)
        for ref in self.items:
            frames[ref.video].append(self.clip_indices(ref))
        return {video: np.unique(np.concatenate(chunks)) for video, chunks in frames.items()}

    def __len__(self) -> int:
        return len(self.items)

    def clip_indices(self, ref: FrameRef) -> np.ndarray:
        """Frame indices to decode for one sample; the key frame is the last."""
        return np.array([ref.frame], np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Samples of a whole batch, decoded together (sorted per video)."""
        refs = [self.items[i] for i in indices]
        clips = self.videos.decode([(ref.video, self.clip_indices(ref)) for ref in refs])
        return [self._sample(ref, clip) for ref, clip in zip(refs, clips)]

    def _sample(self, ref: FrameRef, clip: np.ndarray) -> dict[str, Any]:
        boxes, labels, tracks = self.annotations.targets(ref.video, ref.frame)
        key = len(clip) - 1
        out = self.transform(clip, boxes * self.videos.scale(ref.video), labels, np.full(len(labels), key), tracks)
        keep = out.box_frames == key
        frames = torch.from_numpy(out.frames).permute(0, 3, 1, 2)
        return {
            "image" if len(clip) == 1 else "clip": frames[0] if len(clip) == 1 else frames,
            "boxes": torch.from_numpy(out.boxes[keep]),
            "labels": torch.from_numpy(out.labels[keep]),
            "tracks": torch.from_numpy(out.tracks[keep]),
            "video": ref.video,
            "frame": ref.frame,
        }


class ClipDataset(FrameDataset):
    """Clips of ``clip_length`` frames ending at a key frame, with the key frame's boxes (YOWO).

    Frame ``j`` of the clip (``0..K-1``) is ``key - (K - 1 - j) * frame_stride``, clamped
    at 0: with ``K = 4``, stride 2 and key frame 3 the clip is frames 0, 0, 1, 3. One random
    augmentation is drawn per clip and applied to all its frames.

    A sample is a dict: ``clip`` uint8 ``(T, 3, H, W)`` (key frame last), ``boxes``
    ``(K, 4)`` and ``labels`` of the key frame, ``video`` and ``frame`` (the key frame).
    """

    def __init__(
        self,
        annotations: ActionAnnotations,
        items: Sequence[FrameRef],
        image_size: int | tuple[int, int] = 224,
        clip_length: int = 16,
        frame_stride: int = 1,
        transform: ClipTransform | None = None,
        cache_dir: str | Path | None = None,
        decode_threads: int = 1,
        video_backend: str = "auto",
    ) -> None:
        if clip_length < 1 or frame_stride < 1:
            raise ValueError(f"clip_length and frame_stride must be ≥ 1, got {clip_length} and {frame_stride}")
        self.clip_length = clip_length
        self.frame_stride = frame_stride
        super().__init__(annotations, items, image_size, transform, cache_dir, decode_threads, video_backend)

    def clip_indices(self, ref: FrameRef) -> np.ndarray:
        offsets = (np.arange(self.clip_length) - (self.clip_length - 1)) * self.frame_stride
        return np.maximum(ref.frame + offsets, 0)


def collate_frames(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """YOLO-style collate.

    Returns:
        ``images`` uint8 ``(B, 3, H, W)`` (or ``clips`` ``(B, T, 3, H, W)``), ``targets``
        float32 ``(M, 6)`` rows ``[image_index, class, x1, y1, x2, y2]`` in pixels of the
        batch images, ``tracks`` int64 ``(M,)`` (the track id of each target row, for
        video-mAP), ``videos`` list of names and ``frames`` int64 ``(B,)``.
    """
    key = "image" if "image" in samples[0] else "clip"
    rows = [
        torch.cat([torch.full((len(s["labels"]), 1), float(i)), s["labels"][:, None].float(), s["boxes"]], 1)
        for i, s in enumerate(samples)
    ]
    return {
        "images" if key == "image" else "clips": torch.stack([s[key] for s in samples]),
        "targets": torch.cat(rows) if rows else torch.zeros(0, 6),
        "tracks": torch.cat([s["tracks"] for s in samples]).long() if samples else torch.zeros(0, dtype=torch.int64),
        "videos": [s["video"] for s in samples],
        "frames": torch.tensor([s["frame"] for s in samples], dtype=torch.int64),
    }
