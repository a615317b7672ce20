import pytest
import torch
from torchvision.ops import box_iou

from restaurant_action.models.roi_head import RoIActionHead, RoIBoxRefiner, enlarge_boxes, jitter_boxes


def test_enlarge_boxes_keeps_the_centre():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    torch.testing.assert_close(enlarge_boxes(boxes, 2.0), torch.tensor([[0.0, 0.0, 40.0, 80.0]]))
    torch.testing.assert_close(enlarge_boxes(boxes, 1.0), boxes)


def test_jitter_boxes_shifts_without_resizing_within_the_fraction():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]]).repeat(500, 1)
    moved = jitter_boxes(boxes, 0.1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(moved[:, 2:] - moved[:, :2], boxes[:, 2:] - boxes[:, :2])
    shift = moved[:, :2] - boxes[:, :2]
    assert (shift[:, 0].abs() <= 2.0 + 1e-5).all() and (shift[:, 1].abs() <= 4.0 + 1e-5).all()
    assert shift[:, 0].abs().max() > 1.5 and shift[:, 1].abs().max() > 3.0  # the whole range is used


def test_jitter_boxes_resizes_within_the_log_scale_about_the_shifted_centre():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]]).repeat(500, 1)
    moved = jitter_boxes(boxes, 0.0, torch.Generator().manual_seed(0), scale=0.3)
    torch.testing.assert_close((moved[:, :2] + moved[:, 2:]) / 2, torch.tensor([[20.0, 40.0]]).expand(500, 2))
    ratio = (moved[:, 2:] - moved[:, :2]) / torch.tensor([20.0, 40.0])
    assert (ratio >= torch.exp(torch.tensor(-0.3)) - 1e-5).all() and (ratio <= torch.exp(torch.tensor(0.3)) + 1e-5).all()
    assert ratio.min() < 0.8 and ratio.max() > 1.3 and not torch.allclose(ratio[:, 0], ratio[:, 1])


def test_logits_read_only_the_enlarged_box_and_keep_where_inside_it_features_are():
    torch.manual_seed(0)
    head = RoIActionHead(4, 3, stride=8, bins=2, context=2.0)
    features = torch.randn(2, 4, 8, 8)  # 64 × 64 px
    rois = torch.tensor([[1.0, 16.0, 16.0, 32.0, 32.0]])  # enlarged: 8..40 px = cells 1..5
    logits = head(features, rois)
    assert logits.shape == (1, 3)
    outside = features.clone()
    outside[1, :, 6:, :] += 5.0  # cells from 48 px on: outside the enlarged box
    outside[0] += 5.0  # another image
    torch.testing.assert_close(head(outside, rois), logits)
    inside = features.clone()
    inside[1, :, 2, 2] += 5.0
    assert not torch.allclose(head(inside, rois), logits)
    # the same feature moved from the box's top half to its bottom half changes the logits: bins keep layout
    top, bottom = torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)
    top[0, :, 1:3, 1:5], bottom[0, :, 3:5, 1:5] = 1.0, 1.0
    rois_0 = torch.tensor([[0.0, 16.0, 16.0, 32.0, 32.0]])
    assert not torch.allclose(head(top, rois_0), head(bottom, rois_0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="context must be >= 1"):
        RoIActionHead(4, 3, stride=8, context=0.5)
    with pytest.raises(ValueError, match="bins must be >= 1"):
        RoIBoxRefiner(4, stride=8, bins=0)
    with pytest.raises(ValueError, match="bins must be >= 1"):
        RoIActionHead(4, 3, stride=8, bins=0)
    with pytest.raises(ValueError, match=r"rois must be \(N, 5\)"):
        RoIActionHead(4, 3, stride=8)(torch.zeros(1, 4, 8, 8), torch.zeros(2, 4))


def test_an_untrained_refiner_leaves_boxes_as_they_are_and_its_deltas_invert():
    refiner = RoIBoxRefiner(4, stride=8, bins=2)
    rois = torch.tensor([[0.0, 8.0, 12.0, 30.0, 50.0], [1.0, 0.0, 0.0, 64.0, 40.0]])
    torch.testing.assert_close(refiner.refine(torch.randn(2, 4, 8, 8), rois), rois[:, 1:])
    truth = torch.tensor([[10.0, 10.0, 28.0, 55.0], [4.0, 2.0, 50.0, 44.0]])
    deltas = refiner.deltas_between(rois[:, 1:], truth)
    torch.testing.assert_close(refiner.move(deltas, rois[:, 1:]), truth)


def test_the_refiner_learns_to_move_jittered_boxes_onto_the_object():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    images, size = 16, 64
    corner = torch.randint(4, 30, (images, 2), generator=generator).float()
    extent = torch.randint(12, 28, (images, 2), generator=generator).float()
    truth = torch.cat([corner, corner + extent], dim=1)  # one box per image, pixels
    cells = torch.arange(size // 4).float() * 4 + 2  # stride-4 cell centres
    inside_x = (cells >= truth[:, None, 0]) & (cells <= truth[:, None, 2])
    inside_y = (cells >= truth[:, None, 1]) & (cells <= truth[:, None, 3])
    features = (inside_y[:, :, None] & inside_x[:, None, :]).float().unsqueeze(1)  # (B, 1, 16, 16)
    refiner = RoIBoxRefiner(1, stride=4, bins=6, context=2.0, hidden=64)
    optimizer = torch.optim.Adam(refiner.parameters(), lr=3e-3)
    frames = torch.arange(images).float().repeat(8)[:, None]
    for _ in range(300):
        boxes = jitter_boxes(truth.repeat(8, 1), 0.25, generator, scale=0.3)
        loss = torch.nn.functional.smooth_l1_loss(refiner(features, torch.cat([frames, boxes], dim=1)),
                                                  refiner.deltas_between(boxes, truth.repeat(8, 1)), beta=1 / 9)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    boxes = jitter_boxes(truth.repeat(8, 1), 0.25, generator, scale=0.3)
    with torch.no_grad():
        refined = refiner.refine(features, torch.cat([frames, boxes], dim=1))
    before = box_iou(boxes, truth.repeat(8, 1)).diagonal()
    after = box_iou(refined, truth.repeat(8, 1)).diagonal()
    assert after.mean() > before.mean() + 0.15, (before.mean(), after.mean())
    assert (after >= 0.5).float().mean() > (before >= 0.5).float().mean()
