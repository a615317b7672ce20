"""Decoding of YOLO-style raw predictions (YOLOv3 heads and the YOLOv2 region head) and class-aware NMS.

The raw layout at one scale is ``(B, A, H, W, 5 + C)`` holding ``(tx, ty, tw, th,
objectness, class logits…)``; a box is ``x = (σ(tx) + cell_x) · stride``, ``w = anchor_w ·
exp(tw)`` (YOLOv2/v3), anchors in input pixels. Detections come out per image as
``dict(boxes (K, 4) xyxy pixels, scores (K,), labels (K,))``, the format of torchmetrics'
detection metrics.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

# exp(tw) is clamped as torchvision's box coder does, so a wild logit cannot overflow.
MAX_LOG_SCALE = math.log(1000.0 / 16)


def make_grid(height: int, width: int, device: torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """Cell indices ``(H, W, 2)``: ``grid[j, i] == (i, j)`` (x, y)."""
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([x, y], dim=-1)


def decode_boxes(deltas: Tensor, cell_xy: Tensor, anchor_wh: Tensor, stride: float | Tensor) -> Tensor:
    """Raw box outputs to boxes in pixels.

    Args:
        deltas: ``(..., 4)`` raw ``(tx, ty, tw, th)``.
        cell_xy: ``(..., 2)`` grid cell ``(i, j)`` of each prediction, broadcastable to ``deltas``.
        anchor_wh: ``(..., 2)`` anchor (width, height) in pixels, broadcastable.
        stride: pixels per cell, a number or a tensor broadcastable to ``(..., 1)``.

    Returns:
        ``(..., 4)`` boxes ``(x1, y1, x2, y2)`` in input pixels.
    """
    centre = (deltas[..., :2].sigmoid() + cell_xy) * stride
    size = deltas[..., 2:4].clamp(max=MAX_LOG_SCALE).exp() * anchor_wh
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def decode_outputs(outputs: Sequence[Tensor], anchors: Tensor,
                   strides: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """Decode every scale and concatenate.

    Args:
        outputs: per scale ``(B, A, H_k, W_k, 5 + C)`` raw predictions.
        anchors: ``(len(outputs)·A, 2)`` anchors in pixels; ``anchors[k·A:(k+1)·A]`` belong to
            ``outputs[k]``.
        strides: per scale, pixels per cell.

    Returns:
        ``boxes (B, P, 4)`` xyxy pixels, ``objectness (B, P)`` and ``class_probs (B, P, C)``
        (sigmoids), with ``P = Σ_k A·H_k·W_k`` in the order scale, anchor, row, column.
    """
    if len(outputs) != len(strides):
        raise ValueError(f"{len(outputs)} outputs but {len(strides)} strides")
    boxes, objectness, class_probs = [], [], []
    for level, (out, stride) in enumerate(zip(outputs, strides)):
        batch, num_anchors, height, width, channels = out.shape
        if anchors.shape[0] != len(outputs) * num_anchors:
            raise ValueError(f"{anchors.shape[0]} anchors for {len(outputs)} scales of {num_anchors} anchors")
        out = out.float()
        grid = make_grid(height, width, out.device)
        anchor_wh = anchors[level * num_anchors:(level + 1) * num_anchors].to(out.device).view(num_anchors, 1, 1, 2)
        boxes.append(decode_boxes(out[..., :4], grid, anchor_wh, stride).reshape(batch, -1, 4))
        objectness.append(out[..., 4].sigmoid().reshape(batch, -1))
        class_probs.append(out[..., 5:].sigmoid().reshape(batch, -1, channels - 5))
    return torch.cat(boxes, 1), torch.cat(objectness, 1), torch.cat(class_probs, 1)


@torch.no_grad()
def postprocess_detections(outputs: Sequence[Tensor], anchors: Tensor, strides: Sequence[int], *,
                           score_threshold: float = 0.005, iou_threshold: float = 0.45,
                           max_detections: int = 300, pre_nms_top_k: int = 10_000,
                           multi_label: bool = True) -> list[dict[str, Tensor]]:
    """Raw YOLO outputs to final detections per image: :func:`decode_outputs`, then
    :func:`select_detections` on the input image (its size is ``H_0 · strides[0]``).

    Args:
        outputs, anchors, strides: as for :func:`decode_outputs`.
        score_threshold, iou_threshold, max_detections, pre_nms_top_k, multi_label: as for
            :func:`select_detections`.

    Returns:
        one dict per image: ``boxes (K, 4)`` float xyxy pixels, ``scores (K,)`` descending,
        ``labels (K,)`` int64 class ids.
    """
    image_size = (outputs[0].shape[2] * strides[0], outputs[0].shape[3] * strides[0])
    return select_detections(*decode_outputs(outputs, anchors, strides), image_size,
                             score_threshold=score_threshold, iou_threshold=iou_threshold,
                             max_detections=max_detections, pre_nms_top_k=pre_nms_top_k, multi_label=multi_label)


@torch.no_grad()
def select_detections(boxes: Tensor, objectness: Tensor, class_probs: Tensor, image_size: tuple[int, int], *,
                      score_threshold: float = 0.005, iou_threshold: float = 0.45, max_detections: int = 300,
                      pre_nms_top_k: int = 10_000, multi_label: bool = True) -> list[dict[str, Tensor]]:
    """Decoded predictions to final detections per image.

    The score of a (box, class) pair is ``objectness · class probability``. Boxes are clipped to
    the image, the ``pre_nms_top_k`` best pairs per image above ``score_threshold`` go through
    class-aware NMS (one ``batched_nms`` call for the whole batch) and the ``max_detections``
    best survivors are kept.

    Args:
        boxes: ``(B, P, 4)`` xyxy pixels.
        objectness: ``(B, P)``.
        class_probs: ``(B, P, C)``.
        image_size: ``(height, width)`` of the input image, pixels.
        score_threshold: minimum score (darknet evaluates mAP at 0.005; drawing wants ~0.25).
        iou_threshold: NMS IoU threshold, per class.
        max_detections: detections kept per image.
        pre_nms_top_k: candidate pairs per image entering NMS.
        multi_label: every class above the threshold makes a detection (darknet's rule), else
            only the best class of each box.

    Returns:
        one dict per image: ``boxes (K, 4)`` float xyxy pixels, ``scores (K,)`` descending,
        ``labels (K,)`` int64 class ids.
    """
    batch, _, num_classes = class_probs.shape
    boxes = clip_boxes_to_image(boxes.float(), image_size)

    scores = objectness.float().unsqueeze(-1) * class_probs.float()
    if multi_label:
        scores = scores.reshape(batch, -1)
    else:
        scores, labels = scores.max(dim=-1)
    scores, flat_index = scores.topk(min(pre_nms_top_k, scores.shape[1]), dim=1)
    if multi_label:
        box_index, labels = flat_index // num_classes, flat_index % num_classes
    else:
        box_index, labels = flat_index, labels.gather(1, flat_index)
    image_index = torch.arange(batch, device=boxes.device).unsqueeze(1).expand_as(box_index)

    keep = scores > score_threshold
    image_index, box_index, labels, scores = image_index[keep], box_index[keep], labels[keep], scores[keep]
    candidates = boxes[image_index, box_index]
    kept = batched_nms(candidates, scores, image_index * num_classes + labels, iou_threshold)

    detections = []
    for image in range(batch):
        mine = kept[image_index[kept] == image][:max_detections]
        detections.append({"boxes": candidates[mine], "scores": scores[mine], "labels": labels[mine]})
    return detections


def decode_region(output: Tensor, anchors: Tensor, stride: int) -> tuple[Tensor, Tensor, Tensor]:
    """Decode a YOLOv2 region head (YOWO): boxes as :func:`decode_boxes`, classes by softmax.

    Args:
        output: ``(B, A, H, W, 5 + C)`` raw predictions.
        anchors: ``(A, 2)`` pixels.
        stride: pixels per cell.

    Returns:
        ``boxes (B, P, 4)`` xyxy pixels, ``objectness (B, P)`` (sigmoid) and ``class_probs
        (B, P, C)`` (softmax), ``P = A·H·W`` in the order anchor, row, column.
    """
    boxes, objectness, _ = decode_outputs([output], anchors, [stride])
    class_probs = output[..., 5:].float().softmax(dim=-1).reshape(output.shape[0], -1, output.shape[-1] - 5)
    return boxes, objectness, class_probs


@torch.no_grad()
def postprocess_region(output: Tensor, anchors: Tensor, stride: int, *, score_threshold: float = 0.005,
                       iou_threshold: float = 0.45, max_detections: int = 300, pre_nms_top_k: int = 10_000,
                       multi_label: bool = True) -> list[dict[str, Tensor]]:
    """Raw region-head outputs (YOWO) to final detections per image: :func:`decode_region`, then
    :func:`select_detections`; the score is ``σ(objectness) · softmax(class logits)``.

    Args:
        output: ``(B, A, H, W, 5 + C)`` raw predictions.
        anchors: ``(A, 2)`` pixels.
        stride: pixels per cell (32 for YOWO).
        score_threshold, iou_threshold, max_detections, pre_nms_top_k, multi_label: as for
            :func:`select_detections`.

    Returns:
        one dict per image: ``boxes (K, 4)`` float xyxy pixels, ``scores (K,)`` descending,
        ``labels (K,)`` int64 class ids.
    """
    image_size = (output.shape[2] * stride, output.shape[3] * stride)
    return select_detections(*decode_region(output, anchors, stride), image_size,
                             score_threshold=score_threshold, iou_threshold=iou_threshold,
                             max_detections=max_detections, pre_nms_top_k=pre_nms_top_k, multi_label=multi_label)
