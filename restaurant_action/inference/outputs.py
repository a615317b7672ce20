"""What a prediction writes: the detections JSON (the format ``restaurant-action evaluate``
reads), the action tubes CSV, and an annotated H.264 mp4.
"""

from __future__ import annotations

import csv
import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from restaurant_action.metrics.video_map import ActionTube
from restaurant_action.plots import draw_boxes

logger = logging.getLogger(__name__)

# H.264 (libx264, yuv420p, moov atom first) plays in every browser; MPEG-4 Part 2 is the fallback
# of an FFmpeg build without libx264, and plays in desktop players only.
VIDEO_CODECS = ("libx264", "mpeg4")
TUBE_COLUMNS = ("track", "action", "start_frame", "end_frame", "mean_score", "boxes")


class DetectionsJsonWriter:
    """Streams frame records to a predictions JSON file (docs/metrics.md), one record at a time, so
    a long video never holds all its detections in memory.

    A record is ``{"video", "frame", "boxes", "scores", "labels"}`` (labels as class names); a frame
    whose boxes are held from an earlier prediction (sparse inference) also has ``"held": true``,
    a key ``evaluate`` ignores.
    """

    def __init__(self, path: str | Path, video: str, class_names: Sequence[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.video, self.class_names = video, list(class_names)
        self._file: IO[str] = open(self.path, "w", encoding="utf-8")
        self._file.write("[")
        self.records = 0

    def write(self, frame: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, held: bool = False) -> None:
        """Append the record of one frame (``boxes (K, 4)`` native xyxy pixels)."""
        record = {
            "video": self.video, "frame": int(frame),
            "boxes": np.asarray(boxes, np.float64).reshape(-1, 4).round(2).tolist(),
            "scores": [round(float(s), 6) for s in scores],
            "labels": [self.class_names[int(label)] for label in labels],
        }
        if held:
            record["held"] = True
        self._file.write(("," if self.records else "") + "\n" + json.dumps(record))
        self.records += 1

    def close(self) -> Path:
        """Finish the file; returns its path."""
        if not self._file.closed:
            self._file.write("\n]\n")
            self._file.close()
        return self.path


def write_tubes_csv(path: str | Path, tubes: Sequence[ActionTube], class_names: Sequence[str]) -> Path:
    """Write one row per tube: ``track`` (its index, the id drawn in the video), ``action``,
    ``start_frame``, ``end_frame`` (inclusive), ``mean_score``, ``boxes`` (frames with a box)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TUBE_COLUMNS)
        for track, tube in enumerate(tubes):
            writer.writerow([track, class_names[tube.label], tube.start, tube.end, f"{tube.score:.4f}", len(tube.frames)])
    return path


class Mp4Writer:
    """Writes RGB frames to an mp4 with PyAV: H.264 (libx264, yuv420p, ``+faststart``) where the
    FFmpeg build has it, else MPEG-4 Part 2 with a warning. yuv420p needs even sizes: an odd width
    or height gets one black column or row.

    Args:
        path: the mp4 to write.
        size: ``(width, height)`` of the frames.
        fps: frame rate (kept as an exact fraction, e.g. 30000/1001).
        crf: H.264 quality (lower is better; 23 is libx264's default).
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, crf: int = 23) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.padded = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        self.codec = next(c for c in VIDEO_CODECS if c in av.codecs_available)
        if self.codec != VIDEO_CODECS[0]:
            logger.warning("%s: this FFmpeg build has no libx264; writing MPEG-4 Part 2, which browsers do not play", self.path)
        self._container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
        self._stream = self._container.add_stream(self.codec, rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height = self.padded
        self._stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 ``(H, W, 3)`` frame of the writer's size."""
        import av

        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise ValueError(f"{self.path}: frame of {frame.shape[1]}x{frame.shape[0]}, the video is {self.size[0]}x{self.size[1]}")
        if self.padded != self.size:
            canvas = np.zeros((self.padded[1], self.padded[0], 3), np.uint8)
            canvas[: frame.shape[0], : frame.shape[1]] = frame
            frame = canvas
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Flush the encoder and close the file; returns its path."""
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        return self.path


def annotate_frame(frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                   tracks: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """A copy of ``frame`` with each box drawn in its action's colour and captioned
    ``#track action score`` (``tracks`` of -1 are left out of the caption)."""
    names = [class_names[int(label)] for label in labels]
    captions = [f"#{int(track)} {name}" if track >= 0 else name for track, name in zip(tracks, names)]
    return draw_boxes(frame, boxes, captions, scores, color_keys=names)
