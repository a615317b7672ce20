"""Frame-level mean average precision: ``FrameMAP``.

Exact definitions (what counts as a hit, which frames count, how top-k is chosen) are in
``docs/metrics.md``; the two protocols are

* ``"voc"``: the VOC 2010+ devkit, as YOWO's evaluation (Padilla's Object-Detection-Metrics)
  runs it: each detection is compared with its highest-IoU ground truth only, IoU ``>=``
  threshold, all-point interpolated AP.
* ``"coco101"``: pycocotools as torchmetrics' ``MeanAveragePrecision(iou_thresholds=[...])``
  runs it: each detection takes the best still-free ground truth, 101-point interpolated AP,
  at most ``max_detections`` per frame and class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from restaurant_action.metrics._ap import (
    best_f1_point,
    coco101_average_precision,
    mean_ignoring_nan,
    operating_point,
    precision_recall,
    voc_average_precision,
)
from restaurant_action.metrics._inputs import check_batch, flatten_detections, flatten_targets, synced
from restaurant_action.metrics._matching import (
    best_overlap_match,
    greedy_match,
    paired_box_iou,
    paired_intersection_over_first,
    pairs_with_equal_keys,
    rank_in_groups,
)
from restaurant_action.metrics._repeats import FrameIdMetric

Interpolation = Literal["voc", "coco101"]
INTERPOLATIONS = ("voc", "coco101")


def threshold_key(threshold: float) -> str:
    """Key suffix of an IoU threshold in result dicts: 0.5 -> ``"50"``, 0.75 -> ``"75"``."""
    return format(round(threshold * 100, 6), "g")


@dataclass
class RankedDetections:
    """All kept detections after matching, ranked class by class.

    Attributes:
        labels: ``(N,)`` class of each ranked detection (ascending class, then rank).
        scores: ``(N,)`` float64 scores (descending inside each class).
        status: ``(T, N)`` int8 per IoU threshold: 1 true positive, 0 false positive,
            -1 ignored (matched a crowd/difficult ground truth).
        class_bounds: ``(C + 1,)``; class ``c`` occupies ``[class_bounds[c], class_bounds[c+1])``.
        num_positives: ``(C,)`` non-ignored ground truths per class.
    """

    labels: np.ndarray
    scores: np.ndarray
    status: np.ndarray
    class_bounds: np.ndarray
    num_positives: np.ndarray

    def of_class(self, label: int, threshold_index: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(tp, fp, scores)`` of class ``label``'s ranked detections at one IoU threshold."""
        start, end = self.class_bounds[label], self.class_bounds[label + 1]
        status = self.status[threshold_index, start:end]
        return status == 1, status == 0, self.scores[start:end]


class FrameMAP(FrameIdMetric):
    """Per-class average precision of per-frame detections, and precision/recall summaries.

    ``update`` takes one dict per frame, as torchmetrics' detection metrics do:

    * ``preds[i]``: ``boxes (K, 4)`` absolute xyxy, ``scores (K,)``, ``labels (K,)`` int.
    * ``targets[i]``: ``boxes (M, 4)``, ``labels (M,)``, optional ``iscrowd`` or
      ``difficult (M,)`` flags (an ignored ground truth: not counted, and a detection
      matched to it is neither true nor false positive).

    With ``video_ids`` and ``frame_indices``, a ``(video, frame)`` passed more than once
    (DDP sampler padding) counts once: the rows of its first submission are kept, rank 0's
    before rank 1's. State is kept as concatenated tensors (``dist_reduce_fx="cat"``) with
    boxes-per-frame counts as the frame index, so memory is constant per box and ranks merge
    exactly.

    Args:
        num_classes: number of classes; labels must lie in ``[0, num_classes)``.
        iou_thresholds: one IoU threshold or a list; a detection matches at ``IoU >= t``.
            Precision, recall and best-F1 use the first threshold.
        interpolation: ``"voc"`` (VOC devkit matching, all-point AP) or ``"coco101"``
            (COCO matching, 101-point AP; equals torchmetrics' ``MeanAveragePrecision``).
        score_threshold: detections with ``score >= score_threshold`` count for the
            reported precision and recall.
        class_ranking: class ids, most frequent first (the datamodule passes the ranking by
            clips in the training data); ``None`` ranks by ground-truth boxes seen here.
        top_k: sizes of the top-k class sets summarised (``map_top5``, ...).
        max_detections: at most this many detections per frame and class are kept, best
            first (COCO's ``maxDets``, 100); ``None`` keeps all.
        kwargs: passed to ``torchmetrics.Metric``.

    Example:
        >>> metric = FrameMAP(num_classes=2)
        >>> metric.update(
        ...     [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}],
        ...     [{"boxes": torch.tensor([[1.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}],
        ... )
        >>> float(metric.compute()["map"])
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        iou_thresholds: float | Sequence[float] = 0.5,
        interpolation: Interpolation = "voc",
        score_threshold: float = 0.5,
        class_ranking: Sequence[int] | None = None,
        top_k: Sequence[int] = (5, 24),
        max_detections: int | None = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        thresholds = [float(iou_thresholds)] if isinstance(iou_thresholds, (int, float)) else [float(t) for t in iou_thresholds]
        if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
            raise ValueError(f"iou_thresholds must be one or more values in (0, 1], got {iou_thresholds!r}")
        if len({threshold_key(t) for t in thresholds}) != len(thresholds):
            raise ValueError(f"iou_thresholds must be distinct, got {iou_thresholds!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        if any(int(k) < 1 for k in top_k):
            raise ValueError(f"top_k sizes must be positive, got {list(top_k)!r}")
        if max_detections is not None and max_detections < 1:
            raise ValueError(f"max_detections must be positive or None, got {max_detections!r}")
        self.num_classes = num_classes
        self.iou_thresholds = thresholds
        self.interpolation = interpolation
        self.score_threshold = float(score_threshold)
        self.class_ranking = _check_ranking(class_ranking, num_classes)
        self.top_k = [int(k) for k in top_k]
        self.max_detections = max_detections
        for prefix in ("det", "gt"):
            self.add_cat_state(f"{prefix}_boxes", (4,), torch.float32)
            self.add_cat_state(f"{prefix}_labels", (), torch.int64)
            self.add_cat_state(f"{prefix}_counts", (), torch.int64)
        self.add_cat_state("det_scores", (), torch.float32)
        self.add_cat_state("gt_ignore", (), torch.uint8)

    def update(
        self,
        preds: Sequence[Mapping[str, Tensor]],
        targets: Sequence[Mapping[str, Tensor]],
        video_ids: Sequence[int] | Tensor | None = None,
        frame_indices: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Add a batch of frames: ``preds`` and ``targets`` hold one dict per frame (see class doc).

        Args:
            preds: one dict per frame: ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)``.
            targets: one dict per frame: ``boxes (M, 4)``, ``labels (M,)``, optional flags.
            video_ids: ``(B,)`` integer id of each frame's video, or ``None``.
            frame_indices: ``(B,)`` 0-based index of each frame in its video, or ``None``;
                with both, a repeated ``(video, frame)`` counts once (class doc).

        Raises:
            ValueError: mismatched lengths, a bad box, score or label (naming the frame
                index in the batch and the field), only one of ``video_ids`` and
                ``frame_indices``, or ids in some updates and not in others.
        """
        check_batch(preds, targets)
        detections = flatten_detections(preds, self.num_classes)
        truths = flatten_targets(targets, self.num_classes)
        ids = self.check_frame_ids(video_ids, frame_indices, len(preds))
        self.det_boxes.append(detections.boxes)
        self.det_scores.append(detections.scores)
        self.det_labels.append(detections.labels)
        self.det_counts.append(detections.counts)
        self.gt_boxes.append(truths.boxes)
        self.gt_labels.append(truths.labels)
        self.gt_ignore.append(truths.ignore)
        self.gt_counts.append(truths.counts)
        self.store_frame_ids(ids, detections.boxes.device)

    def compute(self) -> dict[str, Tensor]:
        """Evaluate every frame seen so far (all ranks).

        Returns:
            A dict of float32 tensors (``t`` is a threshold key such as ``50``, ``k`` a top-k size):

            * ``map``: mean AP over classes with ground truth and over IoU thresholds;
              ``map_{t}``: at one threshold.
            * ``ap_per_class`` ``(C,)``: mean over thresholds; ``ap_per_class_{t}`` ``(C,)``.
              NaN for classes without ground truth (excluded from every mean).
            * ``precision``, ``recall`` and ``*_per_class`` ``(C,)``: at ``score_threshold``.
            * ``best_f1``, ``best_f1_precision``, ``best_f1_recall`` and ``*_per_class``;
              ``best_f1_score_threshold_per_class`` ``(C,)``.
            * ``map_top{k}``, ``precision_top{k}``, ``recall_top{k}``, ``best_f1_top{k}``,
              ``best_f1_precision_top{k}``, ``best_f1_recall_top{k}``: means over the top-k
              ranked classes that have ground truth.
            * ``num_ground_truths_per_class``, ``num_detections_per_class`` ``(C,)``.
        """
        ranked = self._rank()
        num_classes, num_thresholds = self.num_classes, len(self.iou_thresholds)
        average_precision = np.full((num_thresholds, num_classes), np.nan)
        per_class = {name: np.full(num_classes, np.nan) for name in ("precision", "recall", "best_f1", "best_f1_precision", "best_f1_recall", "best_f1_score_threshold")}
        ap_function = voc_average_precision if self.interpolation == "voc" else coco101_average_precision
        for label in range(num_classes):
            positives = int(ranked.num_positives[label])
            if positives == 0:
                continue
            for index in range(num_thresholds):
                tp, fp, _ = ranked.of_class(label, index)
                average_precision[index, label] = ap_function(tp, fp, positives)
            tp, fp, scores = ranked.of_class(label, 0)
            per_class["precision"][label], per_class["recall"][label] = operating_point(tp, fp, scores, positives, self.score_threshold)
            (
                per_class["best_f1_precision"][label],
                per_class["best_f1_recall"][label],
                per_class["best_f1"][label],
                per_class["best_f1_score_threshold"][label],
            ) = best_f1_point(tp, fp, scores, positives)
        has_truth = ranked.num_positives > 0
        result: dict[str, Any] = {"map": mean_ignoring_nan(average_precision[:, has_truth])}
        for index, threshold in enumerate(self.iou_thresholds):
            result[f"map_{threshold_key(threshold)}"] = mean_ignoring_nan(average_precision[index])
        ap_per_class = average_precision.mean(0)
        result["ap_per_class"] = ap_per_class
        for index, threshold in enumerate(self.iou_thresholds):
            result[f"ap_per_class_{threshold_key(threshold)}"] = average_precision[index]
        for name in ("precision", "recall", "best_f1", "best_f1_precision", "best_f1_recall"):
            result[name] = mean_ignoring_nan(per_class[name])
        for name, values in per_class.items():
            result[f"{name}_per_class"] = values
        ranking = self.class_ranking if self.class_ranking is not None else _rank_by_count(ranked.num_positives)
        for k in self.top_k:
            top = np.asarray(ranking[:k], np.int64)
            result[f"map_top{k}"] = mean_ignoring_nan(ap_per_class[top])
            for name in ("precision", "recall", "best_f1", "best_f1_precision", "best_f1_recall"):
                result[f"{name}_top{k}"] = mean_ignoring_nan(per_class[name][top])
        result["num_ground_truths_per_class"] = ranked.num_positives
        result["num_detections_per_class"] = np.diff(ranked.class_bounds)
        return {key: torch.as_tensor(np.asarray(value), dtype=torch.float32) for key, value in result.items()}

    def precision_recall_curves(self, threshold_index: int = 0) -> dict[int, tuple[Tensor, Tensor, Tensor]]:
        """Precision-recall curve of every class with ground truth (all ranks' data).

        Args:
            threshold_index: which of ``iou_thresholds``.

        Returns:
            class id -> ``(precision (N,), recall (N,), scores (N,))`` float64 after each of the
            class's ranked detections (ignored detections removed).
        """
        with synced(self):
            ranked = self._rank()
        curves = {}
        for label in np.flatnonzero(ranked.num_positives > 0).tolist():
            tp, fp, scores = ranked.of_class(label, threshold_index)
            counted = tp | fp
            precision, recall = precision_recall(tp[counted], fp[counted], int(ranked.num_positives[label]))
            curves[label] = (torch.from_numpy(precision), torch.from_numpy(recall), torch.from_numpy(scores[counted].copy()))
        return curves

    def _rank(self) -> RankedDetections:
        """Match every kept detection at every IoU threshold and rank them class by class.

        Only the rows of each ``(video, frame)``'s first submission take part (``first_frames``).
        """
        det_counts, gt_counts = self.column("det_counts").numpy(), self.column("gt_counts").numpy()
        if len(det_counts) != len(gt_counts):
            raise RuntimeError(f"state holds {len(det_counts)} prediction frames but {len(gt_counts)} target frames")
        first = self.first_frames(len(det_counts))
        det_rows, gt_rows = torch.from_numpy(np.repeat(first, det_counts)), torch.from_numpy(np.repeat(first, gt_counts))
        boxes, labels = self.column("det_boxes")[det_rows], self.column("det_labels")[det_rows].numpy()
        scores = self.column("det_scores")[det_rows].numpy().astype(np.float64)
        gt_boxes, gt_labels = self.column("gt_boxes")[gt_rows], self.column("gt_labels")[gt_rows].numpy()
        gt_ignore = self.column("gt_ignore")[gt_rows].numpy().astype(bool)
        det_counts, gt_counts = det_counts[first], gt_counts[first]
        frames = np.arange(len(det_counts), dtype=np.int64)
        det_group = np.repeat(frames, det_counts) * self.num_classes + labels
        gt_group = np.repeat(frames, gt_counts) * self.num_classes + gt_labels
        if self.max_detections is not None and len(det_counts) and det_counts.max() > self.max_detections:
            keep = rank_in_groups(det_group, scores) < self.max_detections
            boxes, labels, scores, det_group = boxes[torch.from_numpy(keep)], labels[keep], scores[keep], det_group[keep]
        num_dets = len(labels)
        pair_det, pair_gt = pairs_with_equal_keys(det_group, gt_group)
        overlap = paired_box_iou(boxes[torch.from_numpy(pair_det)], gt_boxes[torch.from_numpy(pair_gt)])
        if self.interpolation == "coco101" and gt_ignore.any():
            crowd = gt_ignore[pair_gt]
            overlap[crowd] = paired_intersection_over_first(boxes[torch.from_numpy(pair_det[crowd])], gt_boxes[torch.from_numpy(pair_gt[crowd])])
        # only detections with a candidate pair compete; their order inside the group is all matching needs
        paired = pair_det[np.r_[True, pair_det[1:] != pair_det[:-1]]] if len(pair_det) else pair_det
        rank = np.zeros(num_dets, np.int64)
        rank[paired] = rank_in_groups(det_group[paired], scores[paired])
        status = np.zeros((len(self.iou_thresholds), num_dets), np.int8)
        for index, threshold in enumerate(self.iou_thresholds):
            if self.interpolation == "coco101":
                matched = greedy_match(pair_det, pair_gt, overlap, rank, gt_ignore, num_dets, min(threshold, 1 - 1e-10))
                hit = matched >= 0
                status[index, hit] = np.where(gt_ignore[matched[hit]], -1, 1)
            else:
                claimed, first = best_overlap_match(pair_det, pair_gt, overlap, rank, num_dets, threshold)
                hit = claimed >= 0
                difficult = np.zeros(num_dets, bool)
                difficult[hit] = gt_ignore[claimed[hit]]
                status[index, difficult] = -1
                status[index, hit & ~difficult & first] = 1
        by_score = np.argsort(-scores, kind="stable")
        # numpy's stable sort is a radix sort for 16-bit integers
        class_dtype = np.int16 if self.num_classes <= np.iinfo(np.int16).max else np.int64
        order = by_score[np.argsort(labels[by_score].astype(class_dtype), kind="stable")]
        labels_ranked = labels[order]
        return RankedDetections(
            labels=labels_ranked,
            scores=scores[order],
            status=status[:, order],
            class_bounds=np.searchsorted(labels_ranked, np.arange(self.num_classes + 1), side="left"),
            num_positives=np.bincount(gt_labels[~gt_ignore], minlength=self.num_classes).astype(np.int64),
        )


def _check_ranking(class_ranking: Sequence[int] | None, num_classes: int) -> list[int] | None:
    if class_ranking is None:
        return None
    ranking = [int(c) for c in class_ranking]
    bad = [c for c in ranking if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"class_ranking holds ids outside [0, {num_classes}): {bad}")
    if len(set(ranking)) != len(ranking):
        raise ValueError("class_ranking repeats a class id")
    return ranking


def _rank_by_count(counts: np.ndarray) -> list[int]:
    """Classes with ground truth, most first, ties by lower id."""
    return sorted(np.flatnonzero(counts > 0).tolist(), key=lambda c: (-int(counts[c]), c))
