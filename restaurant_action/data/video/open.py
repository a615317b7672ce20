"""Choosing a decoding backend, opening a video through it, and locating videos by name."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from restaurant_action.data.video.base import FileVideo, VideoSource
from restaurant_action.data.video.cache import CachedVideo
from restaurant_action.data.video.decord_backend import DecordVideo
from restaurant_action.data.video.folder import FrameFolder
from restaurant_action.data.video.pyav_backend import PyAVVideo
from restaurant_action.data.video.torchcodec_backend import (
    TorchcodecVideo,
    torchcodec_ffmpeg_version,
)
from restaurant_action.errors import VideoDecodeError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
BACKENDS: dict[str, type[FileVideo]] = {"pyav": PyAVVideo, "decord": DecordVideo, "torchcodec": TorchcodecVideo}
# ``auto`` takes the first installed backend of this order: the fastest that is frame-exact on
# every file of the test matrix, by benchmarks/video.py (docs/performance.md).
AUTO_ORDER = ("pyav", "decord", "torchcodec")
# Names the backend ``auto`` means for a whole run (DataLoader workers inherit it).
BACKEND_VARIABLE = "RESTAURANT_ACTION_VIDEO_BACKEND"


@functools.cache
def available_backends() -> tuple[str, ...]:
    """The decoding backends that work in this environment, in ``auto``'s order of preference."""
    working = []
    for name in AUTO_ORDER:
        if name == "decord":
            try:
                import decord  # noqa: F401
            except ImportError:
                continue
        if name == "torchcodec" and torchcodec_ffmpeg_version() is None:
            continue
        working.append(name)
    return tuple(working)


def resolve_backend(backend: str = "auto") -> str:
    """The backend ``backend`` names. ``"auto"`` is the one the environment variable
    ``RESTAURANT_ACTION_VIDEO_BACKEND`` names, else the first of ``available_backends()``.

    Raises:
        ValueError: an unknown name, or a backend that is not installed or cannot load FFmpeg.
    """
    if backend == "auto":
        chosen = os.environ.get(BACKEND_VARIABLE, "auto").strip() or "auto"
        return available_backends()[0] if chosen == "auto" else resolve_backend(chosen)
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    if backend not in available_backends():
        hint = (
            "torchcodec needs FFmpeg 4-9 shared libraries on the system (make links PyAV's into .venv/ffmpeg)"
            if backend == "torchcodec"
            else f"pip install {backend}"
        )
        raise ValueError(f"video backend {backend!r} is not available here: {hint}")
    return backend


def open_video(
    path: str | Path,
    size: tuple[int, int] | None = None,
    num_threads: int = 1,
    cache_dir: str | Path | None = None,
    fps: float = 30.0,
    fill_frames: np.ndarray | None = None,
    backend: str = "auto",
) -> VideoSource:
    """Open a video file or a frame folder, optionally behind a resized-frame cache.

    Args:
        path: a video file (``.mp4`` …) or a folder of ``.jpg``/``.png`` frames.
        size: output ``(width, height)``; ``None`` keeps the native size.
        num_threads: decoder threads for video files.
        cache_dir: if given, frames are cached there as uint8 memmaps after first decode.
        fps: frame rate reported for frame folders.
        fill_frames: with a cache, the frames worth storing when a window is filled (see
            ``CachedVideo``); ``None`` stores whole windows.
        backend: ``"auto"``, ``"pyav"``, ``"decord"`` or ``"torchcodec"`` for video files
            (folders are read with OpenCV whatever it says).

    Returns:
        A lazily opened ``VideoSource``.
    """
    path = Path(path)
    source: VideoSource
    chosen = resolve_backend(backend)
    if path.is_dir():
        source = FrameFolder(path, size, fps)
    elif path.is_file():
        source = BACKENDS[chosen](path, size, num_threads)
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
