"""Random frame access to videos (decord) and frame folders, with an optional resized-frame cache.

Every source has the same interface: ``num_frames``, ``fps``, ``width``/``height`` (native),
``size`` (output ``(W, H)``) and ``frames(indices) -> uint8 (N, H, W, 3)`` in RGB. Readers are
opened lazily in the process that reads (safe with DataLoader workers and ``fork``) and are
never pickled.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import weakref
from pathlib import Path
from typing import IO, Sequence

import cv2
import numpy as np

from restaurant_action.errors import DatasetError, VideoDecodeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# A decord reader inherited through fork must never be destroyed in the child: its destructor
# waits for decoder threads that exist only in the parent, and would hang the process. Every
# open reader is tracked, and a forked child keeps them all alive.
_OPEN_READERS: "weakref.WeakSet" = weakref.WeakSet()
_INHERITED_READERS: list = []
os.register_at_fork(after_in_child=lambda: _INHERITED_READERS.extend(_OPEN_READERS))
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


class VideoSource:
    """Base class of frame sources: metadata plus batched, sorted frame decoding.

    Args:
        path: the video file or frame folder.
        size: output ``(width, height)`` in pixels; ``None`` keeps the native size.
    """

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
        if self._meta is None:
            self._meta = self._probe()
            if self._meta[0] <= 0:
                raise VideoDecodeError(self.path, "the video holds no frames", frame=0)
        return self._meta

    @property
    def num_frames(self) -> int:
        """Number of frames."""
        return self.meta[0]

    def __len__(self) -> int:
        return self.num_frames

    @property
    def fps(self) -> float:
        """Frames per second."""
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
        """
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size == 0:
            width, height = self.size
            return np.zeros((0, height, width, 3), np.uint8)
        bad = wanted[(wanted < 0) | (wanted >= self.num_frames)]
        if bad.size:
            raise DatasetError(
                self.path,
                f"frame {int(bad[0])} is outside the video, which has {self.num_frames} frames",
            )
        unique, inverse = np.unique(wanted, return_inverse=True)
        return self._decode(unique)[inverse]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader"] = None
        return state


class DecordVideo(VideoSource):
    """A video file read with decord, resized by the decoder itself.

    Args:
        path: the video file.
        size: output ``(width, height)``; ``None`` keeps the native size.
        num_threads: decoder threads per reader (keep small when DataLoader workers run).
    """

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, num_threads: int = 1) -> None:
        super().__init__(path, size)
        self.num_threads = num_threads
        self._reader = None
        self._reader_pid: int | None = None

    def _open(self, width: int = -1, height: int = -1):
        import decord

        if not self.path.is_file():
            raise VideoDecodeError(self.path, "video file not found")
        if self.path.stat().st_size == 0:
            raise VideoDecodeError(self.path, "the video file is empty", frame=0)
        try:
            return decord.VideoReader(
                str(self.path), ctx=decord.cpu(0), width=width, height=height, num_threads=self.num_threads
            )
        except (RuntimeError, decord.DECORDError) as error:
            raise VideoDecodeError(self.path, f"cannot open the video ({_first_line(error)})", frame=0) from error

    def _probe(self) -> tuple[int, float, int, int]:
        reader = self._open()
        height, width = reader[0].shape[:2] if len(reader) else (0, 0)
        meta = (len(reader), float(reader.get_avg_fps()), int(width), int(height))
        del reader
        return meta

    def reader(self):
        """The decord ``VideoReader`` of this process, opened on first use."""
        if self._reader is None or self._reader_pid != os.getpid():
            width, height = self.size_request or (-1, -1)
            self._reader = self._open(width, height)
            self._reader_pid = os.getpid()
            _OPEN_READERS.add(self._reader)
        return self._reader

    def _decode(self, sorted_indices: np.ndarray) -> np.ndarray:
        import decord

        reader = self.reader()
        try:
            return reader.get_batch(sorted_indices.tolist()).asnumpy()
        except (RuntimeError, decord.DECORDError) as error:
            failed = self._first_failing_frame(sorted_indices)
            raise VideoDecodeError(
                self.path, f"cannot decode ({_first_line(error)}); the file is corrupt or truncated", frame=failed
            ) from error

    def _first_failing_frame(self, sorted_indices: np.ndarray) -> int:
        import decord

        self._reader = None
        for index in sorted_indices.tolist():
            try:
                self.reader().get_batch([index])
            except (RuntimeError, decord.DECORDError):
                self._reader = None
                return index
        return int(sorted_indices[0])


class FrameFolder(VideoSource):
    """A video stored as a folder of images (``000000.jpg``, ``000001.jpg``, … in name order).

    Args:
        path: the folder.
        size: output ``(width, height)``; ``None`` keeps the native size.
        fps: frame rate to report (folders carry none).
    """

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
            stem = f"{self.path.stem}-{digest}-{self.num_frames}-{width}x{height}"
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


def open_video(
    path: str | Path,
    size: tuple[int, int] | None = None,
    num_threads: int = 1,
    cache_dir: str | Path | None = None,
    fps: float = 30.0,
    fill_frames: np.ndarray | None = None,
) -> VideoSource:
    """Open a video file (decord) or a frame folder, optionally behind a resized-frame cache.

    Args:
        path: a video file (``.mp4`` …) or a folder of ``.jpg``/``.png`` frames.
        size: output ``(width, height)``; ``None`` keeps the native size.
        num_threads: decoder threads for video files.
        cache_dir: if given, frames are cached there as uint8 memmaps after first decode.
        fill_frames: with a cache, the frames worth storing when a window is filled (see
            ``CachedVideo``); ``None`` stores whole windows.
        fps: frame rate reported for frame folders.

    Returns:
        A lazily opened ``VideoSource``.
    """
    path = Path(path)
    source: VideoSource
    if path.is_dir():
        source = FrameFolder(path, size, fps)
    elif path.is_file():
        source = DecordVideo(path, size, num_threads)
    else:
        raise VideoDecodeError(path, "video not found (neither a video file nor a frame folder)")
    return CachedVideo(source, cache_dir, fill_frames=fill_frames) if cache_dir is not None else source


def find_video(videos_dir: str | Path, name: str) -> Path:
    """Locate video ``name`` in ``videos_dir`` as a frame folder or a file with a video suffix.

    Raises:
        VideoDecodeError: if neither exists.
    """
    videos_dir = Path(videos_dir)
    folder = videos_dir / name
    if folder.is_dir():
        return folder
    for suffix in VIDEO_SUFFIXES:
        candidate = videos_dir / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    raise VideoDecodeError(videos_dir / f"{name}.mp4", f"video {name!r} not found in {videos_dir}")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
