"""restaurant_action: spatiotemporal action localization in video (YOLOv3, ConvLSTM-YOLO, YOWO)."""

from restaurant_action.data.anchors import kmeans_anchors
from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.datamodules import ClipDataModule, FrameDataModule
from restaurant_action.data.synthetic import make_synthetic_dataset
from restaurant_action.data.video import open_video
from restaurant_action.errors import DatasetError, VideoDecodeError

__version__ = "0.1.0"

__all__ = [
    "ActionAnnotations",
    "ClipDataModule",
    "DatasetError",
    "FrameDataModule",
    "VideoDecodeError",
    "kmeans_anchors",
    "make_synthetic_dataset",
    "open_video",
]
