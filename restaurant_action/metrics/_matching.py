"""Vectorised pairing, overlap and greedy matching of detections to ground truth.

Detections and ground truths only ever compete inside a *group* (a frame and class for frame
mAP, a video and class for video-mAP). Pairs are built only inside groups, overlaps are
computed only for those pairs, and the greedy matching runs in *rounds*: round ``r`` takes
the ``r``-th best detection of every group at once. Detections of one round belong to
different groups, so they never compete for the same ground truth, and processing rounds in
order is the same as processing each group's detections by descending score.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_area, box_iou

# box_iou works on (N, 4) x (M, 4); mapped over P pairs of single boxes it gives the
# element-wise IoU of two (P, 4) lists with torchvision's own arithmetic.
_paired_box_iou = torch.vmap(box_iou)


def pairs_with_equal_keys(keys_a: np.ndarray, keys_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)`` with ``keys_a[i] == keys_b[j]``.

    Args:
        keys_a: ``(N,)`` int64 group keys.
        keys_b: ``(M,)`` int64 group keys.

    Returns:
        ``index_a (P,)`` and ``index_b (P,)`` int64, ordered by ``i`` then ``j``.

    Example: ``keys_a = [7, 3]``, ``keys_b = [3, 7, 7]`` gives ``([0, 0, 1], [1, 2, 0])``.
    """
    order_b = np.argsort(keys_b, kind="stable")
    sorted_b = keys_b[order_b]
    low = np.searchsorted(sorted_b, keys_a, side="left")
    counts = np.searchsorted(sorted_b, keys_a, side="right") - low
    total = int(counts.sum())
    index_a = np.repeat(np.arange(len(keys_a), dtype=np.int64), counts)
    first_of_a = np.repeat(np.cumsum(counts) - counts, counts)
    index_b = order_b[np.repeat(low, counts) + np.arange(total, dtype=np.int64) - first_of_a]
    return index_a, index_b.astype(np.int64)


def paired_box_iou(boxes1: Tensor, boxes2: Tensor) -> np.ndarray:
    """IoU of ``boxes1[p]`` with ``boxes2[p]`` for every ``p`` (``torchvision.ops.box_iou``).

    Args:
        boxes1: ``(P, 4)`` absolute xyxy.
        boxes2: ``(P, 4)`` absolute xyxy.

    Returns:
        ``(P,)`` float64; 0 where both boxes have no area.
    """
    if len(boxes1) == 0:
        return np.zeros(0)
    iou = _paired_box_iou(boxes1.double()[:, None], boxes2.double()[:, None]).reshape(-1)
    return iou.nan_to_num(0.0).numpy()


def paired_intersection_over_first(boxes1: Tensor, boxes2: Tensor) -> np.ndarray:
    """Area of ``boxes1[p] ∩ boxes2[p]`` divided by the area of ``boxes1[p]`` (COCO's crowd overlap).

    The intersection is recovered from torchvision's IoU, ``I = IoU · (A1 + A2) / (1 + IoU)``,
    in float64, so there is still a single IoU implementation.

    Returns:
        ``(P,)`` float64; 0 where ``boxes1[p]`` has no area.
    """
    iou = paired_box_iou(boxes1, boxes2)
    area1 = box_area(boxes1.double()).numpy()
    area2 = box_area(boxes2.double()).numpy()
    intersection = iou * (area1 + area2) / (1.0 + iou)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area1 > 0, intersection / area1, 0.0)


def rank_in_groups(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Position of each item inside its group when the group is sorted by descending score.

    Ties keep input order (as a stable sort does).

    Args:
        groups: ``(N,)`` int64 group keys.
        scores: ``(N,)`` scores.

    Returns:
        ``(N,)`` int64 ranks, 0 for each group's best.
    """
    order = np.lexsort((-scores.astype(np.float64), groups))  # lexsort is stable
    sorted_groups = groups[order]
    new_group = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]] if len(groups) else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(groups)), 0)) if len(groups) else np.zeros(0, np.int64)
    rank = np.empty(len(groups), np.int64)
    rank[order] = np.arange(len(groups)) - group_start
    return rank


def greedy_match(
    pair_det: np.ndarray,
    pair_gt: np.ndarray,
    pair_overlap: np.ndarray,
    det_rank: np.ndarray,
    gt_reusable: np.ndarray,
    num_dets: int,
    threshold: float,
) -> np.ndarray:
    """COCO's greedy matching: each detection, best first, takes the best still-free ground truth.

    A detection considers the ground truths of its group with ``overlap >= threshold`` that
    are free (not taken by a better detection; reusable ones, COCO's crowds, are always free),
    prefers non-reusable ones, then the highest overlap, then on equal overlap the ground
    truth listed last (pycocotools' rule), and takes it.

    Args:
        pair_det, pair_gt: ``(P,)`` detection and ground-truth index of each candidate pair
            (pairs only inside groups).
        pair_overlap: ``(P,)`` overlap of each pair.
        det_rank: ``(num_dets,)`` rank of each detection inside its group (0 = best score).
        gt_reusable: ``(num_gts,)`` bool, ground truths that can be matched many times.
        num_dets: number of detections.
        threshold: minimum overlap.

    Returns:
        ``(num_dets,)`` int64: the matched ground truth, or -1.
    """
    matched = np.full(num_dets, -1, np.int64)
    keep = pair_overlap >= threshold
    det, gt, overlap = pair_det[keep], pair_gt[keep], pair_overlap[keep]
    if len(det) == 0:
        return matched
    preferred = ~gt_reusable[gt]
    # within each detection its preferred ground truth comes last; detections by round
    order = np.lexsort((gt, overlap, preferred, det, det_rank[det]))
    det, gt, preferred = det[order], gt[order], preferred[order]
    rounds = det_rank[det]
    taken = np.zeros(len(gt_reusable), bool)
    boundaries = np.flatnonzero(np.r_[True, rounds[1:] != rounds[:-1], True])
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        round_det, round_gt, round_preferred = det[start:end], gt[start:end], preferred[start:end]
        free = ~round_preferred | ~taken[round_gt]
        round_det, round_gt, round_preferred = round_det[free], round_gt[free], round_preferred[free]
        last = np.r_[round_det[1:] != round_det[:-1], True] if len(round_det) else np.zeros(0, bool)
        matched[round_det[last]] = round_gt[last]
        taken[round_gt[last & round_preferred]] = True
    return matched


def best_overlap_match(
    pair_det: np.ndarray,
    pair_gt: np.ndarray,
    pair_overlap: np.ndarray,
    det_rank: np.ndarray,
    num_dets: int,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The VOC devkit's matching: each detection looks only at its highest-overlap ground truth.

    A detection's candidate is the ground truth of its group with the highest overlap (the
    first listed on ties). If that overlap is ``>= threshold`` the detection claims it; the
    best-ranked claimant of each ground truth gets it, later claimants do not (they are
    duplicates, false positives, even when another ground truth would have been free).

    Args:
        pair_det, pair_gt, pair_overlap: ``(P,)`` candidate pairs inside groups.
        det_rank: ``(num_dets,)`` rank of each detection inside its group (0 = best score).
        num_dets: number of detections.
        threshold: minimum overlap.

    Returns:
        ``claimed (num_dets,)`` int64 (the best ground truth if its overlap passes, else -1)
        and ``first (num_dets,)`` bool (the claim is the first one on that ground truth).
    """
    claimed = np.full(num_dets, -1, np.int64)
    first = np.zeros(num_dets, bool)
    if len(pair_det) == 0:
        return claimed, first
    order = np.lexsort((-pair_gt, pair_overlap, pair_det))
    det, gt, overlap = pair_det[order], pair_gt[order], pair_overlap[order]
    last = np.r_[det[1:] != det[:-1], True]
    det, gt, overlap = det[last], gt[last], overlap[last]
    hit = overlap >= threshold
    det, gt = det[hit], gt[hit]
    claimed[det] = gt
    if len(det):
        by_gt = np.lexsort((det_rank[det], gt))
        gt_sorted = gt[by_gt]
        first[det[by_gt[np.r_[True, gt_sorted[1:] != gt_sorted[:-1]]]]] = True
    return claimed, first
