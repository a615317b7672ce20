import math

import pytest
import torch

from restaurant_action.models.postprocess import decode_boxes, decode_outputs, make_grid, postprocess_detections

STRIDES = (8, 16, 32)
SQUARE_ANCHORS = torch.tensor([[s, s] for s in (10, 20, 30, 40, 50, 60, 100, 200, 300)], dtype=torch.float32)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _constructed_outputs() -> list[torch.Tensor]:
    """A 2-image, 64x64, 3-class output: five predictions in image 0, none in image 1.

    A (stride 8, anchor 1, cell (2, 3)): box [10, 18, 30, 38], class 1, score σ(3)².
    B (stride 16, anchor 0, cell (1, 1)): box [14, 14, 34, 34] (IoU 0.47 with A), class 1 at σ(3)σ(2)
      — suppressed by A — and class 2 at σ(3)σ(2.5) — kept: NMS is per class.
    D (stride 32, anchor 2, cell (1, 1)): a 300 px box clipped to [0, 0, 64, 64], class 0, σ(1)².
    E (stride 8, anchor 0, cell (6, 6)): box [47, 47, 57, 57], class 0 at σ(3)², class 1 at σ(3)σ(2).
    """
    outputs = [torch.full((2, 3, 64 // s, 64 // s, 8), -20.0) for s in STRIDES]
    for level, anchor, x, y, box, classes in [
        (0, 1, 2, 3, (0, 0, 0, 0, 3), {1: 3.0}),
        (1, 0, 1, 1, (0, 0, -math.log(2), -math.log(2), 3), {1: 2.0, 2: 2.5}),
        (2, 2, 1, 1, (0, 0, 0, 0, 1), {0: 1.0}),
        (0, 0, 6, 6, (0, 0, 0, 0, 3), {0: 3.0, 1: 2.0}),
    ]:
        outputs[level][0, anchor, y, x, :5] = torch.tensor(box)
        for label, logit in classes.items():
            outputs[level][0, anchor, y, x, 5 + label] = logit
    return outputs


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_make_grid_is_x_then_y():
    grid = make_grid(2, 3)
    assert grid.shape == (2, 3, 2)
    assert grid[1, 2].tolist() == [2.0, 1.0]


def test_decode_boxes():
    deltas = torch.tensor([[0.0, _logit(0.25), math.log(2.0), 0.0]])
    boxes = decode_boxes(deltas, torch.tensor([[3.0, 1.0]]), torch.tensor([[10.0, 20.0]]), 8)
    # centre ((0.5 + 3) * 8, (0.25 + 1) * 8) = (28, 10); size (20, 20)
    torch.testing.assert_close(boxes, torch.tensor([[18.0, 0.0, 38.0, 20.0]]))
    huge = decode_boxes(torch.tensor([0.0, 0.0, 1e4, 1e4]), torch.zeros(2), torch.ones(2), 1)
    assert torch.isfinite(huge).all()


def test_decode_outputs_order_and_values():
    boxes, objectness, class_probs = decode_outputs(_constructed_outputs(), SQUARE_ANCHORS, STRIDES)
    assert boxes.shape == (2, 3 * (64 + 16 + 4), 4) and objectness.shape == (2, 252) and class_probs.shape == (2, 252, 3)
    slot_a = 1 * 64 + 3 * 8 + 2  # scale 0, anchor 1, row 3, column 2
    torch.testing.assert_close(boxes[0, slot_a], torch.tensor([10.0, 18.0, 30.0, 38.0]))
    assert objectness[0, slot_a].item() == pytest.approx(_sig(3))
    slot_b = 3 * 64 + 0 * 16 + 1 * 4 + 1
    torch.testing.assert_close(boxes[0, slot_b], torch.tensor([14.0, 14.0, 34.0, 34.0]))
    torch.testing.assert_close(class_probs[0, slot_b], torch.tensor([_sig(-20), _sig(2), _sig(2.5)]))


def test_postprocess_detections_class_aware_nms():
    detections = postprocess_detections(_constructed_outputs(), SQUARE_ANCHORS, STRIDES)
    assert len(detections) == 2
    image0, image1 = detections
    assert image0["labels"].tolist() == [1, 0, 2, 1, 0]
    torch.testing.assert_close(image0["scores"], torch.tensor(
        [_sig(3) ** 2, _sig(3) ** 2, _sig(3) * _sig(2.5), _sig(3) * _sig(2), _sig(1) ** 2]))
    torch.testing.assert_close(image0["boxes"], torch.tensor([
        [10.0, 18.0, 30.0, 38.0], [47.0, 47.0, 57.0, 57.0], [14.0, 14.0, 34.0, 34.0], [47.0, 47.0, 57.0, 57.0],
        [0.0, 0.0, 64.0, 64.0]]))
    assert image0["labels"].dtype == torch.int64
    assert image1["boxes"].shape == (0, 4) and image1["scores"].shape == (0,) and image1["labels"].shape == (0,)


def test_postprocess_detections_options():
    outputs = _constructed_outputs()
    single = postprocess_detections(outputs, SQUARE_ANCHORS, STRIDES, multi_label=False)[0]
    assert single["labels"].tolist() == [1, 0, 2, 0]
    top2 = postprocess_detections(outputs, SQUARE_ANCHORS, STRIDES, max_detections=2)[0]
    assert top2["labels"].tolist() == [1, 0]
    confident = postprocess_detections(outputs, SQUARE_ANCHORS, STRIDES, score_threshold=0.6)[0]
    assert confident["labels"].tolist() == [1, 0, 2, 1]
    loose = postprocess_detections(outputs, SQUARE_ANCHORS, STRIDES, iou_threshold=0.5)[0]
    assert loose["labels"].tolist() == [1, 0, 2, 1, 1, 0]  # B's class 1 survives A at IoU 0.47
