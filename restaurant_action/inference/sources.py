"""Where a predictor's frames come from: files and frame folders (decoded by the library's video
layer, only the frames the model needs), and live sources (a camera, an RTSP/HTTP URL through
OpenCV, or any iterator of RGB frames).

A live source is read by its own thread into a one-frame slot: when the model is slower than the
source, the frame waiting in the slot is replaced by the newer one and counted as dropped, so
nothing queues without bound and the model always gets the newest frame.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from restaurant_action.data.video import VideoSource
from restaurant_action.errors import VideoDecodeError

logger = logging.getLogger(__name__)

Source = str | Path | int | Iterable[np.ndarray]


def is_live(source: Source) -> bool:
    """Whether ``source`` is live (a camera index, a URL or an iterator) rather than a file or folder."""
    if isinstance(source, int):
        return True
    if isinstance(source, (str, Path)):
        return "://" in str(source)
    return True


def open_capture(source: str | int) -> tuple[Iterator[np.ndarray], float]:
    """Frames of a camera index or a stream URL (OpenCV), RGB uint8 ``(H, W, 3)``, until it ends,
    and the frame rate it reports (30 if none).

    Raises:
        VideoDecodeError: the camera or stream does not open.
    """
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else "the stream"
        raise VideoDecodeError(str(source), f"cannot open {what} (OpenCV VideoCapture failed)")
    fps = capture.get(cv2.CAP_PROP_FPS)

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    return frames(), float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0


class LatestFrameReader:
    """Reads a live frame iterator in a thread, keeping only the newest unread frame.

    Iterating yields ``(index, frame)`` with ``index`` the frame's position in the source (frames
    dropped in between are skipped); ``dropped`` counts the frames replaced before they were read.

    Args:
        frames: the live iterator of RGB uint8 ``(H, W, 3)`` frames.
    """

    def __init__(self, frames: Iterable[np.ndarray]) -> None:
        self._frames = iter(frames)
        self._slot: tuple[int, np.ndarray] | None = None
        self._done = False
        self._error: BaseException | None = None
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self.dropped = 0
        self.read = 0
        self._thread = threading.Thread(target=self._pump, name="live-frames", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for index, frame in enumerate(self._frames):
                if self._stop.is_set():
                    break
                with self._condition:
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = (index, frame)
                    self.read += 1
                    self._condition.notify()
        except BaseException as error:  # handed to the consumer, raised there
            self._error = error
        finally:
            with self._condition:
                self._done = True
                self._condition.notify()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        try:
            while True:
                with self._condition:
                    while self._slot is None and not self._done:
                        self._condition.wait()
                    if self._slot is None:
                        break
                    item, self._slot = self._slot, None
                yield item
            if self._error is not None:
                raise self._error
        finally:
            self._stop.set()


def iterate_frames(source: VideoSource, wanted: Callable[[int], bool], chunk: int = 64) -> Iterator[tuple[int, np.ndarray | None]]:
    """Every index of ``source`` in order, with its decoded frame where ``wanted(index)`` (else ``None``).

    Frames are decoded ``chunk`` indices at a time (one sorted, batched read) and released after use.
    """
    for start in range(0, source.num_frames, chunk):
        indices = np.arange(start, min(start + chunk, source.num_frames))
        needed = [int(i) for i in indices if wanted(int(i))]
        decoded = dict(zip(needed, source.frames(needed))) if needed else {}
        for index in indices.tolist():
            yield index, decoded.pop(index, None)
