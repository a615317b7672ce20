import math

import pytest
import torch
from torchvision.ops import generalized_box_iou

from restaurant_action.models.losses import assign_targets, yolov3_loss
from restaurant_action.models.yolov3 import COCO_ANCHORS, YOLOv3

STRIDES = (8, 16, 32)
SQUARE_ANCHORS = torch.tensor([[s, s] for s in (10, 20, 30, 40, 50, 60, 100, 200, 300)], dtype=torch.float32)


def _assigned_set(assignment) -> set[tuple[int, ...]]:
    return set(zip(*(field.tolist() for field in assignment)))


def test_assignment_of_hand_constructed_targets():
    targets = torch.tensor([
        [0, 1, 80, 40, 120, 80],  # 40x40 centred (100, 60): wh-IoU 0.5625 / 1 / 0.64 with anchors 30, 40, 50
        [1, 0, 0.5, 407.5, 5.5, 412.5],  # 5x5: best anchor 10 (IoU 0.25) is positive anyway
        [1, 0, 95, 55, 105, 145],  # 10x90 centred (100, 100): best is 30x30 at IoU 0.2 (wh, not area)
        [0, 1, 410, 410, 422, 422],  # 12x12 centred on the border (416, 416): cell clamped into the grid
    ])
    grids = [(52, 52), (26, 26), (13, 13)]
    # (target, image, level, anchor within level, cell x, cell y)
    assert _assigned_set(assign_targets(targets, SQUARE_ANCHORS, STRIDES, grids, iou_threshold=0.5)) == {
        (0, 0, 0, 2, 12, 7), (0, 0, 1, 0, 6, 3), (0, 0, 1, 1, 6, 3),
        (1, 1, 0, 0, 0, 51),
        (2, 1, 0, 2, 12, 12),
        (3, 0, 0, 0, 51, 51),
    }
    # The default threshold (0.213) also takes the 20 and 60 anchors of the first target (IoU 0.25, 0.44).
    default = _assigned_set(assign_targets(targets[:1], SQUARE_ANCHORS, STRIDES, grids))
    assert default == {(0, 0, 0, 1, 12, 7), (0, 0, 0, 2, 12, 7), (0, 0, 1, 0, 6, 3), (0, 0, 1, 1, 6, 3),
                       (0, 0, 1, 2, 6, 3)}


def _perfect_outputs(target_box: list[float], label: int, image_size: int = 128) -> tuple[list[torch.Tensor], tuple]:
    """Raw outputs (2 images, 2 classes) that predict ``target_box`` exactly at the slot of its
    only anchor (the 10x10 one, stride 8) in image 0 and nothing anywhere else."""
    outputs = [torch.full((2, 3, image_size // s, image_size // s, 7), -20.0) for s in STRIDES]
    x1, y1, x2, y2 = target_box
    cx, cy, w, h = (x1 + x2) / 2 / 8, (y1 + y2) / 2 / 8, x2 - x1, y2 - y1
    i, j = int(cx), int(cy)
    frac_x, frac_y = cx - i, cy - j
    slot = (0, 0, j, i)
    outputs[0][slot][:5] = torch.tensor([math.log(frac_x / (1 - frac_x)), math.log(frac_y / (1 - frac_y)),
                                         math.log(w / 10), math.log(h / 10), 20.0])
    outputs[0][slot][5 + label] = 20.0
    return outputs, slot


def test_perfect_prediction_has_no_loss_and_errors_show():
    box = [15.0, 30.0, 26.0, 40.0]  # 11x10, centre (20.5, 35) -> cell (2, 4) at stride 8
    targets = torch.tensor([[0, 1, *box]])
    outputs, slot = _perfect_outputs(box, label=1)
    loss, parts = yolov3_loss(outputs, targets, SQUARE_ANCHORS, STRIDES, anchor_iou_threshold=0.5)
    assert loss.shape == (2,) and set(parts) == {"box", "obj", "cls"}
    torch.testing.assert_close(loss, torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(parts["box"] + parts["obj"] + parts["cls"], loss)

    wrong_class, _ = _perfect_outputs(box, label=0)
    _, parts = yolov3_loss(wrong_class, targets, SQUARE_ANCHORS, STRIDES, anchor_iou_threshold=0.5)
    assert parts["cls"][0] > 1.0 and parts["box"][0] < 1e-5 and parts["cls"][1] == 0
    shifted = [o.clone() for o in outputs]
    shifted[0][slot][0] += 2.0
    _, parts = yolov3_loss(shifted, targets, SQUARE_ANCHORS, STRIDES, anchor_iou_threshold=0.5)
    assert parts["box"][0] > 0.01 and parts["cls"][0] < 1e-5


def test_objectness_target_is_the_detached_giou():
    box = [15.0, 30.0, 26.0, 40.0]
    targets = torch.tensor([[0, 1, *box]])
    outputs, slot = _perfect_outputs(box, label=1)
    outputs[0][slot][0] += 1.0  # the box is now off by some pixels
    centre_x = (torch.sigmoid(outputs[0][slot][0]).item() + 2) * 8
    predicted = torch.tensor([[centre_x - 5.5, 30.0, centre_x + 5.5, 40.0]])
    giou = generalized_box_iou(predicted, targets[:, 2:]).item()
    assert 0.2 < giou < 0.9
    for logit, gradient_sign in [(math.log(giou / (1 - giou)), 0), (5.0, 1), (-5.0, -1)]:
        raw = [o.clone().requires_grad_() for o in outputs]
        with torch.no_grad():
            raw[0][slot + (4,)] = logit
        loss, _ = yolov3_loss(raw, targets, SQUARE_ANCHORS, STRIDES, anchor_iou_threshold=0.5)
        loss.sum().backward()
        grad = raw[0].grad[slot + (4,)].item()
        if gradient_sign == 0:
            assert abs(grad) < 1e-6
        else:
            assert grad * gradient_sign > 1e-4


def test_loss_of_a_frame_depends_on_that_frame_only():
    torch.manual_seed(0)
    outputs = [torch.randn(3, 3, 128 // s, 128 // s, 9) for s in STRIDES]
    targets = torch.tensor([[0, 1, 10, 10, 50, 60], [2, 3, 30, 40, 120, 100], [2, 0, 60, 60, 70, 90.0]])
    anchors = torch.tensor(COCO_ANCHORS, dtype=torch.float32)
    batch_loss, batch_parts = yolov3_loss(outputs, targets, anchors, STRIDES)
    for frame in range(3):
        mine = targets[targets[:, 0] == frame].clone()
        mine[:, 0] = 0
        loss, parts = yolov3_loss([o[frame:frame + 1] for o in outputs], mine, anchors, STRIDES)
        torch.testing.assert_close(loss[0], batch_loss[frame])
        for name in parts:
            torch.testing.assert_close(parts[name][0], batch_parts[name][frame])
    assert batch_parts["box"][1] == 0 and batch_parts["cls"][1] == 0 and batch_parts["obj"][1] > 0


def test_gains_and_balance():
    torch.manual_seed(1)
    outputs = [torch.randn(2, 3, 64 // s, 64 // s, 7) for s in STRIDES]
    targets = torch.tensor([[0, 1, 10, 10, 40, 50], [1, 0, 5, 5, 60, 60.0]])
    anchors = torch.tensor(COCO_ANCHORS, dtype=torch.float32)
    _, base = yolov3_loss(outputs, targets, anchors, STRIDES)
    _, scaled = yolov3_loss(outputs, targets, anchors, STRIDES, box_gain=0.1, obj_gain=3.0, cls_gain=0.25,
                            obj_balance=(8.0, 2.0, 0.8))
    torch.testing.assert_close(scaled["box"], 2 * base["box"])
    torch.testing.assert_close(scaled["obj"], 6 * base["obj"])
    torch.testing.assert_close(scaled["cls"], 0.5 * base["cls"])


@pytest.mark.parametrize("row, match", [
    ([0, 2, 10, 10, 20, 20], "class"),
    ([2, 0, 10, 10, 20, 20], "image_index"),
    ([0, 0, 20, 10, 10, 20], "x2 > x1"),
    ([0, 0.5, 10, 10, 20, 20], "integers"),
])
def test_invalid_targets_are_refused(row, match):
    outputs = [torch.zeros(2, 3, 64 // s, 64 // s, 7) for s in STRIDES]
    with pytest.raises(ValueError, match=match):
        yolov3_loss(outputs, torch.tensor([row], dtype=torch.float32), SQUARE_ANCHORS, STRIDES)


def test_mismatched_anchors_or_strides_are_refused():
    outputs = [torch.zeros(2, 3, 64 // s, 64 // s, 7) for s in STRIDES]
    with pytest.raises(ValueError, match="anchors"):
        yolov3_loss(outputs, torch.zeros(0, 6), SQUARE_ANCHORS[:6], STRIDES)
    with pytest.raises(ValueError, match="strides"):
        yolov3_loss(outputs, torch.zeros(0, 6), SQUARE_ANCHORS, STRIDES[:2])


def test_no_targets_trains_objectness_only():
    outputs = [torch.zeros(2, 3, 64 // s, 64 // s, 7, requires_grad=True) for s in STRIDES]
    loss, parts = yolov3_loss(outputs, torch.zeros(0, 6), SQUARE_ANCHORS, STRIDES)
    torch.testing.assert_close(parts["obj"], torch.full((2,), (4.0 + 1.0 + 0.4) * math.log(2)))
    assert parts["box"].eq(0).all() and parts["cls"].eq(0).all()
    loss.mean().backward()
    assert all(o.grad is not None and torch.isfinite(o.grad).all() for o in outputs)


def test_tiny_yolov3_overfits_one_batch():
    torch.manual_seed(0)
    model = YOLOv3(3, COCO_ANCHORS, width=0.125, depth=0.34)
    images = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 0, 8, 10, 30, 40], [0, 2, 35, 20, 60, 44], [1, 1, 16, 16, 48, 56.0]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        loss, parts = yolov3_loss(model(images), targets, model.anchors, model.strides)
        optimizer.zero_grad()
        loss.mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        history.append((loss.mean().item(), {k: v.mean().item() for k, v in parts.items()}))
    first, last = history[0], history[-1]
    assert last[0] < 0.3 * first[0], history
    assert all(last[1][k] < first[1][k] for k in ("box", "obj", "cls")), history
