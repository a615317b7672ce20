"""restaurant_action: spatiotemporal action localization in video (YOLOv3, ConvLSTM-YOLO, YOWO)."""

from restaurant_action.data.anchors import kmeans_anchors
from restaurant_action.data.annotations import ActionAnnotations
from restaurant_action.data.datamodules import ClipDataModule, FrameDataModule, SequenceDataModule
from restaurant_action.data.synthetic import make_synthetic_dataset
from restaurant_action.data.video import open_video
from restaurant_action.errors import DatasetError, VideoDecodeError
from restaurant_action.export import export
from restaurant_action.inference.checkpoint import CheckpointError
from restaurant_action.lightning.nonfinite import NonFiniteLossError, NonFiniteLossGuard
from restaurant_action.lightning.recurrent_yolo import ConvLSTMYOLOModule
from restaurant_action.lightning.yowo import YOWOModule
from restaurant_action.lightning.yolov3 import YOLOv3Module
from restaurant_action.metrics import ClassificationAccuracy, FrameMAP, LocalizationRecall, VideoMAP
from restaurant_action.models.convlstm import ConvLSTM
from restaurant_action.predict import VideoPredictor

__version__ = "0.1.0"

__all__ = [
    "ActionAnnotations",
    "CheckpointError",
    "ClassificationAccuracy",
    "ClipDataModule",
    "ConvLSTM",
    "ConvLSTMYOLOModule",
    "DatasetError",
    "FrameDataModule",
    "FrameMAP",
    "LocalizationRecall",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "SequenceDataModule",
    "VideoDecodeError",
    "VideoMAP",
    "VideoPredictor",
    "YOLOv3Module",
    "YOWOModule",
    "export",
    "kmeans_anchors",
    "make_synthetic_dataset",
    "open_video",
]
