"""A box-aligned action classifier over clip features (RoIAlign, as the AVA detectors' heads).

YOWO's region head reads one stride-32 cell per box; on actions that only the direction of
motion tells apart, that readout does not learn the direction, while a readout aligned with the
box does (docs/training.md, "Where YOWO loses the direction"). :class:`RoIActionHead` pools
the 3D branch's stride-8 or stride-16 features over a grid of bins on each box, enlarged about
its centre so that it holds where the hand came from, and maps them to class logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align


def enlarge_boxes(boxes: Tensor, factor: float) -> Tensor:
    """Boxes ``(N, 4)`` xyxy scaled by ``factor`` about their centres."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)
    return torch.cat([centres - half, centres + half], dim=1)


def jitter_boxes(boxes: Tensor, fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """Boxes ``(N, 4)`` xyxy shifted by up to ``fraction`` of their width and height (uniform, per
    box and axis), to train on boxes as inexact as detected ones.
    """
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    shift = (torch.rand(len(boxes), 2, generator=generator, device=boxes.device) * 2 - 1).repeat(1, 2)
    return boxes + shift * size * fraction


class RoIActionHead(nn.Module):
    """Class logits of boxes from a feature map: ``features (B, C, H/s, W/s)`` and ``rois (N, 5)``
    ``[batch index, x1, y1, x2, y2]`` input pixels → ``(N, num_classes)``.

    Each box is enlarged ``context`` times about its centre, RoIAligned into ``bins × bins``
    (bilinear, two samples per bin and axis) and the flattened bins go through one linear layer:
    the bins keep where inside the box (and its surroundings) each feature is, which a motion's
    direction needs.

    Args:
        in_channels: channels C of the features.
        num_classes: classes.
        stride: pixels per feature cell ``s``.
        bins: bins per side.
        context: box enlargement factor (≥ 1).
    """

    def __init__(self, in_channels: int, num_classes: int, stride: int, bins: int = 4, context: float = 2.0) -> None:
        super().__init__()
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        if context < 1.0:
            raise ValueError(f"context must be >= 1 (the box enlarged about its centre), got {context}")
        self.stride = stride
        self.bins = bins
        self.context = context
        self.classifier = nn.Linear(in_channels * bins * bins, num_classes)

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        """``features (B, C, H/s, W/s)``, ``rois (N, 5)`` → logits ``(N, num_classes)``."""
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise ValueError(f"rois must be (N, 5) [batch index, x1, y1, x2, y2], got {tuple(rois.shape)}")
        boxes = enlarge_boxes(rois[:, 1:].to(features.dtype), self.context)
        regions = torch.cat([rois[:, :1].to(features.dtype), boxes], dim=1)
        pooled = roi_align(features, regions, self.bins, 1.0 / self.stride, sampling_ratio=2, aligned=True)
        return self.classifier(pooled.flatten(1))
