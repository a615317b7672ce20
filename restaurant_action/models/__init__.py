"""Networks as plain ``nn.Module``s (no Lightning), their losses and post-processing."""

from restaurant_action.models.darknet import (
    Darknet19,
    Darknet53,
    DarknetHeader,
    DarknetLayer,
    Reorg,
    load_darknet_weights,
    save_darknet_weights,
)
from restaurant_action.models.layers import ConvBNAct, ResidualBlock, fuse_conv_bn
from restaurant_action.models.losses import AnchorAssignment, assign_targets, yolov3_loss
from restaurant_action.models.postprocess import decode_boxes, decode_outputs, make_grid, postprocess_detections
from restaurant_action.models.yolov3 import COCO_ANCHORS, DetectionBlock, YOLOHead, YOLOv3

__all__ = [
    "COCO_ANCHORS",
    "AnchorAssignment",
    "ConvBNAct",
    "Darknet19",
    "Darknet53",
    "DarknetHeader",
    "DarknetLayer",
    "DetectionBlock",
    "Reorg",
    "ResidualBlock",
    "YOLOHead",
    "YOLOv3",
    "assign_targets",
    "decode_boxes",
    "decode_outputs",
    "fuse_conv_bn",
    "load_darknet_weights",
    "make_grid",
    "postprocess_detections",
    "save_darknet_weights",
    "yolov3_loss",
]
