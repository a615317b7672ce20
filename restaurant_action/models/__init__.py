"""Networks as plain ``nn.Module``s (no Lightning), their losses and post-processing."""

from restaurant_action.models.backbones3d import BACKBONE_3D_NAMES, Backbone3D, build_backbone3d, load_kinetics_3d
from restaurant_action.models.convlstm import ConvLSTM, ConvLSTMCell, ConvLSTMCellState, ConvLSTMState
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
from restaurant_action.models.losses import (
    AnchorAssignment,
    assign_region_targets,
    assign_targets,
    region_loss,
    yolov3_loss,
)
from restaurant_action.models.postprocess import (
    decode_boxes,
    decode_outputs,
    decode_region,
    make_grid,
    postprocess_detections,
    postprocess_region,
    select_detections,
)
from restaurant_action.models.recurrent_yolo import BranchState, ConvLSTMBranch, ConvLSTMYOLO
from restaurant_action.models.roi_head import RoIActionHead, RoIBoxRefiner
from restaurant_action.models.yolov3 import COCO_ANCHORS, DetectionBlock, YOLOHead, YOLOv3
from restaurant_action.models.yowo import (
    CFAM,
    UCF24_ANCHORS,
    UCF24_ANCHORS_CELLS,
    YOWO,
    ChannelAttention,
    SpaceToDepth,
    load_yowo_checkpoint,
)

__all__ = [
    "BACKBONE_3D_NAMES",
    "CFAM",
    "COCO_ANCHORS",
    "UCF24_ANCHORS",
    "UCF24_ANCHORS_CELLS",
    "YOWO",
    "AnchorAssignment",
    "Backbone3D",
    "ChannelAttention",
    "ConvBNAct",
    "ConvLSTM",
    "ConvLSTMCell",
    "ConvLSTMCellState",
    "BranchState",
    "ConvLSTMBranch",
    "ConvLSTMState",
    "ConvLSTMYOLO",
    "Darknet19",
    "Darknet53",
    "DarknetHeader",
    "DarknetLayer",
    "DetectionBlock",
    "Reorg",
    "ResidualBlock",
    "RoIActionHead",
    "RoIBoxRefiner",
    "SpaceToDepth",
    "YOLOHead",
    "YOLOv3",
    "assign_region_targets",
    "assign_targets",
    "build_backbone3d",
    "decode_boxes",
    "decode_outputs",
    "decode_region",
    "fuse_conv_bn",
    "load_darknet_weights",
    "load_kinetics_3d",
    "load_yowo_checkpoint",
    "make_grid",
    "postprocess_detections",
    "postprocess_region",
    "select_detections",
    "region_loss",
    "save_darknet_weights",
    "yolov3_loss",
]
