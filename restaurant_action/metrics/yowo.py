"""YOWO's frame-level measures: ``LocalizationRecall`` and ``ClassificationAccuracy``.

They reproduce the test loop of YOWO's reference code (``test_ucf24_jhmdb21`` in
``wei-tim/YOWO``, ``core/optimization.py``): for every ground-truth box, the detection of the
same frame with the highest IoU — over *all* detections of any class that survive the
confidence threshold — is found;

* the box is **localized** when that best IoU is ``> 0.5`` (strictly, as YOWO compares);
* a localized box is **correctly classified** when that best detection's class is the
  ground truth's class.

``LocalizationRecall`` = localized / ground-truth boxes; ``ClassificationAccuracy`` =
correctly classified / localized. YOWO keeps detections whose confidence (objectness ×
class probability) is ``> 0.005`` (its ``conf_thresh_valid``), after NMS at 0.4, so the score
threshold defaults to 0.005 with a strict ``>``; pass the model's NMS output as ``preds``.
YOWO's 0.25 threshold only counts "proposals" for its precision and F-score, not for these
two measures. On equal IoU the higher-scoring detection (then the earlier one) is the best.
Ground truths flagged ``iscrowd``/``difficult`` are left out. Given each frame's video id and
frame index, a ``(video, frame)`` submitted more than once (DDP sampler padding) counts once
(``restaurant_action.metrics._repeats``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from restaurant_action.metrics._inputs import check_batch, flatten_detections, flatten_targets, synced
from restaurant_action.metrics._matching import paired_box_iou, pairs_with_equal_keys
from restaurant_action.metrics._repeats import FrameIdMetric

YOWO_IOU_THRESHOLD = 0.5
YOWO_SCORE_THRESHOLD = 0.005


def best_detection_per_target(
    preds: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    num_classes: int,
    iou_threshold: float = YOWO_IOU_THRESHOLD,
    score_threshold: float = YOWO_SCORE_THRESHOLD,
) -> tuple[Tensor, Tensor, Tensor]:
    """For each ground-truth box, YOWO's best detection of its frame (see module doc).

    Args:
        preds: one dict per frame: ``boxes (K, 4)`` xyxy, ``scores (K,)``, ``labels (K,)``.
        targets: one dict per frame: ``boxes (M, 4)``, ``labels (M,)``, optional
            ``iscrowd``/``difficult (M,)``.
        num_classes: labels must lie in ``[0, num_classes)``.
        iou_threshold: localized when the best IoU is ``> iou_threshold``.
        score_threshold: only detections with ``score > score_threshold`` take part.

    Returns:
        For the non-ignored ground-truth boxes, flattened in input order: ``labels (M,)``,
        ``localized (M,)`` bool and ``predicted (M,)`` int64, the best detection's class
        (-1 when not localized).
    """
    labels, predicted, _ = _best_detections(preds, targets, num_classes, iou_threshold, score_threshold)
    return labels, predicted >= 0, predicted


def _best_detections(
    preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]], num_classes: int, iou_threshold: float, score_threshold: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``labels (M,)`` and ``predicted (M,)`` as ``best_detection_per_target``, and ``counts (B,)`` int64, the non-ignored ground truths of each frame."""
    check_batch(preds, targets)
    detections = flatten_detections(preds, num_classes)
    truths = flatten_targets(targets, num_classes)
    keep = (detections.scores > score_threshold).cpu().numpy()
    det_frame = detections.frame_of_box.cpu().numpy()[keep]
    det_boxes = detections.boxes.cpu()[torch.from_numpy(keep)]
    det_scores = detections.scores.cpu().numpy()[keep].astype(np.float64)
    det_labels = detections.labels.cpu().numpy()[keep]
    counted = truths.ignore.cpu().numpy() == 0
    gt_frame = truths.frame_of_box.cpu().numpy()[counted]
    gt_boxes = truths.boxes.cpu()[torch.from_numpy(counted)]
    gt_labels = truths.labels.cpu().numpy()[counted]
    pair_gt, pair_det = pairs_with_equal_keys(gt_frame, det_frame)
    iou = paired_box_iou(gt_boxes[torch.from_numpy(pair_gt)], det_boxes[torch.from_numpy(pair_det)])
    predicted = np.full(len(gt_labels), -1, np.int64)
    if len(pair_gt):
        # per ground truth the last pair is the best: highest IoU, then score, then earliest detection
        order = np.lexsort((-pair_det, det_scores[pair_det], iou, pair_gt))
        last = order[np.r_[pair_gt[order][1:] != pair_gt[order][:-1], True]]
        localized = iou[last] > iou_threshold
        predicted[pair_gt[last][localized]] = det_labels[pair_det[last][localized]]
    counts = np.bincount(gt_frame, minlength=len(targets)).astype(np.int64)
    return torch.from_numpy(gt_labels), torch.from_numpy(predicted), torch.from_numpy(counts)


class _YOWOMeasure(FrameIdMetric):
    """State of YOWO's measures, concatenated across ranks (``dist_reduce_fx="cat"``).

    Per non-ignored ground-truth box: ``gt_labels`` and ``predicted`` (the best detection's
    class, -1 when not localized); per frame: ``gt_counts`` (its non-ignored ground truths)
    and, when ``update`` got them, the video id and frame index (``FrameIdMetric``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, iou_threshold: float = YOWO_IOU_THRESHOLD, score_threshold: float = YOWO_SCORE_THRESHOLD, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold
        self.add_cat_state("gt_labels", (), torch.int64)
        self.add_cat_state("predicted", (), torch.int64)
        self.add_cat_state("gt_counts", (), torch.int64)

    def update(
        self,
        preds: Sequence[Mapping[str, Tensor]],
        targets: Sequence[Mapping[str, Tensor]],
        video_ids: Sequence[int] | Tensor | None = None,
        frame_indices: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Add a batch of frames: ``preds``, ``targets`` (one dict per frame), ``video_ids`` and
        ``frame_indices`` (``(B,)`` each, optional; with both, a repeated ``(video, frame)``
        counts once) and the errors raised are those of ``FrameMAP.update``.
        """
        labels, predicted, counts = _best_detections(preds, targets, self.num_classes, self.iou_threshold, self.score_threshold)
        ids = self.check_frame_ids(video_ids, frame_indices, len(preds))
        self.gt_labels.append(labels.to(self.device))
        self.predicted.append(predicted.to(self.device))
        self.gt_counts.append(counts.to(self.device))
        self.store_frame_ids(ids, self.device)

    def _first_submission_boxes(self) -> tuple[Tensor, Tensor]:
        """``labels (M,)`` and ``predicted (M,)`` of the ground truths of each frame's first submission, on the CPU."""
        counts = self.column("gt_counts").numpy()
        rows = torch.from_numpy(np.repeat(self.first_frames(len(counts)), counts))
        return self.column("gt_labels")[rows], self.column("predicted")[rows]


class LocalizationRecall(_YOWOMeasure):
    """YOWO's localization recall: the fraction of ground-truth boxes with a detection of IoU > 0.5.

    Any detection of the frame counts, whatever its class (see the module doc for the exact
    rule and thresholds). State: per ground-truth box its class and best detection's class,
    per frame its box count and optional ids (``dist_reduce_fx="cat"``), exact under DDP.

    Args:
        num_classes: number of classes.
        iou_threshold: localized when the best IoU is ``> iou_threshold`` (YOWO: 0.5).
        score_threshold: detections with ``score > score_threshold`` take part (YOWO: 0.005).
        kwargs: passed to ``torchmetrics.Metric``.
    """

    def compute(self) -> Tensor:
        """Localized / ground-truth boxes over all classes: a float32 scalar (NaN without ground truth)."""
        localized, total = self._counts()
        return _ratio(localized.sum(), total.sum())

    def per_class(self) -> Tensor:
        """``(C,)`` float32 localization recall of each class (NaN for classes without ground truth)."""
        with synced(self):
            return _ratio(*self._counts())

    def _counts(self) -> tuple[Tensor, Tensor]:
        """``(C,)`` int64 localized and ``(C,)`` int64 ground-truth boxes per class."""
        labels, predicted = self._first_submission_boxes()
        return torch.bincount(labels[predicted >= 0], minlength=self.num_classes), torch.bincount(labels, minlength=self.num_classes)


class ClassificationAccuracy(_YOWOMeasure):
    """YOWO's classification accuracy: of the localized ground-truth boxes, the fraction whose best-IoU detection has the right class.

    State: as ``LocalizationRecall``; ``confusion_matrix()`` gives the ``(C, C)`` counts of
    localized boxes (rows: true class, columns: the best detection's class).

    Args:
        num_classes: number of classes.
        iou_threshold: localized when the best IoU is ``> iou_threshold`` (YOWO: 0.5).
        score_threshold: detections with ``score > score_threshold`` take part (YOWO: 0.005).
        kwargs: passed to ``torchmetrics.Metric``.
    """

    def compute(self) -> Tensor:
        """Correct / localized boxes: a float32 scalar (NaN when nothing was localized)."""
        confusion = self._confusion()
        return _ratio(confusion.diagonal().sum(), confusion.sum())

    def confusion_matrix(self) -> Tensor:
        """``(C, C)`` int64 counts of localized boxes: row = true class, column = best detection's class."""
        with synced(self):
            return self._confusion()

    def _confusion(self) -> Tensor:
        """``(C, C)`` int64 confusion of the localized boxes of first submissions."""
        labels, predicted = self._first_submission_boxes()
        localized = predicted >= 0
        cells = labels[localized] * self.num_classes + predicted[localized]
        return torch.bincount(cells, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` as float32, NaN where the denominator is 0."""
    numerator, denominator = numerator.to(torch.float32), denominator.to(torch.float32)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.full_like(denominator, float("nan")))
