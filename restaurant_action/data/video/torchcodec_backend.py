"""torchcodec: PyTorch's video decoder (FFmpeg underneath, loaded from the system's libraries)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from restaurant_action.data.video.base import FileVideo, first_line
from restaurant_action.errors import VideoDecodeError


def torchcodec_ffmpeg_version() -> int | None:
    """The FFmpeg major version torchcodec loaded, or ``None`` when torchcodec is missing or
    finds no FFmpeg shared libraries (it needs FFmpeg 4 to 9 installed on the system)."""
    try:
        import torchcodec
    except ImportError:
        return None
    return torchcodec.ffmpeg_major_version


class TorchcodecVideo(FileVideo):
    """A video file read with torchcodec in its exact seek mode, resized with OpenCV's area filter.

    Args:
        path: the video file.
        size: output ``(width, height)``; ``None`` keeps the native size.
        num_threads: FFmpeg decoder threads per reader.
    """

    backend = "torchcodec"

    def _open(self) -> Any:
        from torchcodec.decoders import VideoDecoder

        try:
            return VideoDecoder(
                str(self.path), dimension_order="NHWC", num_ffmpeg_threads=self.num_threads, device="cpu", seek_mode="exact"
            )
        except (RuntimeError, ValueError) as error:
            raise VideoDecodeError(self.path, f"cannot open the video ({first_line(error)})", frame=0) from error

    def _decode(self, sorted_indices: np.ndarray) -> np.ndarray:
        decoder = self.reader()
        self.check_reader_length(sorted_indices, len(decoder))
        errors = (RuntimeError, IndexError)
        try:
            frames = decoder.get_frames_at(sorted_indices.tolist()).data.numpy()
        except errors as error:
            failed = self.first_failing_frame(sorted_indices, lambda index: self.reader().get_frames_at([index]), errors)
            raise VideoDecodeError(
                self.path, f"cannot decode ({first_line(error)}); the file is corrupt or truncated", frame=failed
            ) from error
        if self.size_request is None:
            return frames
        return np.stack([cv2.resize(frame, self.size_request, interpolation=cv2.INTER_AREA) for frame in frames])
