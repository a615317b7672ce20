"""``VideoPredictor``: a trained detector and a video in; detections, action tubes and an
annotated mp4 out.

    predictor = ra.VideoPredictor.from_checkpoint("runs/yowo.ckpt")        # any of the 3 kinds
    result = predictor.predict("shift.mp4", out="runs/shift")              # JSON, tubes.csv, annotated.mp4
    for frame_index, detections in predictor.stream(0):                    # camera, URL, iterator
        ...

Frames are decoded in chunks through the library's video layer at the letterbox size the model
was trained at (the same decode and resize as its datamodule) and released after use; each
engine (``inference.engines``) keeps only the frames its model still needs. Boxes come back in the
source's own pixels.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from restaurant_action.data.annotations import DEFAULT_MAX_GAP
from restaurant_action.data.datasets import letterbox_content_size, letterbox_to_frame
from restaurant_action.data.transforms import ClipTransform
from restaurant_action.data.video import VideoSource, open_video, resolve_backend
from restaurant_action.export import export_network, inference_network
from restaurant_action.inference.checkpoint import ModelSpec, checkpoint_spec, load_module, read_checkpoint
from restaurant_action.inference.engines import Decoded, make_engine
from restaurant_action.inference.outputs import DetectionsJsonWriter, Mp4Writer, annotate_frame, write_tubes_csv
from restaurant_action.inference.runners import BACKENDS, EagerRunner, OnnxRunner, Runner, TorchScriptRunner
from restaurant_action.inference.sources import LatestFrameReader, Source, is_live, iterate_frames, open_capture
from restaurant_action.metrics.video_map import DEFAULT_LINK_IOU, ActionTube, link_tubes
from restaurant_action.models.postprocess import select_detections

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
# Native frames decoded at a time to draw the annotated video. Chunks of a few MiB keep the peak
# RSS flat over hours of video; 64 frames at 320×180 (11 MiB) let glibc's heap fragment between
# the decoder's and the encoder's threads (+25% peak RSS from 1 to 10 minutes, measured).
DRAW_CHUNK_BYTES = 2 << 20


@dataclass
class Detections:
    """Detections shown on one frame.

    Attributes:
        boxes: ``(K, 4)`` float32 xyxy pixels of the source frame.
        scores: ``(K,)`` float32, descending.
        labels: ``(K,)`` int64 class ids.
        predicted_at: the frame these were predicted on: the frame itself, or with sparse
            inference the last predicted frame before it (``-1`` before any).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    predicted_at: int

    @classmethod
    def empty(cls) -> "Detections":
        """No detection, predicted nowhere."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), -1)


class FrameResult(NamedTuple):
    """One frame of a stream: ``frame_index`` (position in the source) and its ``detections``."""

    frame_index: int
    detections: Detections

    @property
    def held(self) -> bool:
        """Whether the detections are held from an earlier frame (sparse inference)."""
        return self.detections.predicted_at != self.frame_index


@dataclass
class PredictionResult:
    """What :meth:`VideoPredictor.predict` wrote and counted.

    Attributes:
        detections_json: predictions JSON (``restaurant-action evaluate`` reads it).
        tubes_csv: one row per linked action tube.
        video: the annotated mp4 (``None`` when not asked for).
        frames: frames with a result (read from the source).
        predicted: frames the model ran on.
        dropped: frames of a live source dropped because the model was slower.
        tubes: the linked tubes (``track`` id = position).
        seconds: wall time of the prediction pass (decoding, model, NMS, JSON).
    """

    detections_json: Path
    tubes_csv: Path
    video: Path | None
    frames: int
    predicted: int
    dropped: int
    tubes: list[ActionTube] = field(default_factory=list)
    seconds: float = 0.0


class PredictionStream:
    """Iterable of :class:`FrameResult`, in frame order; counts what it read, predicted and dropped.

    Made by :meth:`VideoPredictor.stream`; the counters are final once iteration ends.
    """

    def __init__(self, predictor: "VideoPredictor", source: Source, every: int, live: bool, progress: bool,
                 on_frame: Callable[[int, np.ndarray], None] | None = None) -> None:
        self.predictor, self.source, self.every, self.live = predictor, source, every, live
        self.progress = progress
        self.on_frame = on_frame
        self.frames = self.predicted = self.dropped = 0
        self.frame_size: tuple[int, int] | None = None
        self.fps = DEFAULT_FPS
        self.num_frames: int | None = None
        self.most_frames_in_flight = 0
        self._last = Detections.empty()  # the latest prediction, shown by the frames after it

    # ------------------------------------------------------------------ frames in
    def _file_frames(self, path: Path, wanted: Callable[[int], bool]) -> Iterator[tuple[int, np.ndarray | None]]:
        """A file's or folder's frames, decoded at the letterbox size where ``wanted``."""
        backend = self.predictor.video_backend
        native = open_video(path, backend=backend)
        self.frame_size, self.fps, self.num_frames = (native.width, native.height), native.fps, native.num_frames
        source = open_video(path, self.predictor.content_size(self.frame_size), backend=backend)
        for index, frame in iterate_frames(source, wanted):
            self.frames += 1
            yield index, frame

    def _live_frames(self, wanted: Callable[[int], bool]) -> Iterator[tuple[int, np.ndarray | None]]:
        """Native frames of a camera, URL or iterator (through the dropping reader when live)."""
        source = self.source
        if isinstance(source, (int, str, Path)):
            frames, self.fps = open_capture(source if isinstance(source, int) else str(source))
        else:
            frames = iter(source)
        reader = LatestFrameReader(frames) if self.live else None
        pairs = iter(reader) if reader is not None else enumerate(frames)
        try:
            for index, frame in pairs:
                frame = _check_frame(frame, index)
                if self.frame_size is None:
                    self.frame_size = (frame.shape[1], frame.shape[0])
                elif (frame.shape[1], frame.shape[0]) != self.frame_size:
                    raise ValueError(f"live source: frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                                     f"{self.frame_size[0]}x{self.frame_size[1]}")
                self.frames += 1
                if self.on_frame is not None:
                    self.on_frame(index, frame)
                yield index, frame
        finally:
            if reader is not None:
                self.dropped = reader.dropped

    # ------------------------------------------------------------------ results out
    def __iter__(self) -> Iterator[FrameResult]:
        predictor = self.predictor
        engine = make_engine(predictor.runner, predictor.spec, self.every, 1 if self.live else predictor.batch_size)
        replayable = not self.live and isinstance(self.source, (str, Path)) and not is_live(self.source)
        frames = self._file_frames(Path(self.source), engine.wants) if replayable else self._live_frames(engine.wants)
        waiting: deque[int] = deque()  # frames read whose result is not out yet
        bar = tqdm(total=None, unit="frame", desc="predict", disable=not (self.progress and sys.stdout.isatty()))
        try:
            for index, frame in frames:
                bar.total = self.num_frames
                waiting.append(index)
                decoded: list[Decoded] = []
                if frame is not None and engine.wants(index):
                    decoded = engine.push(index, predictor.preprocess(frame))
                self.most_frames_in_flight = max(self.most_frames_in_flight, len(waiting))
                yield from self._release(decoded, waiting)
                bar.update(1)
            yield from self._release(engine.flush(), waiting)
            while waiting:
                yield FrameResult(waiting.popleft(), self._last)
        finally:
            bar.close()

    def _release(self, decoded: list[Decoded], waiting: deque[int]) -> Iterator[FrameResult]:
        """Results up to the last predicted frame of ``decoded``: the frames waiting before a
        predicted one hold the prediction before them."""
        for batch in decoded:
            self.predicted += len(batch.frame_indices)
            for frame_index, detections in zip(batch.frame_indices, self.predictor.select(batch, self.frame_size)):
                while waiting[0] != frame_index:
                    yield FrameResult(waiting.popleft(), self._last)
                yield FrameResult(waiting.popleft(), detections)
                self._last = detections


def _check_frame(frame: Any, index: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"live source: frame {index} must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    return frame


class VideoPredictor:
    """Runs a trained YOLOv3, ConvLSTM-YOLO or YOWO over videos and live sources.

    Args:
        runner: the backend running the model's inference graph (``inference.runners``).
        spec: what the model is (kind, classes, image size, clip length, frame stride).
        every: predict every ``every``-th frame and hold the boxes in between (``1``: all).
        batch_size: frames (YOLOv3), clips (YOWO) or lanes × steps (ConvLSTM-YOLO) per model run
            on files; live sources run one at a time.
        score_threshold: detections kept in the JSON (``None``: the model's, 0.005 for mAP).
        nms_iou, max_detections: NMS settings (``None``: the model's).
        display_threshold: detections drawn in the video and linked into tubes.
        link_iou: IoU that links a box to a tube (video-mAP's linker).
        video_backend: decoder of video files (``open_video``'s ``backend``: ``"auto"``,
            ``"pyav"``, ``"decord"``, ``"torchcodec"``).
    """

    def __init__(self, runner: Runner, spec: ModelSpec, every: int = 1, batch_size: int = 8,
                 score_threshold: float | None = None, nms_iou: float | None = None, max_detections: int | None = None,
                 display_threshold: float = 0.3, link_iou: float = DEFAULT_LINK_IOU, video_backend: str = "auto") -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.runner, self.spec, self.every, self.batch_size = runner, spec, every, batch_size
        self.score_threshold = spec.score_threshold if score_threshold is None else score_threshold
        self.nms_iou = spec.nms_iou if nms_iou is None else nms_iou
        self.max_detections = spec.max_detections if max_detections is None else max_detections
        self.display_threshold, self.link_iou = display_threshold, link_iou
        self.video_backend = resolve_backend(video_backend)
        self._transform = ClipTransform(spec.image_size)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None, backend: str = "eager",
                        export_path: str | Path | None = None, image_size: int | None = None,
                        frame_stride: int | None = None, **options: Any) -> "VideoPredictor":
        """A predictor of a ``YOLOv3Module``, ``ConvLSTMYOLOModule`` or ``YOWOModule`` checkpoint
        (loaded with ``weights_only=True``); the checkpoint says which.

        Args:
            path: the Lightning checkpoint.
            device: ``"cpu"``, ``"cuda"``…; ``None``: CUDA if available.
            backend: ``"eager"`` (PyTorch), ``"onnx"`` (exported, run by ONNX Runtime) or
                ``"torchscript"``.
            export_path: where the ``onnx``/``torchscript`` backend writes the exported model
                (``None``: a temporary folder).
            image_size, frame_stride: for checkpoints that do not record them.
            **options: ``VideoPredictor`` settings (``every``, ``batch_size``, thresholds).

        Raises:
            CheckpointError: unreadable checkpoint, unknown model kind, or what is missing.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        checkpoint = read_checkpoint(path)
        spec = checkpoint_spec(checkpoint, path, image_size, frame_stride)
        network = inference_network(load_module(checkpoint, spec, path), spec)
        if backend == "eager":
            return cls(EagerRunner(network, device), spec, **options)
        suffix = ".onnx" if backend == "onnx" else ".pt"
        if export_path is None:
            export_path = Path(tempfile.mkdtemp(prefix="restaurant_action_")) / f"{Path(path).stem}{suffix}"
        export_network(network, spec, export_path, backend)
        return cls.from_export(export_path, device, **options)

    @classmethod
    def from_export(cls, path: str | Path, device: str | torch.device | None = None, **options: Any) -> "VideoPredictor":
        """A predictor of a file written by ``restaurant_action.export`` (``.onnx``: ONNX Runtime;
        otherwise TorchScript); the file carries the model spec."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: exported model not found")
        device = str(device) if device is not None else "cpu"
        runner = OnnxRunner(path, device) if path.suffix == ".onnx" else TorchScriptRunner(path, device)
        return cls(runner, runner.spec, **options)

    # ------------------------------------------------------------------ frames to detections
    def content_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """``(W, H)`` of a ``frame_size`` frame resized to fit the model's square input (the letterbox's content)."""
        return letterbox_content_size(frame_size[0], frame_size[1], (self.spec.image_size, self.spec.image_size))

    def preprocess(self, frame: np.ndarray) -> torch.Tensor:
        """RGB uint8 ``(H, W, 3)`` (native, or already at the content size) → letterboxed uint8 ``(3, S, S)``."""
        none = np.zeros(0, np.int64)
        image = self._transform(frame[None], np.zeros((0, 4)), none, none).frames[0]
        return torch.from_numpy(image).permute(2, 0, 1).contiguous()

    def select(self, decoded: Decoded, frame_size: tuple[int, int]) -> list[Detections]:
        """NMS on decoded predictions, boxes mapped back to ``frame_size`` ``(W, H)`` pixels."""
        size = self.spec.image_size
        kept = select_detections(decoded.boxes, decoded.objectness, decoded.class_probs, (size, size),
                                 score_threshold=self.score_threshold, iou_threshold=self.nms_iou,
                                 max_detections=self.max_detections)
        return [Detections(letterbox_to_frame(d["boxes"].numpy(), frame_size, (size, size)), d["scores"].numpy(),
                           d["labels"].numpy(), index) for index, d in zip(decoded.frame_indices, kept)]

    # ------------------------------------------------------------------ public API
    def stream(self, source: Source, every: int | None = None, live: bool | None = None,
               progress: bool = False) -> PredictionStream:
        """Results frame by frame: ``for frame_index, detections in predictor.stream(source)``.

        Args:
            source: a video file or frame folder; a camera index; an RTSP/HTTP URL; or an iterator
                of RGB uint8 ``(H, W, 3)`` frames.
            every: predict every ``every``-th frame (``None``: the predictor's).
            live: drop frames when the model is slower than the source (``None``: for cameras,
                URLs and iterators). A file is never live: every frame is read.
            progress: show a progress bar (frames/s, ETA) when standard output is a terminal.
        """
        live = is_live(source) if live is None else live
        if live and isinstance(source, (str, Path)) and not is_live(source):
            raise ValueError(f"{source}: a file or folder is read whole, not live; pass live=False")
        return PredictionStream(self, source, every or self.every, live, progress)

    def predict(self, source: Source, out: str | Path, every: int | None = None, video: bool = True,
                video_name: str | None = None, live: bool | None = None, progress: bool = True,
                fps: float | None = None) -> PredictionResult:
        """Predict a whole source and write ``out/detections.json``, ``out/tubes.csv`` and
        (``video``) ``out/annotated.mp4``.

        Args:
            source, every, live, progress: as for :meth:`stream`.
            out: output folder.
            video: write the annotated mp4 (boxes in the action's colour, ``#track action score``;
                the source's frame rate and size). A live source is recorded as it is read, to
                draw it after linking.
            video_name: the ``video`` of the JSON records (``None``: the file's stem, ``stream``
                for live sources); name it as in the dataset to score it with ``evaluate``.
            fps: frame rate of the annotated video of an iterator (``None``: 30).
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        every = every or self.every
        live = is_live(source) if live is None else live
        replayable = not live and isinstance(source, (str, Path))
        name = video_name or (Path(source).stem if replayable else "stream")
        recording: dict[str, Any] = {}

        def record(index: int, frame: np.ndarray) -> None:
            if "writer" not in recording:  # lossless-enough copy of what was read, drawn after linking
                recording["writer"] = Mp4Writer(out / ".recording.mp4", (frame.shape[1], frame.shape[0]), fps or stream.fps, crf=12)
            recording["writer"].write(frame)

        stream = self.stream(source, every, live, progress)
        if video and not replayable:
            stream.on_frame = record
        writer = DetectionsJsonWriter(out / "detections.json", name, self.spec.class_names)
        shown: list[tuple[int, int]] = []  # (frame, the frame whose prediction it shows)
        kept: dict[int, Detections] = {}
        start = time.perf_counter()
        try:
            for frame_index, detections in stream:
                writer.write(frame_index, detections.boxes, detections.scores, detections.labels,
                             held=detections.predicted_at != frame_index)
                shown.append((frame_index, detections.predicted_at))
                if detections.predicted_at == frame_index:
                    keep = detections.scores >= self.display_threshold
                    if keep.any():
                        kept[frame_index] = Detections(detections.boxes[keep], detections.scores[keep],
                                                       detections.labels[keep], frame_index)
        finally:
            writer.close()
            if "writer" in recording:
                recording["writer"].close()
        seconds = time.perf_counter() - start
        tubes, tracks = self._link(kept, every)
        tubes_csv = write_tubes_csv(out / "tubes.csv", tubes, self.spec.class_names)
        video_path = None
        if video and shown:
            fps_out = stream.fps if replayable else (fps or stream.fps)
            replay = open_video(source if replayable else out / ".recording.mp4", backend=self.video_backend)
            video_path = self._draw(replay, shown, kept, tracks, out / "annotated.mp4", fps_out, positional=not replayable)
        (out / ".recording.mp4").unlink(missing_ok=True)
        logger.info("%s: %d frames (%d predicted, %d dropped), %d tubes in %.1f s", name, stream.frames,
                    stream.predicted, stream.dropped, len(tubes), seconds)
        return PredictionResult(writer.path, tubes_csv, video_path, stream.frames, stream.predicted, stream.dropped,
                                tubes, seconds)

    def _link(self, kept: dict[int, Detections], every: int) -> tuple[list[ActionTube], dict[int, np.ndarray]]:
        """Tubes of the shown detections, ordered by first frame, and each frame's track ids."""
        if not kept:
            return [], {}
        frames = np.concatenate([np.full(len(d.scores), f) for f, d in kept.items()])
        boxes = np.concatenate([d.boxes for d in kept.values()])
        scores = np.concatenate([d.scores for d in kept.values()])
        labels = np.concatenate([d.labels for d in kept.values()])
        # A gap of DEFAULT_MAX_GAP predicted frames is bridged, whatever the sparsity.
        tubes = link_tubes(frames, boxes, scores, labels, self.link_iou, max_gap=(DEFAULT_MAX_GAP + 1) * every - 1)
        tubes.sort(key=lambda tube: (tube.start, tube.label))
        track_of = np.full(len(frames), -1, np.int64)
        for track, tube in enumerate(tubes):
            track_of[tube.detections] = track
        offsets = np.cumsum([0] + [len(d.scores) for d in kept.values()])
        tracks = {f: track_of[offsets[k]:offsets[k + 1]] for k, f in enumerate(kept)}
        return tubes, tracks

    def _draw(self, replay: VideoSource, shown: list[tuple[int, int]], kept: dict[int, Detections],
              tracks: dict[int, np.ndarray], path: Path, fps: float, positional: bool) -> Path:
        """Write the annotated mp4: each shown frame with the detections of the frame it shows.
        ``positional``: ``replay`` holds the shown frames in order (a recording), else it is the source."""
        writer = Mp4Writer(path, (replay.width, replay.height), fps)
        step = max(1, DRAW_CHUNK_BYTES // (replay.width * replay.height * 3))
        try:
            positions = np.arange(len(shown)) if positional else np.array([frame for frame, _ in shown])
            for chunk in range(0, len(shown), step):
                frames = replay.frames(positions[chunk:chunk + step])
                for frame, (_, predicted_at) in zip(frames, shown[chunk:chunk + step]):
                    detections = kept.get(predicted_at)
                    if detections is not None:
                        frame = annotate_frame(frame, detections.boxes, detections.scores, detections.labels,
                                               tracks[predicted_at], self.spec.class_names)
                    writer.write(frame)
        finally:
            writer.close()
        return path
