"""Feeding a stream of preprocessed frames to a detector, one engine per model kind.

Frames arrive in ascending index order as letterboxed uint8 ``(3, S, S)`` tensors, only those
the engine ``wants``; predicted frames come out, in order, as :class:`Decoded` batches. Sparse
inference predicts the frames whose index is a multiple of ``every``.

- :class:`FrameEngine` (YOLOv3): batches of ``batch_size`` predicted frames.
- :class:`ClipEngine` (YOWO): a sliding window of the frames that the coming clips need; each
  frame is decoded and preprocessed once and read by every clip that contains it. The clip of
  key frame ``k`` is frames ``k - (T - 1 - j)·stride``, ``j = 0..T-1`` (key frame last), clamped at
  frame 0 as ``ClipDataset`` does; a frame that never arrived (dropped by a live source) is
  replaced by the nearest earlier one that did.
- :class:`RecurrentEngine` (ConvLSTM-YOLO): the model was trained on frames ``frame_stride``
  apart, so predicted frames are dealt to ``L`` interleaved lanes, each with its own carried
  state, such that a lane's consecutive frames are ``frame_stride`` apart (``L = frame_stride /
  every``). Frame ``k·every`` goes to lane ``k mod L``.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import Tensor

from restaurant_action.inference.checkpoint import ModelSpec
from restaurant_action.inference.runners import Runner

logger = logging.getLogger(__name__)


class Decoded(NamedTuple):
    """Decoded predictions of some frames, before NMS.

    Attributes:
        frame_indices: the frames' indices in the video, ascending.
        boxes: ``(N, P, 4)`` xyxy pixels of the letterboxed input.
        objectness: ``(N, P)``.
        class_probs: ``(N, P, C)``.
    """

    frame_indices: list[int]
    boxes: Tensor
    objectness: Tensor
    class_probs: Tensor


def _as_input(images: list[Tensor]) -> Tensor:
    """uint8 ``(3, S, S)`` images (or ``(T, 3, S, S)`` clips) stacked and scaled to float ``[0, 1]``."""
    return torch.stack(images).float().div_(255.0)


class FrameEngine:
    """YOLOv3: predicted frames in batches of ``batch_size``."""

    def __init__(self, runner: Runner, spec: ModelSpec, every: int = 1, batch_size: int = 8) -> None:
        self.runner, self.every, self.batch_size = runner, every, max(1, batch_size)
        self._indices: list[int] = []
        self._images: list[Tensor] = []

    def wants(self, index: int) -> bool:
        """Whether frame ``index`` must be decoded."""
        return index % self.every == 0

    def is_predicted(self, index: int) -> bool:
        """Whether frame ``index`` gets its own prediction (else it holds the last one)."""
        return index % self.every == 0

    def push(self, index: int, image: Tensor) -> list[Decoded]:
        """Take frame ``index`` (uint8 ``(3, S, S)``); return the batches completed by it."""
        if not self.is_predicted(index):
            return []
        self._indices.append(index)
        self._images.append(image)
        return self._run() if len(self._indices) >= self.batch_size else []

    def flush(self) -> list[Decoded]:
        """Predict what is pending (end of the stream)."""
        return self._run() if self._indices else []

    def _run(self) -> list[Decoded]:
        indices, images = self._indices, self._images
        self._indices, self._images = [], []
        return [Decoded(indices, *self.runner(_as_input(images)))]


class ClipEngine:
    """YOWO: clips ending at every predicted key frame, built from a sliding window of frames."""

    def __init__(self, runner: Runner, spec: ModelSpec, every: int = 1, batch_size: int = 8) -> None:
        self.runner, self.every, self.batch_size = runner, every, max(1, batch_size)
        self.clip_length, self.stride = spec.clip_length, spec.frame_stride
        self.span = (self.clip_length - 1) * self.stride
        self._window: dict[int, Tensor] = {}
        self._indices: list[int] = []
        self._clips: list[Tensor] = []

    def clip_indices(self, key: int) -> list[int]:
        """Frames of the clip of key frame ``key`` (key last), clamped at frame 0."""
        return [max(key - (self.clip_length - 1 - j) * self.stride, 0) for j in range(self.clip_length)]

    def wants(self, index: int) -> bool:
        """Whether frame ``index`` is in the clip of some predicted key frame."""
        if index == 0:
            return True
        return any(key % self.every == 0 for key in range(index, index + self.span + 1, self.stride))

    def is_predicted(self, index: int) -> bool:
        """Whether frame ``index`` is a key frame with its own prediction."""
        return index % self.every == 0

    @property
    def frames_held(self) -> int:
        """Preprocessed frames in the window now (bounded by ``(T - 1)·stride + 1``)."""
        return len(self._window)

    def push(self, index: int, image: Tensor) -> list[Decoded]:
        """Take frame ``index``; at a key frame, queue its clip; return the batches completed."""
        self._window[index] = image
        for old in [i for i in self._window if i < index - self.span]:
            del self._window[old]
        if not self.is_predicted(index):
            return []
        self._indices.append(index)
        self._clips.append(torch.stack([self._window[self._available(i)] for i in self.clip_indices(index)]))
        return self._run() if len(self._indices) >= self.batch_size else []

    def _available(self, wanted: int) -> int:
        """``wanted`` if the window holds it, else the nearest earlier frame it holds (else its earliest)."""
        if wanted in self._window:
            return wanted
        earlier = [i for i in self._window if i <= wanted]
        return max(earlier) if earlier else min(self._window)

    def flush(self) -> list[Decoded]:
        """Predict the pending clips."""
        return self._run() if self._indices else []

    def _run(self) -> list[Decoded]:
        indices, clips = self._indices, self._clips
        self._indices, self._clips = [], []
        return [Decoded(indices, *self.runner(_as_input(clips)))]


def recurrent_lanes(frame_stride: int, every: int) -> int:
    """Lanes that keep a lane's frames ``frame_stride`` apart when every ``every``-th frame is predicted.

    Raises:
        ValueError: ``every`` neither divides ``frame_stride`` nor is a multiple of it.
    """
    if frame_stride % every == 0:
        return frame_stride // every
    if every % frame_stride == 0:
        logger.warning("every=%d: the ConvLSTM-YOLO was trained on frames %d apart and now sees them %d apart",
                       every, frame_stride, every)
        return 1
    raise ValueError(f"every={every} does not fit the ConvLSTM-YOLO's frame stride {frame_stride}: use a divisor "
                     f"or a multiple of {frame_stride}")


class RecurrentEngine(FrameEngine):
    """ConvLSTM-YOLO: predicted frames dealt to interleaved lanes, the state carried per lane.

    Args:
        runner, spec, every: as for the other engines.
        batch_size: frames per run, rounded to whole rounds of ``L`` lanes (at least one round).
    """

    def __init__(self, runner: Runner, spec: ModelSpec, every: int = 1, batch_size: int = 8) -> None:
        self.lanes = recurrent_lanes(spec.frame_stride, every)
        self.rounds = max(1, batch_size // self.lanes)
        super().__init__(runner, spec, every, self.rounds * self.lanes)
        self.state = runner.initial_state(self.lanes)

    def _run(self) -> list[Decoded]:
        """Run the pending frames round by round; a last, partial round is padded with copies of its last frame."""
        indices, images = self._indices, self._images
        self._indices, self._images = [], []
        out = []
        for start in range(0, len(indices), self.lanes):
            round_images = images[start:start + self.lanes]
            count = len(round_images)
            round_images += [round_images[-1]] * (self.lanes - count)
            boxes, objectness, class_probs, *self.state = self.runner(_as_input(round_images), *self.state)
            out.append(Decoded(indices[start:start + count], boxes[:count], objectness[:count], class_probs[:count]))
        return out


ENGINES = {"YOLOv3Module": FrameEngine, "YOWOModule": ClipEngine, "ConvLSTMYOLOModule": RecurrentEngine}


def make_engine(runner: Runner, spec: ModelSpec, every: int, batch_size: int) -> FrameEngine | ClipEngine | RecurrentEngine:
    """The engine of the spec's model kind."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return ENGINES[spec.kind](runner, spec, every, batch_size)
