import pytest
import torch

from restaurant_action.models.roi_head import RoIActionHead, enlarge_boxes, jitter_boxes


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
        RoIActionHead(4, 3, stride=8, bins=0)
    with pytest.raises(ValueError, match=r"rois must be \(N, 5\)"):
        RoIActionHead(4, 3, stride=8)(torch.zeros(1, 4, 8, 8), torch.zeros(2, 4))
