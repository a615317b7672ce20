"""Videos stored as folders of images, one file per frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from restaurant_action.data.video.base import VideoSource
from restaurant_action.errors import VideoDecodeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class FrameFolder(VideoSource):
    """A video stored as a folder of images (``000000.jpg``, ``000001.jpg``, … in name order).

    Args:
        path: the folder.
        size: output ``(width, height)``; ``None`` keeps the native size.
        fps: frame rate to report (folders carry none).
    """

    backend = "folder"

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, fps: float = 30.0) -> None:
        super().__init__(path, size)
        self.frame_rate = fps
        self._files: list[Path] | None = None

    @property
    def files(self) -> list[Path]:
        """Image files of the folder, in frame order."""
        if self._files is None:
            if not self.path.is_dir():
                raise VideoDecodeError(self.path, "frame folder not found")
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return self._files

    def _probe(self) -> tuple[int, float, int, int]:
        if not self.files:
            raise VideoDecodeError(self.path, "the frame folder holds no .jpg/.png images", frame=0)
        height, width = self._read(0).shape[:2]
        return len(self.files), self.frame_rate, width, height

    def _read(self, index: int) -> np.ndarray:
        image = cv2.imread(str(self.files[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise VideoDecodeError(self.files[index], "cannot read the image", frame=index)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def _decode(self, sorted_indices: np.ndarray) -> np.ndarray:
        frames = [self._read(i) for i in sorted_indices.tolist()]
        if self.size_request is not None:
            frames = [cv2.resize(f, self.size_request, interpolation=cv2.INTER_AREA) for f in frames]
        return np.stack(frames)
