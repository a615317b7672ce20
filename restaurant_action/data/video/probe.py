"""One frame index per video file, shared by every decoding backend.

A demux pass with PyAV (FFmpeg) reads the container's packets without decoding them: their
count is the number of frames the file holds (a header may claim more or fewer), their
presentation timestamps in ascending order number the frames (frame ``k`` is the ``k``-th
picture shown, with B-frames or not, at a variable frame rate or not), and the keyframe flags
say where a decoder can start. A packet FFmpeg marks corrupt (its data cut short) is not a
frame when it is the file's last one (the file was cut there), and is recorded as damaged
otherwise. The pass costs a read of the file, no decoding; its result is kept per process,
keyed by the file's path, size and modification time.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from restaurant_action.errors import VideoDecodeError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamIndex:
    """What a demux pass found in a video file.

    Attributes:
        pts: ``(N,)`` int64 presentation timestamps of the frames, ascending, in ``time_base`` units.
        keyframes: ``(K,)`` int64 indices of the frames a decoder can start at, ascending.
        fps: average frame rate (frames over duration for a variable-rate file).
        width: native width in pixels.
        height: native height in pixels.
        header_frames: the frame count the container's header states (0 when it states none).
        time_base: seconds per timestamp unit.
        damaged: ``(D,)`` int64 indices of frames whose packet is corrupt, ascending.
    """

    pts: np.ndarray
    keyframes: np.ndarray
    fps: float
    width: int
    height: int
    header_frames: int
    time_base: float
    damaged: np.ndarray

    @property
    def num_frames(self) -> int:
        """Frames the container holds."""
        return len(self.pts)

    def keyframe_before(self, frame: int) -> int:
        """The last keyframe at or before ``frame`` (0 when none is)."""
        at = int(np.searchsorted(self.keyframes, frame, side="right")) - 1
        return int(self.keyframes[at]) if at >= 0 else 0

    def frame_at(self, pts: int | None) -> int | None:
        """The index of the frame with timestamp ``pts``, or ``None`` if no frame has it."""
        if pts is None:
            return None
        at = int(np.searchsorted(self.pts, pts))
        return at if at < len(self.pts) and self.pts[at] == pts else None


def probe_stream(path: str | Path) -> StreamIndex:
    """Index the first video stream of ``path`` (cached per process and file version).

    Raises:
        VideoDecodeError: a missing, empty or unreadable file, no video stream, or packets
            without timestamps; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "video file not found")
    stat = path.stat()
    if stat.st_size == 0:
        raise VideoDecodeError(path, "the video file is empty", frame=0)
    return _probe_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _probe_cached(path: str, file_size: int, mtime_ns: int) -> StreamIndex:
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise VideoDecodeError(path, f"cannot open the video ({error})", frame=0) from error
    with container:
        if not container.streams.video:
            raise VideoDecodeError(path, "the file holds no video stream", frame=0)
        stream = container.streams.video[0]
        stamps, keys, corrupt = _demux(path, container, stream)
        if corrupt and corrupt[-1]:
            logger.warning("%s: the last packet is cut short; the video ends before it", path)
            stamps, keys, corrupt = stamps[:-1], keys[:-1], corrupt[:-1]
        if not stamps:
            raise VideoDecodeError(path, "the video holds no frames", frame=0)
        order = np.argsort(np.asarray(stamps, np.int64), kind="stable")
        pts = np.asarray(stamps, np.int64)[order]
        if np.any(np.diff(pts) == 0):
            raise VideoDecodeError(path, "two frames share one timestamp; remux the file (ffmpeg -i IN -c copy OUT.mp4)")
        keyframes = np.flatnonzero(np.asarray(keys, bool)[order])
        damaged = np.flatnonzero(np.asarray(corrupt, bool)[order])
        if damaged.size:
            logger.warning("%s: the packets of frames %s are corrupt", path, damaged.tolist())
        time_base = float(stream.time_base) if stream.time_base else 0.0
        return StreamIndex(
            pts=pts,
            keyframes=keyframes if keyframes.size else np.zeros(1, np.int64),
            fps=_average_rate(stream, pts, time_base),
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            header_frames=int(stream.frames or 0),
            time_base=time_base,
            damaged=damaged,
        )


def _demux(
    path: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[list[int], list[bool], list[bool]]:
    """Timestamps, keyframe and corrupt flags of the stream's packets, in file order (up to
    the first unreadable byte: a cut file's later packets are not there)."""
    stamps: list[int] = []
    keys: list[bool] = []
    corrupt: list[bool] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                raise VideoDecodeError(
                    path, "its packets carry no timestamps; remux it (ffmpeg -i IN -c copy OUT.mp4)", frame=len(stamps)
                )
            stamps.append(int(stamp))
            keys.append(bool(packet.is_keyframe))
            corrupt.append(bool(packet.is_corrupt))
    except av.error.FFmpegError as error:
        logger.warning("%s: the container cannot be read past packet %d (%s)", path, len(stamps), error)
    return stamps, keys, corrupt


def _average_rate(stream: av.video.stream.VideoStream, pts: np.ndarray, time_base: float) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate:
        return float(rate)
    span = float(pts[-1] - pts[0]) * time_base
    return (len(pts) - 1) / span if span > 0 else 30.0
