"""Tests of restaurant_action/data/anchors.py: 1 − IoU k-means, anchor quality, input forms, errors."""

from __future__ import annotations

import numpy as np
import pytest

from restaurant_action.data.anchors import AnchorFit, anchor_quality, kmeans_anchors, wh_iou

NINE_SIZES = np.array(
    [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]], np.float64
)  # YOLOv3's COCO anchors: nine well-separated clusters


def _clusters(sizes: np.ndarray, per_cluster: int, spread: float, seed: int) -> np.ndarray:
    """``per_cluster`` boxes (w, h) around each size, each side scaled by a log-normal factor of ``spread``."""
    rng = np.random.default_rng(seed)
    wh = np.repeat(sizes, per_cluster, 0)
    return wh * np.exp(rng.normal(0, spread, wh.shape))


def _assert_recovered(anchors: np.ndarray, sizes: np.ndarray, tolerance: float = 0.1) -> None:
    for size in sizes:
        relative = np.abs(anchors / size - 1).max(1)
        assert relative.min() <= tolerance, (size, anchors)


@pytest.mark.parametrize(("sizes", "seed"), [(NINE_SIZES[[0, 4, 8]], 0), (NINE_SIZES, 1), (NINE_SIZES, 2)])
def test_kmeans_recovers_known_cluster_sizes(sizes, seed):
    wh = _clusters(sizes, per_cluster=80, spread=0.05, seed=seed)

    fit = kmeans_anchors(wh, len(sizes), seed=seed)

    assert isinstance(fit, AnchorFit)
    assert fit.anchors.dtype == np.float32 and fit.anchors.shape == (len(sizes), 2)
    _assert_recovered(fit.anchors, sizes)
    assert (np.diff(fit.anchors.prod(1)) > 0).all()  # ascending by area
    assert fit.mean_iou > 0.85 and fit.best_possible_recall == 1.0


def test_kmeans_with_as_many_anchors_as_sizes_finds_them_exactly():
    sizes = np.array([[4, 4], [10, 30], [40, 12]], np.float64)
    wh = np.repeat(sizes, [5, 2, 7], 0)
    fit = kmeans_anchors(wh, 3)
    np.testing.assert_allclose(fit.anchors, sizes)
    assert fit.mean_iou == pytest.approx(1.0) and fit.best_possible_recall == 1.0


def test_fit_quality_is_anchor_quality_of_its_anchors():
    wh = _clusters(NINE_SIZES, per_cluster=20, spread=0.3, seed=3)
    fit = kmeans_anchors(wh, 4, seed=3)
    mean_iou, bpr = anchor_quality(wh, fit.anchors)
    assert fit.mean_iou == pytest.approx(mean_iou, rel=1e-5) and fit.best_possible_recall == pytest.approx(bpr)
    assert 0 < fit.mean_iou < 1


def test_kmeans_is_seeded():
    wh = _clusters(NINE_SIZES, per_cluster=15, spread=0.4, seed=4)
    np.testing.assert_array_equal(kmeans_anchors(wh, 5, seed=7).anchors, kmeans_anchors(wh, 5, seed=7).anchors)


def test_more_anchors_fit_at_least_as_well():
    wh = _clusters(NINE_SIZES, per_cluster=20, spread=0.2, seed=5)
    ious = [kmeans_anchors(wh, k, seed=0).mean_iou for k in (1, 3, 9)]
    assert ious[0] < ious[1] < ious[2]


# ---------------------------------------------------------------------------------- quality by hand


def test_wh_iou_by_hand():
    iou = wh_iou(np.array([[10.0, 10.0], [20.0, 20.0]]), np.array([[20.0, 5.0], [10.0, 10.0], [40.0, 40.0]]))
    # (10,10)·(20,5): overlap 10×5 = 50 of 100 + 100 − 50; (20,20)·(40,40): 400 of 1600
    np.testing.assert_allclose(iou, [[50 / 150, 1.0, 100 / 1600], [100 / 400, 100 / 400, 400 / 1600]])


def test_anchor_quality_by_hand():
    boxes = np.array([[10, 10], [20, 20], [50, 50]], np.float64)

    mean_iou, bpr = anchor_quality(boxes, np.array([[10, 10]]))
    # best IoUs 1, 100/400, 100/2500; ratios 1, 2 and 5: the last is beyond 4×
    assert mean_iou == pytest.approx((1 + 0.25 + 0.04) / 3)
    assert bpr == pytest.approx(2 / 3)

    mean_iou, bpr = anchor_quality(boxes, np.array([[10, 10], [50, 50]]))
    # (20,20) now best matches either with 0.25 (100/400) vs 400/2500 = 0.16
    assert mean_iou == pytest.approx((1 + 0.25 + 1) / 3) and bpr == 1.0


def test_best_possible_recall_needs_both_sides_within_4x():
    anchors = np.array([[10.0, 10.0]])
    assert anchor_quality(np.array([[39.0, 10.0]]), anchors)[1] == 1.0
    assert anchor_quality(np.array([[41.0, 10.0]]), anchors)[1] == 0.0
    assert anchor_quality(np.array([[10.0, 2.4]]), anchors)[1] == 0.0  # too flat
    assert anchor_quality(np.array([[30.0, 3.0]]), anchors)[1] == 1.0  # 3× wider and 3.3× flatter


# ---------------------------------------------------------------------------------- inputs


def test_xyxy_and_wh_inputs_are_equivalent():
    rng = np.random.default_rng(6)
    wh = _clusters(NINE_SIZES[:5], per_cluster=30, spread=0.15, seed=6)
    corners = rng.uniform(0, 500, wh.shape)
    xyxy = np.concatenate([corners, corners + wh], 1)

    from_wh, from_xyxy = kmeans_anchors(wh, 5, seed=0), kmeans_anchors(xyxy, 5, seed=0)

    np.testing.assert_allclose(from_xyxy.anchors, from_wh.anchors, rtol=1e-4)
    assert from_xyxy.mean_iou == pytest.approx(from_wh.mean_iou, rel=1e-6)
    assert from_xyxy.best_possible_recall == from_wh.best_possible_recall


def test_normalised_boxes_are_scaled_by_img_size():
    wh = _clusters(NINE_SIZES[:4], per_cluster=30, spread=0.1, seed=7)
    normalised = kmeans_anchors(wh / 416, 4, img_size=416, seed=0)
    np.testing.assert_allclose(normalised.anchors, kmeans_anchors(wh, 4, seed=0).anchors, rtol=1e-4)


@pytest.mark.parametrize(
    ("boxes", "k", "fragment"),
    [
        (np.array([[10, 10], [10, 10], [20, 20]]), 3, "distinct"),
        (np.array([[10, 10]]), 2, "distinct"),
        (np.array([[10, 10], [0, 5], [20, 20]]), 2, "positive"),
        (np.array([[10, 10], [5, -1], [20, 20]]), 2, "positive"),
        (np.array([[0, 0, 10, 10], [5, 5, 5, 9], [1, 1, 3, 3]]), 2, "positive"),  # x2 == x1
    ],
)
def test_bad_input_is_rejected(boxes, k, fragment):
    with pytest.raises(ValueError, match=fragment):
        kmeans_anchors(boxes, k)
