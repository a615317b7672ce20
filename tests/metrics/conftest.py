"""Fixtures of the metric tests: random per-frame detection cases."""

from __future__ import annotations

from typing import Callable

import pytest
import torch



def _random_case(
    seed: int,
    num_frames: int = 24,
    num_classes: int = 5,
    max_dets: int = 8,
    max_gts: int = 4,
    tied_scores: bool = False,
    crowd: bool = False,
    empty_every: int = 5,
) -> tuple[list[dict], list[dict]]:
    """Per-frame preds/targets with realistic overlaps.

    Most detections are jittered copies of a ground-truth box (right or wrong class), the rest
    are random; every ``empty_every``-th frame has nothing, the next one only detections, the
    one after only ground truth. ``tied_scores`` draws scores from {0, 0.25, ..., 1};
    ``crowd`` flags about a fifth of the ground truths ``iscrowd``.
    """
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for frame in range(num_frames):
        phase = frame % empty_every
        num_gts = 0 if phase in (0, 1) else int(torch.randint(1, max_gts + 1, (1,), generator=g))
        num_dets = 0 if phase in (0, 2) else int(torch.randint(1, max_dets + 1, (1,), generator=g))
        gt_boxes = torch.rand(num_gts, 4, generator=g) * 80
        gt_boxes[:, 2:] += gt_boxes[:, :2] + 8 + torch.rand(num_gts, 2, generator=g) * 30
        gt_labels = torch.randint(0, num_classes, (num_gts,), generator=g)
        det_boxes = torch.rand(num_dets, 4, generator=g) * 80
        det_boxes[:, 2:] += det_boxes[:, :2] + 8 + torch.rand(num_dets, 2, generator=g) * 30
        det_labels = torch.randint(0, num_classes, (num_dets,), generator=g)
        if num_gts and num_dets:
            source = torch.randint(0, num_gts, (num_dets,), generator=g)
            near = torch.rand(num_dets, generator=g) < 0.75
            jitter = torch.randn(num_dets, 4, generator=g) * 3
            det_boxes = torch.where(near[:, None], gt_boxes[source] + jitter, det_boxes)
            det_boxes[:, 2:] = torch.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
            right_class = near & (torch.rand(num_dets, generator=g) < 0.7)
            det_labels = torch.where(right_class, gt_labels[source], det_labels)
        scores = torch.rand(num_dets, generator=g)
        if tied_scores:
            scores = (scores * 4).round() / 4
        target = {"boxes": gt_boxes, "labels": gt_labels}
        if crowd:
            target["iscrowd"] = (torch.rand(num_gts, generator=g) < 0.2).long()
        preds.append({"boxes": det_boxes, "scores": scores, "labels": det_labels})
        targets.append(target)
    return preds, targets


@pytest.fixture()
def random_case() -> Callable[..., tuple[list[dict], list[dict]]]:
    """``random_case(seed, ...)`` builds per-frame preds/targets (see ``_random_case``)."""
    return _random_case
