"""decord: random frame access with resizing inside the decoder (no release since 2022)."""

from __future__ import annotations

from typing import Any

import numpy as np

from restaurant_action.data.video.base import FileVideo, first_line
from restaurant_action.errors import VideoDecodeError


class DecordVideo(FileVideo):
    """A video file read with decord, resized by the decoder itself.

    decord is asked only for frames inside the probed count, so a header that claims more
    frames than the file holds never sends it past the real end (where it can hang).

    Args:
        path: the video file.
        size: output ``(width, height)``; ``None`` keeps the native size.
        num_threads: decoder threads per reader (keep small when DataLoader workers run).
    """

    backend = "decord"

    def _open(self) -> Any:
        import decord

        width, height = self.size_request or (-1, -1)
        try:
            return decord.VideoReader(
                str(self.path), ctx=decord.cpu(0), width=width, height=height, num_threads=self.num_threads
            )
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoDecodeError(self.path, f"cannot open the video ({first_line(error)})", frame=0) from error

    def _decode(self, sorted_indices: np.ndarray) -> np.ndarray:
        import decord

        reader = self.reader()
        self.check_reader_length(sorted_indices, len(reader))
        errors = (RuntimeError, decord.DECORDError)
        try:
            return reader.get_batch(sorted_indices.tolist()).asnumpy()
        except errors as error:
            failed = self.first_failing_frame(sorted_indices, lambda index: self.reader().get_batch([index]), errors)
            raise VideoDecodeError(
                self.path, f"cannot decode ({first_line(error)}); the file is corrupt or truncated", frame=failed
            ) from error
