"""Box-aligned heads over stride-8/16 features (RoIAlign, as the AVA detectors' and Fast R-CNN's
heads): an action classifier and a box refiner.

YOWO's region head reads one stride-32 cell per box; on actions that only the direction of
motion tells apart, that readout does not learn the direction, while a readout aligned with the
box does (docs/training.md, "Where YOWO loses the direction"). :class:`RoIActionHead` pools
the 3D branch's stride-8 or stride-16 features over a grid of bins on each box, enlarged about
its centre so that it holds where the hand came from, and maps them to class logits.
:class:`RoIBoxRefiner` pools finer features the same way and regresses a correction of each
box, Fast R-CNN's box deltas: the stride-32 cell places small hands coarsely.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import roi_align

# Fast R-CNN's (and torchvision's RoIHeads') weights of the (dx, dy, dw, dh) box deltas.
BOX_DELTA_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def enlarge_boxes(boxes: Tensor, factor: float) -> Tensor:
    """Boxes ``(N, 4)`` xyxy scaled by ``factor`` about their centres."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)
    return torch.cat([centres - half, centres + half], dim=1)


def jitter_boxes(boxes: Tensor, fraction: float, generator: torch.Generator | None = None,
                 scale: float = 0.0) -> Tensor:
    """Boxes ``(N, 4)`` xyxy shifted by up to ``fraction`` of their width and height (uniform, per
    box and axis) and, with ``scale``, their width and height multiplied by ``exp(u)``, ``u``
    uniform in ``[-scale, scale]`` per box and axis: boxes as inexact as detected ones.
    """
    size = boxes[:, 2:] - boxes[:, :2]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    draws = torch.rand(len(boxes), 4, generator=generator, device=boxes.device) * 2 - 1
    centres = centres + draws[:, :2] * size * fraction
    half = size * torch.exp(draws[:, 2:] * scale) / 2
    return torch.cat([centres - half, centres + half], dim=1)


def pool_boxes(features: Tensor, rois: Tensor, stride: int, bins: int, context: float) -> Tensor:
    """``features (B, C, H/s, W/s)`` RoIAligned at ``rois (N, 5)`` ``[batch index, x1, y1, x2, y2]``
    (input pixels), each box enlarged ``context`` times about its centre: ``(N, C, bins, bins)``
    (bilinear, two samples per bin and axis).
    """
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be (N, 5) [batch index, x1, y1, x2, y2], got {tuple(rois.shape)}")
    boxes = enlarge_boxes(rois[:, 1:].to(features.dtype), context)
    regions = torch.cat([rois[:, :1].to(features.dtype), boxes], dim=1)
    return roi_align(features, regions, bins, 1.0 / stride, sampling_ratio=2, aligned=True)


def _check_roi_options(bins: int, context: float) -> None:
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if context < 1.0:
        raise ValueError(f"context must be >= 1 (the box enlarged about its centre), got {context}")


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
        _check_roi_options(bins, context)
        self.stride = stride
        self.bins = bins
        self.context = context
        self.classifier = nn.Linear(in_channels * bins * bins, num_classes)

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        """``features (B, C, H/s, W/s)``, ``rois (N, 5)`` → logits ``(N, num_classes)``."""
        return self.classifier(pool_boxes(features, rois, self.stride, self.bins, self.context).flatten(1))


class RoIBoxRefiner(nn.Module):
    """A correction of each box from a feature map, Fast R-CNN's box regression:
    ``features (B, C, H/s, W/s)`` and ``rois (N, 5)`` → box deltas ``(N, 4)``.

    Each box is enlarged ``context`` times about its centre (so that the features of a box too
    small still show the object's edges) and RoIAligned into ``bins × bins``; a two-layer MLP
    maps the bins to ``(dx, dy, dw, dh)``, weighted as Fast R-CNN's (:data:`BOX_DELTA_WEIGHTS`).
    The last layer starts at zero: an untrained refiner leaves every box as it is.

    Args:
        in_channels: channels C of the features.
        stride: pixels per feature cell ``s``.
        bins: bins per side.
        context: box enlargement factor (≥ 1).
        hidden: width of the MLP's hidden layer.
    """

    def __init__(self, in_channels: int, stride: int, bins: int = 4, context: float = 2.0, hidden: int = 256) -> None:
        super().__init__()
        _check_roi_options(bins, context)
        self.stride = stride
        self.bins = bins
        self.context = context
        self.regressor = nn.Sequential(nn.Linear(in_channels * bins * bins, hidden), nn.ReLU(), nn.Linear(hidden, 4))
        nn.init.zeros_(self.regressor[-1].weight)
        nn.init.zeros_(self.regressor[-1].bias)
        self.box_coder = BoxCoder(BOX_DELTA_WEIGHTS)

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        """``features (B, C, H/s, W/s)``, ``rois (N, 5)`` → deltas ``(N, 4)`` (:meth:`move` boxes by them)."""
        return self.regressor(pool_boxes(features, rois, self.stride, self.bins, self.context).flatten(1))

    def move(self, deltas: Tensor, boxes: Tensor) -> Tensor:
        """``boxes (N, 4)`` xyxy moved by ``deltas (N, 4)``: ``(N, 4)``."""
        return self.box_coder.decode_single(deltas.float(), boxes.float())

    def deltas_between(self, boxes: Tensor, ground_truth: Tensor) -> Tensor:
        """The deltas ``(N, 4)`` that move ``boxes (N, 4)`` onto ``ground_truth (N, 4)``."""
        return self.box_coder.encode_single(ground_truth.float(), boxes.float())

    def refine(self, features: Tensor, rois: Tensor) -> Tensor:
        """The refined boxes ``(N, 4)`` of ``rois (N, 5)``."""
        return self.move(self(features, rois), rois[:, 1:])
