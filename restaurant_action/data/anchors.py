"""Anchor boxes by k-means on box sizes with ``1 − IoU`` as the distance (YOLOv2/v3).

scikit-learn's ``KMeans`` only knows Euclidean distance, which over-weights large boxes, so
the clustering here is a vectorised Lloyd iteration on the IoU of centred boxes. (The study's
own code assigned each box to the cluster of *least* IoU; this one assigns to the greatest.)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

BPR_RATIO = 4.0


class AnchorFit(NamedTuple):
    """Result of ``kmeans_anchors``.

    Attributes:
        anchors: float32 ``(k, 2)`` widths and heights in pixels, ascending by area.
        mean_iou: mean over boxes of the IoU with their best anchor.
        best_possible_recall: fraction of boxes with an anchor whose width and height ratios
            are both within ``BPR_RATIO`` (4×), the matching rule of YOLOv5's anchor check.
    """

    anchors: np.ndarray
    mean_iou: float
    best_possible_recall: float


def wh_iou(wh1: np.ndarray, wh2: np.ndarray) -> np.ndarray:
    """IoU of boxes sharing a centre, from sizes: ``(N, 2)`` × ``(M, 2)`` -> ``(N, M)``."""
    inter = np.minimum(wh1[:, None, 0], wh2[None, :, 0]) * np.minimum(wh1[:, None, 1], wh2[None, :, 1])
    area1 = wh1[:, 0] * wh1[:, 1]
    area2 = wh2[:, 0] * wh2[:, 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def anchor_quality(boxes_wh: np.ndarray, anchors: np.ndarray) -> tuple[float, float]:
    """``(mean best IoU, best-possible recall)`` of ``anchors (k, 2)`` on ``boxes_wh (N, 2)``."""
    boxes_wh = np.asarray(boxes_wh, np.float64)
    anchors = np.asarray(anchors, np.float64)
    mean_iou = float(wh_iou(boxes_wh, anchors).max(1).mean())
    ratio = boxes_wh[:, None, :] / anchors[None, :, :]
    worst_side = np.minimum(ratio, 1 / ratio).min(2)
    bpr = float((worst_side.max(1) > 1 / BPR_RATIO).mean())
    return mean_iou, bpr


def kmeans_anchors(boxes: np.ndarray, k: int, img_size: int | None = None, seed: int = 0, restarts: int = 5, max_iter: int = 300) -> AnchorFit:
    """Cluster box sizes into ``k`` anchors with distance ``1 − IoU``.

    Each restart starts from k-means++ seeding (on the same distance), assigns every box to
    the anchor of greatest IoU and moves each anchor to the median size of its boxes until
    the assignment stops changing; the restart with the highest mean best IoU wins.

    Args:
        boxes: ``(N, 4)`` xyxy or ``(N, 2)`` widths/heights, in pixels of the training images.
        k: number of anchors.
        img_size: if given, boxes are taken as normalised to ``[0, 1]`` and scaled by it.
        seed: random seed.
        restarts: independent restarts.
        max_iter: iterations per restart.

    Returns:
        ``AnchorFit`` with anchors ascending by area.

    Raises:
        ValueError: fewer distinct boxes than ``k``, or boxes without area.
    """
    boxes = np.asarray(boxes, np.float64)
    wh = boxes[:, 2:4] - boxes[:, 0:2] if boxes.ndim == 2 and boxes.shape[1] == 4 else boxes.reshape(-1, 2)
    if img_size is not None:
        wh = wh * img_size
    if (wh <= 0).any():
        raise ValueError("every box needs a positive width and height")
    if len(np.unique(wh, axis=0)) < k:
        raise ValueError(f"need at least {k} distinct box sizes to fit {k} anchors, got {len(np.unique(wh, axis=0))}")
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(restarts):
        centres = _kmeans_pp(wh, k, rng)
        assignment = np.full(len(wh), -1)
        for _ in range(max_iter):
            new_assignment = wh_iou(wh, centres).argmax(1)
            if np.array_equal(new_assignment, assignment):
                break
            assignment = new_assignment
            for c in range(k):
                members = wh[assignment == c]
                centres[c] = np.median(members, 0) if len(members) else wh[rng.integers(len(wh))]
        score = float(wh_iou(wh, centres).max(1).mean())
        if best is None or score > best[0]:
            best = (score, centres.copy())
    anchors = best[1][np.argsort(best[1].prod(1))]
    mean_iou, bpr = anchor_quality(wh, anchors)
    return AnchorFit(anchors.astype(np.float32), mean_iou, bpr)


def _kmeans_pp(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with distance ``1 − IoU``."""
    centres = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        distance = 1 - wh_iou(wh, np.array(centres)).max(1)
        weights = distance**2
        total = weights.sum()
        index = rng.choice(len(wh), p=weights / total) if total > 0 else rng.integers(len(wh))
        centres.append(wh[index])
    return np.array(centres, np.float64)
