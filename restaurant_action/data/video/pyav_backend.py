"""PyAV (FFmpeg's own libraries): frame-exact access by presentation timestamp.

Frames are found by the timestamps of the shared ``StreamIndex``, never by counting after a
seek, so B-frames, long GOPs and variable frame rates cannot shift an index. A request is
served by decoding forward from the keyframe before it, or by continuing the pass already
under way when no keyframe lies between; only the frames asked for are converted to RGB.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from restaurant_action.data.video.base import FileVideo, first_line
from restaurant_action.data.video.probe import StreamIndex
from restaurant_action.errors import VideoDecodeError

logger = logging.getLogger(__name__)

# Colour spaces that OpenCV's I420 conversion (ITU-R BT.601, limited range) renders as FFmpeg
# does: unspecified, BT.470BG and SMPTE 170M. Other tags and full-range frames go through FFmpeg.
_BT601_TAGS = (2, 5, 6)
_JPEG_RANGE = 2
# Seeks tried from ever earlier keyframes before a request decodes from the file's start.
_SEEK_ATTEMPTS = 3


class _Pass:
    """One open container and the decoding pass under way in it.

    The pass is a plain object (no generator holding it): a reference cycle would leave a
    dropped pass to the garbage collector, which could then free its decoder in a forked child.
    """

    def __init__(self, path: str, threads: int) -> None:
        self.path = path
        self.container = av.open(path, metadata_errors="ignore")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        self.stream.thread_count = threads
        self.packets: Iterator[av.Packet] | None = None
        self.pending: deque[av.VideoFrame] = deque()
        self.ended = True
        self.position: int | None = None  # the index the next picture should have
        self.reformatter = VideoReformatter()  # keeps FFmpeg's conversion context between pictures

    def restart(self, index: StreamIndex, keyframe: int | None) -> None:
        """Start a new pass at ``keyframe`` (``None``: at the start of the file)."""
        stamp = 0 if keyframe is None else int(index.pts[keyframe])
        self.container.seek(stamp, backward=True, any_frame=False, stream=self.stream)
        self.packets = self.container.demux(self.stream)
        self.pending.clear()
        self.ended = False
        self.position = 0 if keyframe is None else keyframe

    def _decoded(self) -> av.VideoFrame | None:
        """The next decoded picture in presentation order, or ``None`` at the end of the pass.
        A packet that fails to decode is logged and skipped; a container that cannot be read
        further ends the pass after the decoder is drained."""
        while not self.pending and not self.ended:
            assert self.packets is not None
            try:
                packet = next(self.packets)
            except StopIteration:
                self.ended = True
                continue
            except av.error.FFmpegError as error:
                logger.warning("%s: the container cannot be read further (%s)", self.path, first_line(error))
                self.ended = True
                self._decode(None)
                continue
            self._decode(packet)
        return self.pending.popleft() if self.pending else None

    def _decode(self, packet: av.Packet | None) -> None:
        try:
            self.pending.extend(self.stream.decode(packet))
        except av.error.FFmpegError as error:
            where = "the decoder's last pictures" if packet is None else f"a packet at timestamp {packet.pts}"
            logger.warning("%s: %s do not decode (%s); skipped", self.path, where, first_line(error))

    def next_picture(self, index: StreamIndex) -> tuple[int, av.VideoFrame] | None:
        """The next picture with a known index, or ``None`` at the end of the stream."""
        while (picture := self._decoded()) is not None:
            found = index.frame_at(picture.pts)
            if found is not None:
                self.position = found + 1
                return found, picture
        return None


class PyAVVideo(FileVideo):
    """A video file read with PyAV, frame-exact by presentation timestamp.

    Resizing converts the YUV 4:2:0 planes with OpenCV's area filter before the colour
    conversion (cheaper than converting at full size); other pixel formats are converted by
    FFmpeg and resized with the same filter.

    Args:
        path: the video file.
        size: output ``(width, height)``; ``None`` keeps the native size.
        num_threads: decoder threads per reader (FFmpeg's frame and slice threads when > 1).
    """

    backend = "pyav"

    def _open(self) -> _Pass:
        try:
            return _Pass(str(self.path), self.num_threads)
        except (av.error.FFmpegError, IndexError) as error:
            raise VideoDecodeError(self.path, f"cannot open the video ({first_line(error)})", frame=0) from error

    def _decode(self, sorted_indices: np.ndarray) -> np.ndarray:
        index = self.index
        width, height = self.size
        out = np.empty((len(sorted_indices), height, width, 3), np.uint8)
        decoder: _Pass = self.reader()
        for slot, target in enumerate(sorted_indices.tolist()):
            out[slot] = self._to_rgb(self._seek_and_read(decoder, index, target), decoder.reformatter)
        return out

    def _seek_and_read(self, decoder: _Pass, index: StreamIndex, target: int) -> av.VideoFrame:
        """The picture of frame ``target``, continuing the pass when no keyframe lies between."""
        keyframe = index.keyframe_before(target)
        if decoder.position is not None and keyframe <= decoder.position <= target:
            picture = self._read_until(decoder, index, target)
            if picture is not None:
                return picture
        for start in _seek_starts(index, keyframe):
            self._restart(decoder, index, start)
            picture = self._read_until(decoder, index, target)
            if picture is not None:
                return picture
        raise VideoDecodeError(self.path, "no picture decodes for this frame; the file is corrupt here", frame=target)

    def _restart(self, decoder: _Pass, index: StreamIndex, keyframe: int | None) -> None:
        try:
            decoder.restart(index, keyframe)
        except av.error.FFmpegError as error:
            raise VideoDecodeError(self.path, f"cannot seek ({first_line(error)})", frame=keyframe or 0) from error

    def _read_until(self, decoder: _Pass, index: StreamIndex, target: int) -> av.VideoFrame | None:
        """Decode forward to ``target``: its picture, or ``None`` if the pass went past it.

        Raises:
            VideoDecodeError: the stream ended before ``target`` (the file holds fewer frames
                that decode than its container lists).
        """
        while True:
            found = decoder.next_picture(index)
            if found is None:
                raise self.found_end(decoder.position or 0, target)
            frame, picture = found
            if frame == target:
                return picture
            if frame > target:
                return None

    def _to_rgb(self, picture: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
        """uint8 ``(H, W, 3)`` RGB at ``self.size``."""
        if self.size_request is None or self.size_request == (picture.width, picture.height):
            return reformatter.reformat(picture, format="rgb24").to_ndarray()
        width, height = self.size_request
        planar = (
            picture.format.name == "yuv420p"
            and picture.colorspace in _BT601_TAGS
            and picture.color_range != _JPEG_RANGE
            and width % 2 == 0
            and height % 2 == 0
            and picture.width % 2 == 0
            and picture.height % 2 == 0
        )
        if not planar:
            rgb = reformatter.reformat(picture, format="rgb24").to_ndarray()
            return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        return _resize_i420(picture.to_ndarray(), picture.width, picture.height, width, height)


def _seek_starts(index: StreamIndex, keyframe: int) -> Iterator[int | None]:
    """Where to restart a pass for a frame after ``keyframe``: that keyframe, then up to
    ``_SEEK_ATTEMPTS - 1`` earlier ones (a seek can land late), then the start of the file
    (``None``). Computed only as far as the retries go."""
    start = keyframe
    for _ in range(_SEEK_ATTEMPTS - 1):
        yield start
        earlier = index.keyframe_before(start - 1) if start else None
        if earlier is None or earlier == start:
            break
        start = earlier
    else:
        yield start
    yield None


def _resize_i420(planes: np.ndarray, width: int, height: int, out_width: int, out_height: int) -> np.ndarray:
    """Resize an I420 picture (``W * H * 3/2`` bytes: Y, then U and V at half size) plane by
    plane with the area filter, then convert it to RGB ``(out_height, out_width, 3)``."""
    flat = planes.reshape(-1)
    luma_bytes, chroma_bytes = width * height, (width // 2) * (height // 2)
    half = (out_width // 2, out_height // 2)
    luma = cv2.resize(flat[:luma_bytes].reshape(height, width), (out_width, out_height), interpolation=cv2.INTER_AREA)
    chroma = [
        cv2.resize(flat[start : start + chroma_bytes].reshape(height // 2, width // 2), half, interpolation=cv2.INTER_AREA)
        for start in (luma_bytes, luma_bytes + chroma_bytes)
    ]
    i420 = np.concatenate([luma.reshape(-1), chroma[0].reshape(-1), chroma[1].reshape(-1)])
    return cv2.cvtColor(i420.reshape(out_height * 3 // 2, out_width), cv2.COLOR_YUV2RGB_I420)
