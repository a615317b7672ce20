"""The ``VideoSource`` interface every backend implements, and the per-process reader life cycle
of the file backends.

Every source has ``num_frames``, ``fps``, ``width``/``height`` (native), ``size`` (output
``(W, H)``) and ``frames(indices) -> uint8 (N, H, W, 3)`` in RGB. Readers are opened lazily in
the process that reads (safe with DataLoader workers under ``fork`` and ``spawn``) and are never
pickled.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from restaurant_action.data.video.probe import StreamIndex, probe_stream
from restaurant_action.errors import VideoDecodeError

logger = logging.getLogger(__name__)

# A reader inherited through fork must never be destroyed in the child: FFmpeg's decoder
# threads exist only in the parent, and freeing the codec context would wait for them forever.
# Every open reader is tracked, and a forked child keeps them all alive.
_OPEN_READERS: weakref.WeakSet[ProcessReader] = weakref.WeakSet()
_INHERITED_READERS: list[ProcessReader] = []
os.register_at_fork(after_in_child=lambda: _INHERITED_READERS.extend(_OPEN_READERS))


class ProcessReader:
    """A backend's open decoder, owned by the process that opened it.

    Args:
        handle: the backend's reader object (a decord ``VideoReader``, a PyAV container, …).
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.pid = os.getpid()
        _OPEN_READERS.add(self)


class VideoSource:
    """Base class of frame sources: metadata plus batched, sorted frame decoding.

    Args:
        path: the video file or frame folder.
        size: output ``(width, height)`` in pixels; ``None`` keeps the native size.
    """

    backend = "none"

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.size_request = size
        self._meta: tuple[int, float, int, int] | None = None

    def _probe(self) -> tuple[int, float, int, int]:
        """Return ``(num_frames, fps, width, height)`` read from the file."""
        raise NotImplementedError

    def _decode(self, sorted_indices: np.ndarray) -> np.ndarray:
        """Decode ascending, unique, in-range indices to uint8 ``(N, H, W, 3)`` at ``self.size``."""
        raise NotImplementedError

    @property
    def meta(self) -> tuple[int, float, int, int]:
        """``(num_frames, fps, width, height)``, probed on first use."""
        if self._meta is None:
            self._meta = self._probe()
            if self._meta[0] <= 0:
                raise VideoDecodeError(self.path, "the video holds no frames", frame=0)
        return self._meta

    @property
    def num_frames(self) -> int:
        """Number of frames that decode (see ``FileVideo`` for how a file's count is found)."""
        return self.meta[0]

    def __len__(self) -> int:
        return self.num_frames

    @property
    def fps(self) -> float:
        """Frames per second (the average rate for variable-rate files)."""
        return self.meta[1]

    @property
    def width(self) -> int:
        """Native width in pixels."""
        return self.meta[2]

    @property
    def height(self) -> int:
        """Native height in pixels."""
        return self.meta[3]

    @property
    def size(self) -> tuple[int, int]:
        """Output ``(width, height)`` of decoded frames."""
        return self.size_request or (self.width, self.height)

    def frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Decode frames in any order, with repeats.

        Decoding happens once per distinct frame, in ascending order, so that nearby frames
        share one seek; the result is put back in the order asked.

        Args:
            indices: 0-based frame indices.

        Returns:
            uint8 array ``(N, H, W, 3)``, RGB, at ``self.size``.

        Raises:
            VideoDecodeError: an index outside ``[0, num_frames)`` (before any decoder is asked),
                or a frame that does not decode; both name the file and the frame.
        """
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size == 0:
            width, height = self.size
            return np.zeros((0, height, width, 3), np.uint8)
        bad = wanted[(wanted < 0) | (wanted >= self.num_frames)]
        if bad.size:
            raise VideoDecodeError(
                self.path, f"outside the video, which has {self.num_frames} frames", frame=int(bad[0])
            )
        unique, inverse = np.unique(wanted, return_inverse=True)
        return self._decode(unique)[inverse]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader"] = None
        return state


class FileVideo(VideoSource):
    """A video file read by one decoding backend, with metadata from the shared ``probe_stream``.

    The frame count is the number of video packets the container really holds (a demux pass,
    no decoding), not the header's claim; it is confirmed lazily: a backend that finds the
    stream ending earlier lowers ``num_frames`` to the frames that decoded and raises
    ``VideoDecodeError`` naming the first missing frame.

    Args:
        path: the video file.
        size: output ``(width, height)``; ``None`` keeps the native size.
        num_threads: decoder threads per reader (keep small when DataLoader workers run).
    """

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, num_threads: int = 1) -> None:
        super().__init__(path, size)
        self.num_threads = max(1, int(num_threads))
        self._reader: ProcessReader | None = None
        self._index: StreamIndex | None = None

    @property
    def index(self) -> StreamIndex:
        """The file's frame index (presentation timestamps, keyframes, header claim), probed on
        first use and kept, as ``meta`` is (it travels with the source to DataLoader workers)."""
        if self._index is None:
            self._index = probe_stream(self.path)
        return self._index

    def _probe(self) -> tuple[int, float, int, int]:
        index = self.index
        return index.num_frames, index.fps, index.width, index.height

    def frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Decode frames in any order, with repeats (see ``VideoSource.frames``).

        Raises:
            VideoDecodeError: also for a frame whose packet the container marks corrupt.
        """
        damaged = self.index.damaged
        if damaged.size:
            hit = np.intersect1d(np.asarray(indices, np.int64).reshape(-1), damaged)
            if hit.size:
                raise VideoDecodeError(self.path, "its data in the file is corrupt", frame=int(hit[0]))
        return super().frames(indices)

    def _open(self) -> Any:
        """Open the backend's reader for this file (in the calling process)."""
        raise NotImplementedError

    def reader(self) -> Any:
        """This process's open reader, opened on first use (a forked child opens its own)."""
        if self._reader is None or self._reader.pid != os.getpid():
            if not self.path.is_file():
                raise VideoDecodeError(self.path, "video file not found")
            self._reader = ProcessReader(self._open())
        return self._reader.handle

    def close(self) -> None:
        """Drop this process's reader (it is reopened on the next read)."""
        self._reader = None

    def check_reader_length(self, sorted_indices: np.ndarray, holds: int) -> None:
        """Raise ``found_end`` when a backend's reader holds fewer frames than ``sorted_indices`` reach."""
        if int(sorted_indices[-1]) >= holds:
            raise self.found_end(holds, int(sorted_indices[sorted_indices >= holds][0]))

    def first_failing_frame(
        self, sorted_indices: np.ndarray, read_one: Callable[[int], Any], errors: tuple[type[BaseException], ...]
    ) -> int:
        """After a batched read failed: the first of ``sorted_indices`` that ``read_one`` cannot read
        on a fresh reader (the first index if each reads alone)."""
        self.close()
        for index in sorted_indices.tolist():
            try:
                read_one(index)
            except errors:
                self.close()
                return index
        return int(sorted_indices[0])

    def found_end(self, decoded: int, wanted: int) -> VideoDecodeError:
        """Record that only ``decoded`` frames decode; return the error for frame ``wanted``."""
        listed = self.num_frames
        if decoded < listed:
            logger.warning("%s: only %d of the %d frames its container lists decode", self.path, decoded, listed)
            self._meta = (decoded, *self.meta[1:])
        return VideoDecodeError(
            self.path, f"the video ends after {decoded} decodable frames (its container lists {listed})", frame=wanted
        )


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
