"""The resized-frame cache: decoded frames kept in an on-disk memmap, filled by window."""

from __future__ import annotations

import errno
import fcntl
import hashlib
from pathlib import Path
from typing import IO

import numpy as np

from restaurant_action.data.video.base import VideoSource
from restaurant_action.errors import VideoDecodeError


class CachedVideo(VideoSource):
    """A source whose resized frames are kept in an on-disk uint8 memmap after first decode.

    The cache holds ``(num_frames, H, W, 3)`` frames plus a one-byte-per-frame "filled" mask,
    so that DataLoader workers fill it concurrently and epochs after the first never decode.
    A miss decodes the whole aligned window of ``fill_window`` frames around it in one
    sequential read: random access into long-GOP video costs a seek and up to a GOP of
    decoding per frame, while labelled frames come in runs, so their neighbours are wanted
    soon. A cache is tied to the source's path, length and output size through its file name.

    Args:
        source: the decoding source (its ``size`` is the cached size).
        cache_dir: folder for the cache files.
        fill_window: frames decoded together on a miss (aligned to multiples of it).
        fill_frames: if given, a window fill stores only these frames (and the ones asked for):
            the decoder still passes over the others, as the codec requires, but skips their
            colour conversion and resizing. Datasets pass the frames they will ever ask for.
    """

    def __init__(self, source: VideoSource, cache_dir: str | Path, fill_window: int = 64, fill_frames: np.ndarray | None = None) -> None:
        super().__init__(source.path, source.size_request)
        self.source = source
        self.backend = source.backend
        self.fill_window = max(1, fill_window)
        self.fill_frames = None if fill_frames is None else np.unique(np.asarray(fill_frames, np.int64))
        self.cache_dir = Path(cache_dir)
        self._frames: np.memmap | None = None
        self._filled: np.memmap | None = None
        self._cache_paths: tuple[Path, Path] | None = None

    def _probe(self) -> tuple[int, float, int, int]:
        return self.source.meta

    def _paths(self) -> tuple[Path, Path]:
        """The cache's frame and mask files, named on first use (and kept when pickled)."""
        if self._cache_paths is None:
            width, height = self.size
            if not self.path.exists():
                raise VideoDecodeError(self.path, "video not found")
            stat = self.path.stat()
            # The file's size and modification time are part of the key: a video rewritten in
            # place gets a new cache instead of the old frames.
            digest = hashlib.sha1(f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
            stem = f"{self.path.stem}-{digest}-{self.num_frames}-{width}x{height}-{self.backend}"
            self._cache_paths = (self.cache_dir / f"{stem}.u8", self.cache_dir / f"{stem}.filled")
        return self._cache_paths

    def _open_cache(self) -> tuple[np.memmap, np.memmap]:
        if self._frames is None:
            width, height = self.size
            frames_path, filled_path = self._paths()
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            shape = (self.num_frames, height, width, 3)
            for path, nbytes in ((frames_path, int(np.prod(shape))), (filled_path, self.num_frames)):
                if not path.exists():
                    with open(path, "wb") as handle:
                        handle.truncate(nbytes)
            self._frames = np.memmap(frames_path, np.uint8, "r+", shape=shape)
            self._filled = np.memmap(filled_path, np.uint8, "r+", shape=(self.num_frames,))
        return self._frames, self._filled

    def _decode(self, sorted_indices: np.ndarray) -> np.ndarray:
        frames, filled = self._open_cache()
        missing = sorted_indices[filled[sorted_indices] == 0]
        if missing.size:
            # Each window is locked on its own byte range of the mask file: two workers never
            # decode the same window twice, yet fill different windows at the same time. A
            # window another worker is filling is left for last (it is usually done by then)
            # instead of waiting for it while other windows are still to decode.
            with open(self._paths()[1], "r+b") as lock:
                starts = [int(s) for s in np.unique(missing // self.fill_window) * self.fill_window]
                busy = [start for start in starts if not self._fill_window(lock, start, missing, blocking=False)]
                for start in busy:
                    self._fill_window(lock, start, missing, blocking=True)
        return np.asarray(frames[sorted_indices])

    def _fill_window(self, lock: IO[bytes], start: int, missing: np.ndarray, blocking: bool) -> bool:
        """Decode the unfilled frames of the window at ``start`` under its lock; ``False`` if the
        lock is held elsewhere and ``blocking`` is off."""
        frames, filled = self._open_cache()
        length = min(self.fill_window, self.num_frames - start)
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        try:
            window = np.arange(start, start + length)
            if self.fill_frames is not None:
                window = window[np.isin(window, self.fill_frames) | np.isin(window, missing)]
            window = window[filled[window] == 0]
            if window.size:
                frames[window] = self.source.frames(window)
                filled[window] = 1
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN, length, start)
        return True

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_frames"] = state["_filled"] = None
        return state
