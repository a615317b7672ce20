"""Average precision and operating points of one class's ranked detections.

Every function takes the class's detections already sorted by descending score, as two
boolean arrays: ``tp`` (a true positive) and ``fp`` (a false positive). A detection that is
neither (it matched an ignored ground truth) keeps its place in the ranking but counts for
nothing, as in the VOC devkit and pycocotools.
"""

from __future__ import annotations

import numpy as np
import torch

# The 101 recall thresholds exactly as torchmetrics' MeanAveragePrecision hands them to
# pycocotools: a float32 linspace widened to float64. They differ from pycocotools' own
# float64 ones, which matters when a recall equals a threshold (3/5 < float32(0.6)).
COCO_RECALL_THRESHOLDS = torch.linspace(0.0, 1.00, round(1.00 / 0.01) + 1).double().numpy()


def precision_recall(tp: np.ndarray, fp: np.ndarray, num_positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each ranked detection.

    Returns:
        ``precision (N,)`` = TP/(TP+FP) (0 before the first counted detection) and
        ``recall (N,)`` = TP/num_positives, both float64.
    """
    tp_sum = np.cumsum(tp, dtype=np.float64)
    fp_sum = np.cumsum(fp, dtype=np.float64)
    precision = tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(np.float64).eps)
    return precision, tp_sum / num_positives


def voc_average_precision(tp: np.ndarray, fp: np.ndarray, num_positives: int) -> float:
    """All-point interpolated AP (VOC devkit 2010+, ``voc_ap(use_07_metric=False)``).

    The precision envelope ``p̂(i) = max_{j >= i} precision(j)`` is integrated over recall:
    ``AP = Σ_i (recall(i) - recall(i-1)) · p̂(i)`` with ``recall(-1) = 0``.

    Example: ranks TP, FP, TP with 3 positives: recall 1/3, 1/3, 2/3, precision 1, 1/2, 2/3;
    AP = 1/3 · 1 + 1/3 · 2/3 = 5/9.
    """
    if len(tp) == 0:
        return 0.0
    precision, recall = precision_recall(tp, fp, num_positives)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * envelope))


def coco101_average_precision(tp: np.ndarray, fp: np.ndarray, num_positives: int) -> float:
    """101-point interpolated AP, computed as pycocotools' ``COCOeval.accumulate`` does.

    Precision ``TP/(TP+FP+ε)`` (ε = ``np.spacing(1)``) is made monotone from the right; at
    each recall threshold ``r ∈ {0, 0.01, …, 1}`` (``COCO_RECALL_THRESHOLDS``, torchmetrics'
    float32 values) it is read at the first rank whose recall is ``>= r`` (0 if none); AP is
    the mean of the 101 values.
    """
    if len(tp) == 0:
        return 0.0
    tp_sum = np.cumsum(tp).astype(float)
    fp_sum = np.cumsum(fp).astype(float)
    recall = tp_sum / num_positives
    precision = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, COCO_RECALL_THRESHOLDS, side="left")
    valid = index < len(envelope)
    sampled = np.zeros(len(COCO_RECALL_THRESHOLDS))
    sampled[valid] = envelope[index[valid]]
    return float(sampled.mean())


def operating_point(tp: np.ndarray, fp: np.ndarray, scores: np.ndarray, num_positives: int, score_threshold: float) -> tuple[float, float]:
    """Precision and recall of the detections with ``score >= score_threshold``.

    Returns:
        ``(precision, recall)``; precision is 0 when no counted detection passes.
    """
    passed = scores >= score_threshold
    true_positives = float(np.count_nonzero(tp & passed))
    counted = true_positives + float(np.count_nonzero(fp & passed))
    return (true_positives / counted if counted else 0.0), true_positives / num_positives


def best_f1_point(tp: np.ndarray, fp: np.ndarray, scores: np.ndarray, num_positives: int) -> tuple[float, float, float, float]:
    """The score threshold with the highest F1 = 2PR/(P+R).

    Only thresholds a user can set are considered: "keep detections with score >= s" for each
    distinct score ``s`` (never a cut between two equal scores). On equal F1 the higher
    threshold wins.

    Returns:
        ``(precision, recall, f1, threshold)``; all 0 and threshold NaN without detections.
    """
    if len(tp) == 0:
        return 0.0, 0.0, 0.0, float("nan")
    precision, recall = precision_recall(tp, fp, num_positives)
    cut = np.r_[scores[1:] != scores[:-1], True]
    precision, recall, thresholds = precision[cut], recall[cut], scores[cut]
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    best = int(np.argmax(f1))
    return float(precision[best]), float(recall[best]), float(f1[best]), float(thresholds[best])


def mean_ignoring_nan(values: np.ndarray) -> float:
    """Mean of the non-NaN entries (classes without ground truth are NaN); NaN when there are none."""
    values = np.asarray(values, np.float64)
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")
