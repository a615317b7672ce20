"""Evaluation of spatiotemporal action detection (definitions in ``docs/metrics.md``).

* ``FrameMAP``: per-class frame AP (VOC all-point or COCO 101-point), precision/recall at a
  score threshold and at the best-F1 point, top-k class summaries.
* ``LocalizationRecall``, ``ClassificationAccuracy``: YOWO's frame-level measures.
* ``VideoMAP``: detections linked into tubes (``link_tubes``), matched by spatio-temporal IoU
  (``spatiotemporal_iou``) against ground-truth tracks.
"""

from restaurant_action.metrics.frame_map import FrameMAP, RankedDetections
from restaurant_action.metrics.video_map import ActionTube, VideoMAP, link_tubes, spatiotemporal_iou
from restaurant_action.metrics.yowo import ClassificationAccuracy, LocalizationRecall, best_detection_per_target

__all__ = [
    "ActionTube",
    "ClassificationAccuracy",
    "FrameMAP",
    "LocalizationRecall",
    "RankedDetections",
    "VideoMAP",
    "best_detection_per_target",
    "link_tubes",
    "spatiotemporal_iou",
]
