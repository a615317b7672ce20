"""Action tubes and video-mAP: ``link_tubes``, ``spatiotemporal_iou``, ``VideoMAP``.

**Linking** (per video and class, frame by frame, greedy as in the online linking of Singh
et al. 2017 and the action-tube literature after Gkioxari & Malik 2015): at each frame with
detections of the class, the live tubes, best mean score first, each take the highest-scoring
still-unclaimed detection whose IoU with the tube's last box is ``>= link_iou_threshold``;
every unclaimed detection starts a new tube. A tube dies when ``max_gap`` frames in a row
passed without an extension (a gap of ``max_gap`` frames is bridged, one more is not). A
tube's score is the mean of its boxes' scores.

**Ground-truth tubes** are the boxes of one ``(video, track, class)``, split where
more than ``max_gap`` frames in a row have no box (the same rule, and the same default, as
``ActionAnnotations.action_instances``).

**Spatio-temporal IoU** of a detected tube ``D`` and a ground-truth tube ``G`` with frame
spans ``[s_D, e_D]`` and ``[s_G, e_G]``: ``T-IoU = |span ∩| / |span ∪|`` (frames, inclusive)
times the mean, over the frames of ``[max(s), min(e)]`` where ``G`` has a box, of the IoU of
``D``'s box there with ``G``'s (0 where ``D`` has no box). For gap-free tubes this is the
usual ``T-IoU × mean per-frame IoU`` of the temporal intersection.

**Video-AP** of a class: its detected tubes of all videos, best score first, each matched to
the unmatched ground-truth tube of the same video and class with the highest ST-IoU if it is
``>= δ`` (true positive) or not (false positive); AP is VOC all-point interpolated (as for
frame AP) over the class's ground-truth tubes. Video-mAP averages the classes that have
ground-truth tubes, at ``δ`` = 0.1, 0.2 and 0.5 by default.

**Repeated frames** (Lightning's ``DistributedSampler`` pads the validation set by repeating
samples, on the same or another rank) count once: every submitted frame gets a source id
unique across ranks and updates, and per ``(video, frame)`` only the rows of the submission
with the smallest source id are kept, for detections and ground truth alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torchvision.ops import box_iou

from restaurant_action.data.annotations import DEFAULT_MAX_GAP
from restaurant_action.metrics._ap import mean_ignoring_nan, voc_average_precision
from restaurant_action.metrics._inputs import CatStateMetric, check_batch, flatten_detections, flatten_targets, synced
from restaurant_action.metrics._matching import greedy_match, paired_box_iou, pairs_with_equal_keys, rank_in_groups
from restaurant_action.metrics._repeats import first_submissions, frame_ids
from restaurant_action.metrics.frame_map import threshold_key

DEFAULT_LINK_IOU = 0.3
DEFAULT_VIDEO_IOU_THRESHOLDS = (0.1, 0.2, 0.5)
SOURCE_RANK_SHIFT = 40
"""A frame's source id is ``rank << SOURCE_RANK_SHIFT`` plus the rank's count of frames submitted before it."""

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class ActionTube:
    """One action through time: a box on each of some frames of one video, one class.

    Attributes:
        label: class id.
        frames: ``(L,)`` int64 frame indices, ascending, no repeats.
        boxes: ``(L, 4)`` float32 absolute xyxy, one per frame.
        scores: ``(L,)`` float32 box scores (1 for ground truth).
        video: the video's id.
        detections: ``(L,)`` int64, for a tube made by :func:`link_tubes`, the index of each of
            its boxes among the detections linked (what ties a drawn box to its tube); ``None``
            otherwise.
    """

    label: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    video: int = 0
    detections: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, np.int64).reshape(-1)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.scores = scores if len(scores) else np.ones(len(self.frames), np.float32)
        if not (len(self.frames) == len(self.boxes) == len(self.scores)) or not len(self.frames):
            raise ValueError(f"a tube needs one box and score per frame: {len(self.frames)} frames, {len(self.boxes)} boxes, {len(self.scores)} scores")
        if np.any(np.diff(self.frames) <= 0):
            raise ValueError(f"tube frames must be strictly ascending, got {self.frames.tolist()}")

    @property
    def score(self) -> float:
        """Mean box score."""
        return float(self.scores.mean())

    @property
    def start(self) -> int:
        """First frame."""
        return int(self.frames[0])

    @property
    def end(self) -> int:
        """Last frame (inclusive)."""
        return int(self.frames[-1])


def link_tubes(
    frames: Tensor | np.ndarray,
    boxes: Tensor | np.ndarray,
    scores: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    link_iou_threshold: float = DEFAULT_LINK_IOU,
    max_gap: int = DEFAULT_MAX_GAP,
    video: int = 0,
) -> list[ActionTube]:
    """Link one video's per-frame detections into tubes (rule in the module doc).

    Args:
        frames: ``(N,)`` frame index of each detection.
        boxes: ``(N, 4)`` absolute xyxy.
        scores: ``(N,)`` detection scores.
        labels: ``(N,)`` class ids.
        link_iou_threshold: minimum IoU between a tube's last box and the next box.
        max_gap: most frames in a row a tube may miss and still be extended.
        video: id stored in the tubes.

    Returns:
        The tubes, by class, then by first frame.
    """
    frames = np.asarray(frames, np.int64).reshape(-1)
    boxes_tensor = torch.as_tensor(np.asarray(boxes, np.float32)).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    labels = np.asarray(labels, np.int64).reshape(-1)
    members = _link(frames, boxes_tensor, scores, labels, link_iou_threshold, max_gap)
    return [ActionTube(int(labels[m[0]]), frames[m], boxes_tensor[torch.from_numpy(m)].numpy(), scores[m], video, m)
            for m in members]


def spatiotemporal_iou(detected: ActionTube, ground_truth: ActionTube) -> float:
    """ST-IoU of a detected tube with a ground-truth tube (definition in the module doc)."""
    first, second = _TubeSet.of([detected]), _TubeSet.of([ground_truth])
    return float(_spatiotemporal_iou(first, second, np.zeros(1, np.int64), np.zeros(1, np.int64))[0])


class VideoMAP(CatStateMetric):
    """Video-mAP: detections linked into tubes, matched to ground-truth tracks by ST-IoU.

    ``update`` takes the per-frame dicts of ``FrameMAP`` (targets also need ``tracks (M,)``
    track ids) plus the video id and frame index of every frame. A ``(video, frame)`` given
    more than once (DDP sampler padding) counts once: the rows of its first submission are
    kept, rank 0's before rank 1's (module doc). State is concatenated per box and per frame
    (``dist_reduce_fx="cat"``).

    Args:
        num_classes: number of classes.
        iou_thresholds: ST-IoU thresholds δ; a tube matches at ``ST-IoU >= δ``.
        link_iou_threshold: linking IoU (module doc).
        max_gap: frames a tube may skip, for linking and for splitting ground-truth tracks.
        kwargs: passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        iou_thresholds: Sequence[float] = DEFAULT_VIDEO_IOU_THRESHOLDS,
        link_iou_threshold: float = DEFAULT_LINK_IOU,
        max_gap: int = DEFAULT_MAX_GAP,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        thresholds = [float(t) for t in ([iou_thresholds] if isinstance(iou_thresholds, (int, float)) else iou_thresholds)]
        if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
            raise ValueError(f"iou_thresholds must be values in (0, 1], got {iou_thresholds!r}")
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        self.num_classes = num_classes
        self.iou_thresholds = thresholds
        self.link_iou_threshold = float(link_iou_threshold)
        self.max_gap = int(max_gap)
        for prefix in ("det", "gt"):
            self.add_cat_state(f"{prefix}_boxes", (4,), torch.float32)
            self.add_cat_state(f"{prefix}_labels", (), torch.int64)
            self.add_cat_state(f"{prefix}_videos", (), torch.int64)
            self.add_cat_state(f"{prefix}_frames", (), torch.int64)
            self.add_cat_state(f"{prefix}_sources", (), torch.int64)
        self.add_cat_state("det_scores", (), torch.float32)
        self.add_cat_state("gt_tracks", (), torch.int64)
        for name in ("frame_videos", "frame_indices", "frame_sources"):
            self.add_cat_state(name, (), torch.int64)
        self._frames_submitted = 0

    def update(
        self,
        preds: Sequence[Mapping[str, Tensor]],
        targets: Sequence[Mapping[str, Tensor]],
        video_ids: Sequence[int] | Tensor,
        frame_indices: Sequence[int] | Tensor,
    ) -> None:
        """Add a batch of frames.

        Args:
            preds: one dict per frame: ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)``.
            targets: one dict per frame: ``boxes (M, 4)``, ``labels (M,)``, ``tracks (M,)``;
                boxes flagged ``iscrowd``/``difficult`` are left out.
            video_ids: ``(B,)`` integer id of each frame's video.
            frame_indices: ``(B,)`` 0-based index of each frame in its video.
        """
        check_batch(preds, targets)
        detections = flatten_detections(preds, self.num_classes)
        truths = flatten_targets(targets, self.num_classes, with_tracks=True)
        video_ids, frame_indices = frame_ids(video_ids, frame_indices, len(preds))
        sources = self._next_sources(len(preds))
        det_frame = detections.frame_of_box.cpu()
        keep = truths.ignore == 0
        gt_frame = truths.frame_of_box.cpu()[keep.cpu()]
        device = detections.boxes.device
        self.det_boxes.append(detections.boxes)
        self.det_scores.append(detections.scores)
        self.det_labels.append(detections.labels)
        self.det_videos.append(video_ids[det_frame].to(device))
        self.det_frames.append(frame_indices[det_frame].to(device))
        self.det_sources.append(sources[det_frame].to(device))
        self.gt_boxes.append(truths.boxes[keep])
        self.gt_labels.append(truths.labels[keep])
        self.gt_tracks.append(truths.tracks[keep])
        self.gt_videos.append(video_ids[gt_frame].to(truths.boxes.device))
        self.gt_frames.append(frame_indices[gt_frame].to(truths.boxes.device))
        self.gt_sources.append(sources[gt_frame].to(truths.boxes.device))
        self.frame_videos.append(video_ids.to(device))
        self.frame_indices.append(frame_indices.to(device))
        self.frame_sources.append(sources.to(device))

    def _next_sources(self, num_frames: int) -> Tensor:
        """``(num_frames,)`` int64 source ids of the next frames submitted by this process (unique across ranks)."""
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        start = self._frames_submitted
        self._frames_submitted += num_frames
        return (rank << SOURCE_RANK_SHIFT) + torch.arange(start, start + num_frames, dtype=torch.int64)

    def compute(self) -> dict[str, Tensor]:
        """Link, match and average.

        Returns:
            float32 tensors: ``map`` (mean over thresholds), ``map_{t}`` (e.g. ``map_10``,
            ``map_20``, ``map_50``), ``ap_per_class`` ``(C,)`` (mean over thresholds) and
            ``ap_per_class_{t}`` ``(C,)`` (NaN for classes without ground-truth tubes),
            ``num_ground_truth_tubes_per_class`` and ``num_tubes_per_class`` ``(C,)``.
        """
        detected, ground_truth = self._tube_sets()
        num_classes = self.num_classes
        det_key = detected.video * num_classes + detected.label
        gt_key = ground_truth.video * num_classes + ground_truth.label
        pair_det, pair_gt = pairs_with_equal_keys(det_key, gt_key)
        overlap = _spatiotemporal_iou(detected, ground_truth, pair_det, pair_gt)
        rank = rank_in_groups(det_key, detected.score)
        positives = np.bincount(ground_truth.label, minlength=num_classes)
        order = np.lexsort((np.arange(len(detected.label)), -detected.score, detected.label))
        bounds = np.searchsorted(detected.label[order], np.arange(num_classes + 1))
        average_precision = np.full((len(self.iou_thresholds), num_classes), np.nan)
        no_reuse = np.zeros(len(ground_truth.label), bool)
        for index, threshold in enumerate(self.iou_thresholds):
            hit = greedy_match(pair_det, pair_gt, overlap, rank, no_reuse, len(detected.label), threshold)[order] >= 0
            for label in np.flatnonzero(positives).tolist():
                ranked_hits = hit[bounds[label] : bounds[label + 1]]
                average_precision[index, label] = voc_average_precision(ranked_hits, ~ranked_hits, int(positives[label]))
        result: dict[str, Any] = {"map": mean_ignoring_nan(average_precision)}
        for index, threshold in enumerate(self.iou_thresholds):
            result[f"map_{threshold_key(threshold)}"] = mean_ignoring_nan(average_precision[index])
        result["ap_per_class"] = average_precision.mean(0)
        for index, threshold in enumerate(self.iou_thresholds):
            result[f"ap_per_class_{threshold_key(threshold)}"] = average_precision[index]
        result["num_ground_truth_tubes_per_class"] = positives
        result["num_tubes_per_class"] = np.bincount(detected.label, minlength=num_classes)
        return {key: torch.as_tensor(np.asarray(value), dtype=torch.float32) for key, value in result.items()}

    def tubes(self) -> list[ActionTube]:
        """The detected tubes of every video seen (all ranks), by video, class and first frame."""
        with synced(self):
            detected, _ = self._tube_sets()
        return detected.to_tubes()

    def ground_truth_tubes(self) -> list[ActionTube]:
        """The ground-truth tubes of every video seen (all ranks)."""
        with synced(self):
            _, ground_truth = self._tube_sets()
        return ground_truth.to_tubes()

    def _tube_sets(self) -> tuple["_TubeSet", "_TubeSet"]:
        """Detected and ground-truth tubes of the rows kept by ``_first_submissions``."""
        kept_sources = _first_submissions(self.column("frame_videos").numpy(), self.column("frame_indices").numpy(), self.column("frame_sources").numpy())
        det = torch.from_numpy(np.isin(self.column("det_sources").numpy(), kept_sources))
        gt = torch.from_numpy(np.isin(self.column("gt_sources").numpy(), kept_sources))
        det_videos, det_frames = self.column("det_videos")[det].numpy(), self.column("det_frames")[det].numpy()
        det_boxes, det_scores, det_labels = self.column("det_boxes")[det], self.column("det_scores")[det].numpy(), self.column("det_labels")[det].numpy()
        members: list[np.ndarray] = []
        for video in np.unique(det_videos).tolist():
            rows = np.flatnonzero(det_videos == video)
            linked = _link(det_frames[rows], det_boxes[torch.from_numpy(rows)], det_scores[rows], det_labels[rows], self.link_iou_threshold, self.max_gap)
            members += [rows[m] for m in linked]
        detected = _TubeSet.build(members, det_videos, det_frames, det_boxes, det_scores, det_labels)
        gt_videos, gt_frames, gt_labels = self.column("gt_videos")[gt].numpy(), self.column("gt_frames")[gt].numpy(), self.column("gt_labels")[gt].numpy()
        gt_tracks, gt_boxes = self.column("gt_tracks")[gt].numpy(), self.column("gt_boxes")[gt]
        gt_members = _split_tracks(gt_videos, gt_tracks, gt_labels, gt_frames, self.max_gap)
        ground_truth = _TubeSet.build(gt_members, gt_videos, gt_frames, gt_boxes, np.ones(len(gt_frames), np.float32), gt_labels)
        return detected, ground_truth


@dataclass
class _TubeSet:
    """Many tubes as flat columns: rows tube-major with ascending frames.

    ``row_frames (R,)``, ``row_boxes (R, 4)``, ``row_tube (R,)``; per tube ``starts (T + 1,)``
    row offsets, ``first``/``last`` frames, ``video``, ``label``, mean ``score``.
    """

    row_frames: np.ndarray
    row_boxes: Tensor
    row_scores: np.ndarray
    row_tube: np.ndarray
    starts: np.ndarray
    video: np.ndarray
    label: np.ndarray
    score: np.ndarray

    @property
    def first(self) -> np.ndarray:
        return self.row_frames[self.starts[:-1]]

    @property
    def last(self) -> np.ndarray:
        return self.row_frames[self.starts[1:] - 1]

    @classmethod
    def build(cls, members: list[np.ndarray], videos: np.ndarray, frames: np.ndarray, boxes: Tensor, scores: np.ndarray, labels: np.ndarray) -> "_TubeSet":
        """Tubes from lists of box indices (each in frame order)."""
        rows = np.concatenate(members) if members else np.zeros(0, np.int64)
        lengths = np.array([len(m) for m in members], np.int64)
        starts = np.r_[0, np.cumsum(lengths)]
        row_tube = np.repeat(np.arange(len(members), dtype=np.int64), lengths)
        heads = rows[starts[:-1]] if len(members) else rows
        row_scores = scores[rows].astype(np.float64)
        score = np.bincount(row_tube, weights=row_scores, minlength=len(members)) / np.maximum(lengths, 1)
        return cls(frames[rows], boxes[torch.from_numpy(rows)], scores[rows], row_tube, starts, videos[heads], labels[heads], score)

    @classmethod
    def of(cls, tubes: Sequence[ActionTube]) -> "_TubeSet":
        """Flat columns of ``ActionTube`` objects."""
        frames = np.concatenate([t.frames for t in tubes])
        boxes = torch.from_numpy(np.concatenate([t.boxes for t in tubes]))
        scores = np.concatenate([t.scores for t in tubes])
        lengths = [len(t.frames) for t in tubes]
        offsets = np.r_[0, np.cumsum(lengths)]
        members = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(tubes))]
        videos = np.repeat([t.video for t in tubes], lengths)
        labels = np.repeat([t.label for t in tubes], lengths)
        return cls.build(members, videos, frames, boxes, scores, labels)

    def to_tubes(self) -> list[ActionTube]:
        """``ActionTube`` objects, by video, class and first frame."""
        tubes = [
            ActionTube(int(self.label[i]), self.row_frames[s:e], self.row_boxes[s:e].numpy(), self.row_scores[s:e], int(self.video[i]))
            for i, (s, e) in enumerate(zip(self.starts[:-1], self.starts[1:]))
        ]
        return sorted(tubes, key=lambda t: (t.video, t.label, t.start))


def _first_submissions(videos: np.ndarray, frames: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Source ids of the submissions to keep: the smallest of each ``(video, frame)``.

    Args:
        videos: ``(F,)`` video id of each submitted frame.
        frames: ``(F,)`` its frame index.
        sources: ``(F,)`` its source id (unique).

    Returns:
        ``(U,)`` int64 kept source ids, one per distinct ``(video, frame)``; the other
        ``F - U`` submissions are repeats (logged at debug level).
    """
    kept = sources[first_submissions(videos, frames, priority=sources)].astype(np.int64)
    if len(kept) < len(sources):
        logger.debug("VideoMAP: dropped %d repeated submissions of %d frames", len(sources) - len(kept), len(kept))
    return kept


def _link(frames: np.ndarray, boxes: Tensor, scores: np.ndarray, labels: np.ndarray, iou_threshold: float, max_gap: int) -> list[np.ndarray]:
    """Greedy linking of one video's detections (module doc); returns the box indices of each tube."""
    order = np.lexsort((np.arange(len(frames)), -scores.astype(np.float64), frames, labels))
    sorted_labels, sorted_frames = labels[order], frames[order]
    bounds = np.flatnonzero(np.r_[True, (sorted_labels[1:] != sorted_labels[:-1]) | (sorted_frames[1:] != sorted_frames[:-1]), True])
    tubes: list[list[int]] = []
    last_frame: list[int] = []
    score_sum: list[float] = []
    live: list[int] = []
    current_label = None
    for start, end in zip(bounds[:-1], bounds[1:]):
        candidates = order[start:end]
        label, frame = int(sorted_labels[start]), int(sorted_frames[start])
        if label != current_label:
            live, current_label = [], label
        live = [t for t in live if frame - last_frame[t] - 1 <= max_gap]
        claimed = np.zeros(len(candidates), bool)
        if live:
            live.sort(key=lambda t: -score_sum[t] / len(tubes[t]))
            last_boxes = boxes[torch.tensor([tubes[t][-1] for t in live])]
            passes = (box_iou(last_boxes.double(), boxes[torch.from_numpy(candidates)].double()) >= iou_threshold).numpy()
            for row, tube in enumerate(live):
                free = np.flatnonzero(passes[row] & ~claimed)
                if len(free):
                    claimed[free[0]] = True
                    chosen = int(candidates[free[0]])
                    tubes[tube].append(chosen)
                    last_frame[tube] = frame
                    score_sum[tube] += float(scores[chosen])
        for index in np.flatnonzero(~claimed).tolist():
            chosen = int(candidates[index])
            live.append(len(tubes))
            tubes.append([chosen])
            last_frame.append(frame)
            score_sum.append(float(scores[chosen]))
    return [np.asarray(t, np.int64) for t in tubes]


def _split_tracks(videos: np.ndarray, tracks: np.ndarray, labels: np.ndarray, frames: np.ndarray, max_gap: int) -> list[np.ndarray]:
    """Ground-truth tubes: runs of one (video, track, class) with no more than ``max_gap`` missing frames in a row."""
    if len(frames) == 0:
        return []
    order = np.lexsort((frames, labels, tracks, videos))
    v, t, c, f = videos[order], tracks[order], labels[order], frames[order]
    new = np.r_[True, (v[1:] != v[:-1]) | (t[1:] != t[:-1]) | (c[1:] != c[:-1]) | (f[1:] - f[:-1] - 1 > max_gap)]
    bounds = np.r_[np.flatnonzero(new), len(order)]
    return [order[s:e] for s, e in zip(bounds[:-1], bounds[1:])]


def _spatiotemporal_iou(detected: _TubeSet, ground_truth: _TubeSet, pair_det: np.ndarray, pair_gt: np.ndarray) -> np.ndarray:
    """ST-IoU of each pair ``(detected tube pair_det[p], ground-truth tube pair_gt[p])``: ``(P,)`` float64."""
    num_pairs = len(pair_det)
    if num_pairs == 0:
        return np.zeros(0)
    d_first, d_last = detected.first[pair_det], detected.last[pair_det]
    g_first, g_last = ground_truth.first[pair_gt], ground_truth.last[pair_gt]
    low, high = np.maximum(d_first, g_first), np.minimum(d_last, g_last)
    temporal = np.clip(high - low + 1, 0, None) / (np.maximum(d_last, g_last) - np.minimum(d_first, g_first) + 1)
    # every ground-truth row of every pair, kept where it lies in the temporal intersection
    lengths = ground_truth.starts[pair_gt + 1] - ground_truth.starts[pair_gt]
    pair_of_row = np.repeat(np.arange(num_pairs), lengths)
    gt_row = ground_truth.starts[pair_gt][pair_of_row] + np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    frame = ground_truth.row_frames[gt_row]
    inside = (frame >= low[pair_of_row]) & (frame <= high[pair_of_row])
    pair_of_row, gt_row, frame = pair_of_row[inside], gt_row[inside], frame[inside]
    # the detected tube's box on the same frame, looked up by (tube, frame) key
    span = int(max(detected.row_frames.max(initial=0), frame.max(initial=0))) + 1
    det_key = detected.row_tube * span + detected.row_frames
    query = pair_det[pair_of_row] * span + frame
    position = np.minimum(np.searchsorted(det_key, query), len(det_key) - 1)
    found = det_key[position] == query
    iou = np.zeros(len(frame))
    iou[found] = paired_box_iou(detected.row_boxes[torch.from_numpy(position[found])], ground_truth.row_boxes[torch.from_numpy(gt_row[found])])
    frames_counted = np.bincount(pair_of_row, minlength=num_pairs)
    spatial = np.bincount(pair_of_row, weights=iou, minlength=num_pairs) / np.maximum(frames_counted, 1)
    return temporal * spatial
