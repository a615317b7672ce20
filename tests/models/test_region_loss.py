import math

import pytest
import torch
import torch.nn.functional as F

from restaurant_action.models.losses import assign_region_targets, region_loss
from restaurant_action.models.yowo import UCF24_ANCHORS, YOWO

ANCHORS = torch.tensor([[32.0, 32.0], [64.0, 96.0], [160.0, 160.0]])
STRIDE = 32


def _assigned(assignment) -> list[tuple[int, ...]]:
    return sorted(zip(*(field.tolist() for field in assignment)))


def test_assignment_best_anchor_at_the_centre_cell_last_target_wins():
    targets = torch.tensor([
        [0, 1, 10, 10, 40, 40],  # 30x30 centred (25, 25): anchor 0, cell (0, 0)
        [0, 2, 40, 20, 100, 120],  # 60x100 centred (70, 70): anchor 1, cell (2, 2)
        [0, 0, 30, 30, 190, 190],  # 160x160 centred (110, 110): anchor 2, cell (3, 3)
        [1, 0, 5, 5, 35, 35],  # image 1, same slot as row 0 but another image: kept
        [0, 2, 45, 25, 95, 115],  # 50x90 centred (70, 70): anchor 1, cell (2, 2) again -> replaces row 1
        [1, 1, 100, 100, 127.5, 128],  # centre (113.75, 114) of a 4x4 grid: cell (3, 3)
    ])
    # (target, image, level, anchor, cell x, cell y)
    assert _assigned(assign_region_targets(targets, ANCHORS, STRIDE, (4, 4))) == [
        (0, 0, 0, 0, 0, 0), (2, 0, 0, 2, 3, 3), (3, 1, 0, 0, 0, 0), (4, 0, 0, 1, 2, 2), (5, 1, 0, 0, 3, 3)]
    empty = assign_region_targets(torch.zeros(0, 6), ANCHORS, STRIDE, (4, 4))
    assert all(len(field) == 0 for field in empty)


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _smooth_l1(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def _reference(output, targets, anchors, stride, object_scale=5.0, noobject_scale=1.0, ignore=0.6, gamma=2.0):
    """YOWO's build_targets + RegionLoss, target by target and cell by cell, per frame."""
    batch, num_anchors, height, width, _ = output.shape
    parts = {k: [0.0] * batch for k in ("box", "obj", "noobj", "cls")}
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    for b in range(batch):
        mine = [t.tolist() for t in targets if int(t[0]) == b]
        weight = {}
        for a in range(num_anchors):
            for j in range(height):
                for i in range(width):
                    tx, ty, tw, th = output[b, a, j, i, :4].tolist()
                    cx, cy = (sig(tx) + i) * stride, (sig(ty) + j) * stride
                    w, h = math.exp(tw) * anchors[a][0], math.exp(th) * anchors[a][1]
                    box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                    best = max([_iou(box, t[2:]) for t in mine], default=0.0)
                    weight[a, j, i] = (0.0 if best > ignore else noobject_scale, box)
        slots = {}
        for t in mine:
            gw, gh = t[4] - t[2], t[5] - t[3]
            ious = [_iou([0, 0, gw, gh], [0, 0, aw, ah]) for aw, ah in anchors]
            a = ious.index(max(ious))
            gx, gy = (t[2] + t[4]) / 2 / stride, (t[3] + t[5]) / 2 / stride
            slots[a, min(int(gy), height - 1), min(int(gx), width - 1)] = t
        for (a, j, i), t in slots.items():
            tx, ty, tw, th, conf, *logits = output[b, a, j, i].tolist()
            gw, gh = t[4] - t[2], t[5] - t[3]
            gx, gy = (t[2] + t[4]) / 2 / stride, (t[3] + t[5]) / 2 / stride
            targets_xywh = (gx - i, gy - j, math.log(gw / anchors[a][0]), math.log(gh / anchors[a][1]))
            preds = (sig(tx), sig(ty), tw, th)
            parts["box"][b] += sum(_smooth_l1(p - q) for p, q in zip(preds, targets_xywh)) / 2
            parts["obj"][b] += object_scale * (sig(conf) - _iou(weight[a, j, i][1], t[2:])) ** 2 / 2
            probs = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
            p = float(probs[int(t[1])])
            parts["cls"][b] += -((1 - p) ** gamma) * math.log(p)
            weight[a, j, i] = (0.0, None)
        parts["noobj"][b] = sum(w * sig(float(output[b, a, j, i, 4])) ** 2 / 2 for (a, j, i), (w, _) in weight.items())
    return {k: torch.tensor(v) for k, v in parts.items()}


def _random_case(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    output = torch.randn(3, 3, 4, 4, 9, generator=generator)
    output[..., 2:4] *= 0.3
    targets = torch.tensor([
        [0, 1, 10, 10, 40, 40], [0, 3, 40, 20, 100, 120], [0, 0, 30, 30, 110, 110], [0, 2, 45, 25, 95, 115],
        [2, 3, 0, 60, 50, 128], [2, 1, 70, 70, 128, 128],
    ])
    return output, targets


@pytest.mark.parametrize("seed", [0, 1])
def test_region_loss_matches_a_loop_reference(seed):
    output, targets = _random_case(seed)
    # Make some predictions overlap their frame's targets, so that the ignore rule matters.
    output[0, 0, 1, 1, :4] = torch.tensor([0.5, 0.0, math.log(2.0), math.log(3.0)])
    loss, parts = region_loss(output, targets, ANCHORS, STRIDE)
    expected = _reference(output, targets, ANCHORS.tolist(), STRIDE)
    for key in expected:
        torch.testing.assert_close(parts[key], expected[key].float(), rtol=1e-4, atol=1e-5, msg=key)
    torch.testing.assert_close(loss, sum(expected.values()).float(), rtol=1e-4, atol=1e-5)
    assert parts["box"][1] == parts["obj"][1] == parts["cls"][1] == 0  # frame 1 has no target


def test_scales_and_cross_entropy_option():
    output, targets = _random_case(2)
    _, base = region_loss(output, targets, ANCHORS, STRIDE)
    _, scaled = region_loss(output, targets, ANCHORS, STRIDE, coord_scale=2.0, object_scale=1.0, noobject_scale=3.0,
                            class_scale=0.5, focal_gamma=0.0)
    torch.testing.assert_close(scaled["box"], 2 * base["box"])
    torch.testing.assert_close(scaled["obj"], base["obj"] / 5)
    torch.testing.assert_close(scaled["noobj"], 3 * base["noobj"])
    expected = _reference(output, targets, ANCHORS.tolist(), STRIDE, gamma=0.0)["cls"].float()
    torch.testing.assert_close(scaled["cls"], 0.5 * expected, rtol=1e-4, atol=1e-5)
    # Frames 0 and 2 have targets, frame 1 none: the focal term only shrinks the class loss.
    assert (base["cls"][[0, 2]] < expected[[0, 2]]).all() and base["cls"][1] == expected[1] == 0


def test_focal_gamma_zero_is_cross_entropy():
    output = torch.randn(1, 3, 4, 4, 10)
    targets = torch.tensor([[0, 3, 40, 20, 100, 120]])  # anchor 1, cell (2, 2)
    _, parts = region_loss(output, targets, ANCHORS, STRIDE, focal_gamma=0.0)
    expected = F.cross_entropy(output[0, 1, 2, 2, 5:].unsqueeze(0), torch.tensor([3]))
    torch.testing.assert_close(parts["cls"], expected.view(1))
    _, focal = region_loss(output, targets, ANCHORS, STRIDE, focal_gamma=2.0)
    p = torch.exp(-expected)
    torch.testing.assert_close(focal["cls"], ((1 - p) ** 2 * expected).view(1))


def test_ignore_threshold_spares_good_unassigned_predictions():
    output = torch.zeros(1, 3, 4, 4, 6)
    output[..., 4] = -10.0
    targets = torch.tensor([[0, 0, 40, 20, 100, 120]])  # 60x100 centred (70, 70): anchor 1, cell (2, 2)
    # Anchor 0 at the same cell predicts the box exactly, confidently, but is not the assigned anchor.
    output[0, 0, 2, 2, :5] = torch.tensor([math.log(3 / 13), math.log(3 / 13), math.log(60 / 32), math.log(100 / 32),
                                           4.0])
    _, spared = region_loss(output, targets, ANCHORS, STRIDE)
    _, penalised = region_loss(output, targets, ANCHORS, STRIDE, ignore_threshold=1.0)
    torch.testing.assert_close(penalised["noobj"] - spared["noobj"], (torch.sigmoid(torch.tensor(4.0)) ** 2 / 2).view(1))


def test_perfect_prediction_costs_almost_nothing():
    output = torch.zeros(1, 3, 4, 4, 6)
    output[..., 4] = -12.0
    targets = torch.tensor([[0, 0, 40, 20, 100, 120]])  # anchor 1 (64x96), centre (70, 70) in cell (2, 2)
    offset = 70 / 32 - 2
    output[0, 1, 2, 2] = torch.tensor([math.log(offset / (1 - offset))] * 2 + [math.log(60 / 64), math.log(100 / 96),
                                                                                12.0, 12.0])
    loss, parts = region_loss(output, targets, ANCHORS, STRIDE)
    assert loss.item() < 1e-4 and parts["box"].item() < 1e-9


def test_empty_targets_give_only_the_no_object_term():
    output = torch.randn(2, 3, 4, 4, 7)
    loss, parts = region_loss(output, torch.zeros(0, 6), ANCHORS, STRIDE)
    torch.testing.assert_close(loss, (torch.sigmoid(output[..., 4]) ** 2 / 2).sum(dim=(1, 2, 3)))
    assert (parts["box"] == 0).all() and (parts["cls"] == 0).all() and (parts["obj"] == 0).all()


def test_each_frame_depends_on_its_own_output_only():
    output, targets = _random_case(3)
    output.requires_grad_(True)
    loss, _ = region_loss(output, targets, ANCHORS, STRIDE)
    loss[0].backward()
    assert output.grad[0].abs().sum() > 0 and output.grad[1:].abs().sum() == 0


def test_errors():
    output = torch.randn(2, 3, 4, 4, 7)
    with pytest.raises(ValueError, match=r"target row 0 \[0.0, 2.0, .*\] is invalid"):
        region_loss(output, torch.tensor([[0, 2, 10, 10, 20, 20]]), ANCHORS, STRIDE)
    with pytest.raises(ValueError, match=r"anchors must be \(3, 2\)"):
        region_loss(output, torch.zeros(0, 6), ANCHORS[:2], STRIDE)
    with pytest.raises(ValueError, match="focal_gamma must be >= 0"):
        region_loss(output, torch.zeros(0, 6), ANCHORS, STRIDE, focal_gamma=-1.0)
    with pytest.raises(ValueError, match=r"output must be \(B, A, H, W, 5 \+ C\)"):
        region_loss(torch.randn(2, 3, 4, 4, 5), torch.zeros(0, 6), ANCHORS, STRIDE)


def test_tiny_yowo_overfits_a_batch():
    torch.manual_seed(0)
    model = YOWO(3, UCF24_ANCHORS, backbone_3d="resnet18", width_2d=0.125, width_3d=0.125, cfam_channels=32)
    clips = torch.randn(2, 3, 4, 64, 64)
    targets = torch.tensor([[0, 1, 8, 4, 40, 60], [1, 2, 20, 16, 60, 64], [1, 0, 2, 2, 20, 30]])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        loss, parts = region_loss(model(clips), targets, model.anchors, model.stride)
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
        history.append({"total": loss.mean().item()} | {k: v.mean().item() for k, v in parts.items()})
    first, last = history[0], history[-1]
    assert last["total"] < 0.3 * first["total"], history
    assert last["box"] < 0.3 * first["box"] and last["cls"] < 0.3 * first["cls"], history
