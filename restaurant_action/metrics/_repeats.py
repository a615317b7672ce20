"""Repeated frames count once: per-frame video ids and frame indices, first submissions.

Lightning's ``DistributedSampler`` pads the evaluation set by repeating samples, on the same
or another rank, so one ``(video, frame)`` can reach a metric twice, with slightly different
detections (another batch composition). A metric given each frame's video id and frame index
keeps the rows of the first submission of each ``(video, frame)`` only: the first in the
concatenated state, i.e. the lowest rank's, then the earliest update's.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from restaurant_action.metrics._inputs import CatStateMetric

logger = logging.getLogger(__name__)


def frame_ids(video_ids: Sequence[int] | Tensor, frame_indices: Sequence[int] | Tensor, num_frames: int) -> tuple[Tensor, Tensor]:
    """Check and convert the ids of a batch's frames.

    Args:
        video_ids: ``(B,)`` integer id of each frame's video.
        frame_indices: ``(B,)`` 0-based index of each frame in its video.
        num_frames: ``B``, the number of frames in the batch.

    Returns:
        ``video_ids (B,)`` and ``frame_indices (B,)`` int64 on the CPU.

    Raises:
        ValueError: not one entry per frame, naming the three lengths.
    """
    videos = torch.as_tensor(video_ids, dtype=torch.int64).reshape(-1).cpu()
    frames = torch.as_tensor(frame_indices, dtype=torch.int64).reshape(-1).cpu()
    if len(videos) != num_frames or len(frames) != num_frames:
        raise ValueError(f"video_ids ({len(videos)}) and frame_indices ({len(frames)}) must give one entry per frame ({num_frames})")
    return videos, frames


def first_submissions(videos: np.ndarray, frames: np.ndarray, priority: np.ndarray | None = None) -> np.ndarray:
    """Which submitted frames are the first submission of their ``(video, frame)``.

    Args:
        videos: ``(F,)`` video id of each submitted frame.
        frames: ``(F,)`` its frame index.
        priority: ``(F,)`` distinct sort keys, the first submission has the smallest;
            ``None``: the position (the first in the list is the first submission).

    Returns:
        ``(F,)`` bool, one ``True`` per distinct ``(video, frame)``.

    Example: ``videos = [3, 3, 7, 3]``, ``frames = [0, 1, 0, 0]`` gives
    ``[True, True, True, False]`` (the last is a repeat of the first).
    """
    order = np.lexsort((np.arange(len(videos)) if priority is None else priority, frames, videos))
    v, f = videos[order], frames[order]
    first = np.zeros(len(order), bool)
    if len(order):
        first[order] = np.r_[True, (v[1:] != v[:-1]) | (f[1:] != f[:-1])]
    return first


class FrameIdMetric(CatStateMetric):
    """A ``CatStateMetric`` whose ``update`` may take each frame's video id and frame index.

    The ids are kept in the per-frame states ``frame_videos`` and ``frame_indices``
    (``(F,)`` int64, concatenated across ranks); a subclass stores its own per-frame box
    counts and drops the rows of repeated submissions with ``first_frames``. Every update
    since the last ``reset`` must pass ids, or none must.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_cat_state("frame_videos", (), torch.int64)
        self.add_cat_state("frame_indices", (), torch.int64)
        self._with_frame_ids: bool | None = None

    def check_frame_ids(
        self, video_ids: Sequence[int] | Tensor | None, frame_indices: Sequence[int] | Tensor | None, num_frames: int
    ) -> tuple[Tensor, Tensor] | None:
        """The ids of a batch's ``num_frames`` frames as ``(B,)`` int64 tensors, or ``None`` when not given.

        Raises:
            ValueError: only one of the two given, not one entry per frame, or ids given in
                this update but not in an earlier one since ``reset`` (or the other way round).
        """
        given = video_ids is not None
        if given != (frame_indices is not None):
            raise ValueError("video_ids and frame_indices must be given together (one entry per frame each), or neither")
        if self._with_frame_ids is not None and given != self._with_frame_ids:
            earlier = "with" if self._with_frame_ids else "without"
            raise ValueError(
                f"{type(self).__name__}.update was called {earlier} video_ids/frame_indices before; "
                "pass them in every update or in none (or call reset() in between)"
            )
        return frame_ids(video_ids, frame_indices, num_frames) if given else None

    def store_frame_ids(self, ids: tuple[Tensor, Tensor] | None, device: torch.device) -> None:
        """Append the ids returned by ``check_frame_ids`` (nothing when ``None``) to the state, on ``device``."""
        if ids is not None:
            self.frame_videos.append(ids[0].to(device))
            self.frame_indices.append(ids[1].to(device))
        self._with_frame_ids = ids is not None

    def first_frames(self, num_frames: int) -> np.ndarray:
        """Which of the state's ``num_frames`` frames to keep: the first submission of each ``(video, frame)``.

        Returns:
            ``(F,)`` bool over the frames in state order (after a sync: rank 0's, then rank
            1's, ...); all ``True`` when no ids were passed. Drops are logged at debug level.

        Raises:
            RuntimeError: ids stored for some frames only (ranks that disagreed on passing them).
        """
        videos, frames = self.column("frame_videos").numpy(), self.column("frame_indices").numpy()
        if len(videos) == 0:
            return np.ones(num_frames, bool)
        if len(videos) != num_frames:
            raise RuntimeError(
                f"state holds video ids of {len(videos)} frames but {num_frames} frames: every update on every rank "
                "must pass video_ids and frame_indices, or none"
            )
        first = first_submissions(videos, frames)
        if not first.all():
            logger.debug("%s: dropped %d repeated submissions of %d frames", type(self).__name__, num_frames - int(first.sum()), int(first.sum()))
        return first

    def reset(self) -> None:
        """Reset the states; the next update may again pass ids or not."""
        super().reset()
        self._with_frame_ids = None
