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
Ground truths flagged ``iscrowd``/``difficult`` are left out.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from restaurant_action.metrics._inputs import check_batch, flatten_detections, flatten_targets, synced
from restaurant_action.metrics._matching import paired_box_iou, pairs_with_equal_keys

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
    return torch.from_numpy(gt_labels), torch.from_numpy(predicted >= 0), torch.from_numpy(predicted)


class LocalizationRecall(Metric):
    """YOWO's localization recall: the fraction of ground-truth boxes with a detection of IoU > 0.5.

    Any detection of the frame counts, whatever its class (see the module doc for the exact
    rule and thresholds). State: per-class counts (``dist_reduce_fx="sum"``), exact under DDP.

    Args:
        num_classes: number of classes.
        iou_threshold: localized when the best IoU is ``> iou_threshold`` (YOWO: 0.5).
        score_threshold: detections with ``score > score_threshold`` take part (YOWO: 0.005).
        kwargs: passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, iou_threshold: float = YOWO_IOU_THRESHOLD, score_threshold: float = YOWO_SCORE_THRESHOLD, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold
        self.add_state("localized", default=torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]) -> None:
        """Add a batch of frames (one dict per frame, as ``FrameMAP.update``)."""
        labels, localized, _ = best_detection_per_target(preds, targets, self.num_classes, self.iou_threshold, self.score_threshold)
        self.total += torch.bincount(labels, minlength=self.num_classes).to(self.total.device)
        self.localized += torch.bincount(labels[localized], minlength=self.num_classes).to(self.localized.device)

    def compute(self) -> Tensor:
        """Localized / ground-truth boxes over all classes: a float32 scalar (NaN without ground truth)."""
        return _ratio(self.localized.sum(), self.total.sum())

    def per_class(self) -> Tensor:
        """``(C,)`` float32 localization recall of each class (NaN for classes without ground truth)."""
        with synced(self):
            return _ratio(self.localized, self.total)


class ClassificationAccuracy(Metric):
    """YOWO's classification accuracy: of the localized ground-truth boxes, the fraction whose best-IoU detection has the right class.

    State: the ``(C, C)`` confusion matrix of localized boxes (rows: true class, columns: the
    best detection's class; ``dist_reduce_fx="sum"``).

    Args:
        num_classes: number of classes.
        iou_threshold: localized when the best IoU is ``> iou_threshold`` (YOWO: 0.5).
        score_threshold: detections with ``score > score_threshold`` take part (YOWO: 0.005).
        kwargs: passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, iou_threshold: float = YOWO_IOU_THRESHOLD, score_threshold: float = YOWO_SCORE_THRESHOLD, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold
        self.add_state("confusion", default=torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]) -> None:
        """Add a batch of frames (one dict per frame, as ``FrameMAP.update``)."""
        labels, localized, predicted = best_detection_per_target(preds, targets, self.num_classes, self.iou_threshold, self.score_threshold)
        cells = labels[localized] * self.num_classes + predicted[localized]
        counts = torch.bincount(cells, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)
        self.confusion += counts.to(self.confusion.device)

    def compute(self) -> Tensor:
        """Correct / localized boxes: a float32 scalar (NaN when nothing was localized)."""
        return _ratio(self.confusion.diagonal().sum(), self.confusion.sum())

    def confusion_matrix(self) -> Tensor:
        """``(C, C)`` int64 counts of localized boxes: row = true class, column = best detection's class."""
        with synced(self):
            return self.confusion.clone()


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` as float32, NaN where the denominator is 0."""
    numerator, denominator = numerator.to(torch.float32), denominator.to(torch.float32)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.full_like(denominator, float("nan")))
