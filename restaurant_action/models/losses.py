"""YOLOv3 loss and YOLOv2 (YOWO) region loss, computed per frame so that a sequence model can mask
padded frames.

Targets are one tensor ``(M, 6)``: ``[image_index, class, x1, y1, x2, y2]`` with the box in
input pixels (the coordinates the network sees, after resizing).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou, generalized_box_iou_loss

from restaurant_action.models.postprocess import decode_boxes, make_grid

# wh-IoU above which an anchor also learns a box (the best anchor always does). 0.213 is the
# iou_thresh of darknet's yolov4.cfg, the same multi-anchor rule: more positives, and faster
# convergence, than the best anchor alone (YOLOv3's rule); an anchor twice the box's width and
# height (IoU 0.25) still learns it, one 2.5x off (IoU 0.16) does not.
ANCHOR_IOU_THRESHOLD = 0.213


class AnchorAssignment(NamedTuple):
    """Positive (target, anchor, cell) triples; every field is ``(P,)`` int64.

    Attributes:
        target_index: row of the target in ``targets``.
        image_index: its image in the batch.
        level: scale (index into ``outputs`` and ``strides``).
        anchor: anchor within the scale (0..A-1).
        cell_x: grid column holding the box centre at that scale.
        cell_y: grid row.
    """

    target_index: Tensor
    image_index: Tensor
    level: Tensor
    anchor: Tensor
    cell_x: Tensor
    cell_y: Tensor


def _check_targets(targets: Tensor, batch_size: int, num_classes: int) -> None:
    if targets.ndim != 2 or targets.shape[1] != 6:
        raise ValueError(f"targets must be (M, 6) [image_index, class, x1, y1, x2, y2], got {tuple(targets.shape)}")
    if targets.shape[0] == 0:
        return
    image_index, label = targets[:, 0], targets[:, 1]
    bad = ((image_index < 0) | (image_index >= batch_size) | (image_index != image_index.round())
           | (label < 0) | (label >= num_classes) | (label != label.round())
           | (targets[:, 4] <= targets[:, 2]) | (targets[:, 5] <= targets[:, 3]) | ~targets.isfinite().all(1))
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"target row {row} {targets[row].tolist()} is invalid: need 0 <= image_index < {batch_size}, "
                         f"0 <= class < {num_classes} (integers), x2 > x1, y2 > y1, all finite")


def assign_targets(targets: Tensor, anchors: Tensor, strides: Sequence[int], grid_sizes: Sequence[tuple[int, int]],
                   iou_threshold: float = ANCHOR_IOU_THRESHOLD) -> AnchorAssignment:
    """Match targets to anchors of all scales by the IoU of centred (width, height) boxes.

    A target is positive for every anchor with wh-IoU above ``iou_threshold`` and always for
    its best anchor, at the cell holding its centre in that anchor's scale.

    Args:
        targets: ``(M, 6)`` ``[image_index, class, x1, y1, x2, y2]`` pixels.
        anchors: ``(L·A, 2)`` pixels; ``anchors[k·A:(k+1)·A]`` belong to scale k.
        strides: ``(L,)`` pixels per cell.
        grid_sizes: ``(L,)`` ``(H_k, W_k)`` cells.
        iou_threshold: see :data:`ANCHOR_IOU_THRESHOLD`.
    """
    num_anchors = anchors.shape[0] // len(strides)
    anchors = anchors.to(targets)
    wh = targets[:, 4:6] - targets[:, 2:4]
    iou = box_iou(torch.cat([-wh / 2, wh / 2], 1), torch.cat([-anchors / 2, anchors / 2], 1))
    positive = iou > iou_threshold
    positive[torch.arange(len(targets), device=targets.device), iou.argmax(1)] = True
    target_index, anchor_index = positive.nonzero(as_tuple=True)
    level = anchor_index // num_anchors

    stride = torch.as_tensor(strides, dtype=targets.dtype, device=targets.device)[level]
    grid = torch.as_tensor(grid_sizes, device=targets.device)[level]
    centre = (targets[target_index, 2:4] + targets[target_index, 4:6]) / 2
    cell = (centre / stride.unsqueeze(1)).floor().long()
    cell_x = torch.minimum(cell[:, 0].clamp(min=0), grid[:, 1] - 1)
    cell_y = torch.minimum(cell[:, 1].clamp(min=0), grid[:, 0] - 1)
    return AnchorAssignment(target_index, targets[target_index, 0].long(), level, anchor_index % num_anchors,
                            cell_x, cell_y)


def yolov3_loss(outputs: Sequence[Tensor], targets: Tensor, anchors: Tensor, strides: Sequence[int], *,
                anchor_iou_threshold: float = ANCHOR_IOU_THRESHOLD, box_gain: float = 0.05,
                obj_gain: float = 1.0, cls_gain: float = 0.5,
                obj_balance: Sequence[float] = (4.0, 1.0, 0.4)) -> tuple[Tensor, dict[str, Tensor]]:
    """YOLOv3 loss of each frame.

    - box: ``1 − GIoU`` between the decoded prediction and the target, mean over the frame's
      positives;
    - obj: BCE of the objectness logits of every cell and anchor, target the prediction's GIoU
      with its target (detached, clamped at 0; the best when several targets share a slot) at
      positives and 0 elsewhere; mean per scale, weighted by ``obj_balance`` (small strides
      have more cells, each less informative: YOLOv5's 4, 1, 0.4);
    - cls: BCE of the class logits against one-hot, mean over the frame's positives and classes.

    Gains default to YOLOv5's (box 0.05, obj 1.0, cls 0.5). A frame without targets has box and
    cls 0. Each frame's loss depends on that frame only.

    Args:
        outputs: per scale ``(B, A, H_k, W_k, 5 + C)`` raw predictions (see :class:`YOLOv3`).
        targets: ``(M, 6)`` ``[image_index, class, x1, y1, x2, y2]``, boxes in input pixels.
        anchors: ``(L·A, 2)`` pixels, ``anchors[k·A:(k+1)·A]`` for ``outputs[k]``.
        strides: ``(L,)`` pixels per cell of each output.
        anchor_iou_threshold: see :func:`assign_targets`.
        box_gain, obj_gain, cls_gain: weights of the components.
        obj_balance: ``(L,)`` weight of each scale's objectness loss.

    Returns:
        ``loss_per_frame (B,)`` and ``{"box", "obj", "cls"}``, each ``(B,)`` after its gain,
        summing to ``loss_per_frame``. The batch loss is ``loss_per_frame.mean()``, or a mean
        over the valid frames.
    """
    if not len(outputs) == len(strides) == len(obj_balance):
        raise ValueError(f"{len(outputs)} outputs, {len(strides)} strides and {len(obj_balance)} obj_balance weights")
    batch_size, num_anchors, _, _, channels = outputs[0].shape
    num_classes = channels - 5
    if anchors.shape != (len(outputs) * num_anchors, 2):
        raise ValueError(f"anchors must be ({len(outputs) * num_anchors}, 2) for {len(outputs)} scales of "
                         f"{num_anchors} anchors, got {tuple(anchors.shape)}")
    for out in outputs:
        if out.ndim != 5 or (out.shape[0], out.shape[1], out.shape[4]) != (batch_size, num_anchors, channels):
            raise ValueError(f"outputs must all be (B={batch_size}, A={num_anchors}, H, W, {channels}), "
                             f"got {[tuple(o.shape) for o in outputs]}")
    device = outputs[0].device
    targets = targets.to(device, torch.float32)
    anchors = anchors.to(device, torch.float32)
    _check_targets(targets, batch_size, num_classes)
    assigned = assign_targets(targets, anchors, strides, [tuple(o.shape[2:4]) for o in outputs],
                              anchor_iou_threshold)

    box_sum = torch.zeros(batch_size, device=device)
    cls_sum = torch.zeros(batch_size, device=device)
    obj = torch.zeros(batch_size, device=device)
    for level, (out, stride, balance) in enumerate(zip(outputs, strides, obj_balance)):
        out = out.float()
        here = assigned.level == level
        image, anchor = assigned.image_index[here], assigned.anchor[here]
        cell_x, cell_y = assigned.cell_x[here], assigned.cell_y[here]
        matched = targets[assigned.target_index[here]]
        pred = out[image, anchor, cell_y, cell_x]  # (P_k, 5 + C)

        pred_boxes = decode_boxes(pred[:, :4], torch.stack([cell_x, cell_y], 1),
                                  anchors[level * num_anchors + anchor], stride)
        giou_loss = generalized_box_iou_loss(pred_boxes, matched[:, 2:6], reduction="none")
        box_sum.index_add_(0, image, giou_loss)

        obj_target = torch.zeros(out.shape[:4], device=device)
        slot = ((image * num_anchors + anchor) * out.shape[2] + cell_y) * out.shape[3] + cell_x
        obj_target.view(-1).scatter_reduce_(0, slot, (1 - giou_loss).detach().clamp(min=0), reduce="amax")
        obj_bce = F.binary_cross_entropy_with_logits(out[..., 4], obj_target, reduction="none")
        obj = obj + balance * obj_bce.mean(dim=(1, 2, 3))

        one_hot = F.one_hot(matched[:, 1].long(), num_classes).to(pred)
        cls_bce = F.binary_cross_entropy_with_logits(pred[:, 5:], one_hot, reduction="none").mean(dim=1)
        cls_sum.index_add_(0, image, cls_bce)

    positives = torch.zeros(batch_size, device=device).index_add_(
        0, assigned.image_index, torch.ones_like(assigned.image_index, dtype=torch.float32)).clamp(min=1)
    components = {"box": box_gain * box_sum / positives, "obj": obj_gain * obj, "cls": cls_gain * cls_sum / positives}
    return components["box"] + components["obj"] + components["cls"], components


# --------------------------------------------------------------------------- YOLOv2 / YOWO region loss
def assign_region_targets(targets: Tensor, anchors: Tensor, stride: int,
                          grid_size: tuple[int, int]) -> AnchorAssignment:
    """YOLOv2's assignment: each target goes to its best anchor by centred (width, height) IoU,
    at the cell holding its centre. When several targets of an image fall on the same anchor
    and cell, the last (in row order) keeps it, as in YOWO's ``build_targets``.

    Args:
        targets: ``(M, 6)`` ``[image_index, class, x1, y1, x2, y2]`` pixels.
        anchors: ``(A, 2)`` pixels.
        stride: pixels per cell.
        grid_size: ``(H, W)`` cells.

    Returns:
        an :class:`AnchorAssignment` with ``level`` all 0, at most one target per slot.
    """
    # An IoU threshold no anchor exceeds leaves only each target's best anchor.
    assigned = assign_targets(targets, anchors, [stride], [grid_size], iou_threshold=math.inf)
    height, width = grid_size
    slot = ((assigned.image_index * anchors.shape[0] + assigned.anchor) * height + assigned.cell_y) * width \
        + assigned.cell_x
    last = torch.full((int(slot.max()) + 1 if len(slot) else 0,), -1, dtype=torch.long, device=targets.device)
    last.scatter_reduce_(0, slot, assigned.target_index, reduce="amax")
    keep = last[slot] == assigned.target_index
    return AnchorAssignment(*(field[keep] for field in assigned))


def region_loss(output: Tensor, targets: Tensor, anchors: Tensor, stride: int, *, coord_scale: float = 1.0,
                object_scale: float = 5.0, noobject_scale: float = 1.0, class_scale: float = 1.0,
                ignore_threshold: float = 0.6, focal_gamma: float = 2.0) -> tuple[Tensor, dict[str, Tensor]]:
    """YOLOv2 region loss as YOWO computes it (``core/region_loss.py``), per frame.

    With the positives of :func:`assign_region_targets` (one per target):

    - box: ``Smooth-L1`` of ``(σ(tx), σ(ty), tw, th)`` against the centre's offset in its cell
      and ``log(box size / anchor size)``, summed over the four, halved, times ``coord_scale``;
    - obj: at positives, ``object_scale · (σ(objectness) − IoU)² / 2``, where IoU is that of the
      decoded prediction with its target (detached);
    - noobj: everywhere else, ``noobject_scale · σ(objectness)² / 2``, except predictions whose
      best IoU with a target of their frame exceeds ``ignore_threshold`` (not penalised);
    - cls: at positives, focal loss ``−(1 − p)^γ log p`` of the softmax probability ``p`` of the
      target class (``focal_gamma = 0`` is cross-entropy), times ``class_scale``.

    Sums over the frame (YOWO sums over the batch: its loss is ``loss_per_frame.sum()``).
    Defaults are YOWO's ucf24/jhmdb settings (object 5, no-object 1, class 1, coord 1, ignore
    0.6, focal γ 2). Each frame's loss depends on that frame only.

    Args:
        output: ``(B, A, H, W, 5 + C)`` raw predictions (see :class:`~restaurant_action.models.yowo.YOWO`).
        targets: ``(M, 6)`` ``[image_index, class, x1, y1, x2, y2]``, boxes in input pixels.
        anchors: ``(A, 2)`` pixels.
        stride: pixels per cell of ``output``.

    Returns:
        ``loss_per_frame (B,)`` and ``{"box", "obj", "noobj", "cls"}``, each ``(B,)`` with its
        scale applied, summing to ``loss_per_frame``.
    """
    if output.ndim != 5 or output.shape[4] < 6:
        raise ValueError(f"output must be (B, A, H, W, 5 + C) with C >= 1, got {tuple(output.shape)}")
    batch_size, num_anchors, height, width, channels = output.shape
    if anchors.shape != (num_anchors, 2):
        raise ValueError(f"anchors must be ({num_anchors}, 2) for an output of {num_anchors} anchors, "
                         f"got {tuple(anchors.shape)}")
    if focal_gamma < 0:
        raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
    device = output.device
    targets = targets.to(device, torch.float32)
    anchors = anchors.to(device, torch.float32)
    _check_targets(targets, batch_size, channels - 5)
    out = output.float()

    with torch.no_grad():
        pred_boxes = decode_boxes(out[..., :4], make_grid(height, width, device), anchors.view(num_anchors, 1, 1, 2),
                                  stride)
        best_iou = torch.zeros(batch_size * num_anchors * height * width, device=device)
        if len(targets):
            iou = box_iou(pred_boxes.reshape(-1, 4), targets[:, 2:6])
            frame = torch.arange(batch_size, device=device).repeat_interleave(num_anchors * height * width)
            best_iou = iou.where(frame.unsqueeze(1) == targets[:, 0].long().unsqueeze(0), 0).amax(dim=1)
        noobj_weight = noobject_scale * (best_iou.view(out.shape[:4]) <= ignore_threshold).float()

    assigned = assign_region_targets(targets, anchors, stride, (height, width))
    image, anchor, cell_x, cell_y = assigned.image_index, assigned.anchor, assigned.cell_x, assigned.cell_y
    matched = targets[assigned.target_index]
    pred = out[image, anchor, cell_y, cell_x]  # (P, 5 + C)
    noobj_weight[image, anchor, cell_y, cell_x] = 0

    centre = (matched[:, 2:4] + matched[:, 4:6]) / 2
    box_target = torch.cat([centre / stride - torch.stack([cell_x, cell_y], 1),
                            torch.log((matched[:, 4:6] - matched[:, 2:4]) / anchors[anchor])], dim=1)
    box_pred = torch.cat([pred[:, :2].sigmoid(), pred[:, 2:4]], dim=1)
    box = F.smooth_l1_loss(box_pred, box_target, reduction="none").sum(dim=1) / 2

    with torch.no_grad():
        iou_target = box_iou(pred_boxes[image, anchor, cell_y, cell_x], matched[:, 2:6]).diagonal()
    obj = (pred[:, 4].sigmoid() - iou_target).square() / 2
    noobj = (noobj_weight * out[..., 4].sigmoid().square()).sum(dim=(1, 2, 3)) / 2

    log_p = pred[:, 5:].log_softmax(dim=1).gather(1, matched[:, 1].long().unsqueeze(1)).squeeze(1)
    cls = -(1 - log_p.exp()).pow(focal_gamma) * log_p

    def per_frame(values: Tensor) -> Tensor:
        return torch.zeros(batch_size, device=device).index_add_(0, image, values)

    components = {"box": coord_scale * per_frame(box), "obj": object_scale * per_frame(obj),
                  "noobj": noobj, "cls": class_scale * per_frame(cls)}
    return components["box"] + components["obj"] + components["noobj"] + components["cls"], components
