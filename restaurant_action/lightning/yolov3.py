"""YOLOv3Module: the frame-level baseline, trained on ``FrameDataModule`` batches."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from restaurant_action.data.sequences import sequence_batch_as_frames
from restaurant_action.lightning._detection import DetectionModule
from restaurant_action.models.darknet import load_darknet_weights
from restaurant_action.models.losses import yolov3_loss
from restaurant_action.models.postprocess import postprocess_detections
from restaurant_action.models.yolov3 import COCO_ANCHORS, YOLOv3

logger = logging.getLogger(__name__)

DARKNET53_BACKBONE_CONVS = 52


def load_pretrained(network: torch.nn.Module, path: str | Path) -> None:
    """Load weights into ``network``: a darknet ``.weights`` file (full, or ``*.conv.74``
    backbone-only) or a checkpoint of this library (``.ckpt``/``.pt``: a Lightning checkpoint or a
    plain state dict). Tensors whose shapes differ (a head for another class count) keep their
    initialisation, and are logged.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file does not fit the network (naming the layer).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weights not found")
    if path.suffix == ".weights" or path.name.endswith(".conv.74"):
        num_layers = DARKNET53_BACKBONE_CONVS if path.name.endswith(".conv.74") else None
        load_darknet_weights(network, path, num_layers=num_layers)
        return
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    prefix = "network."
    state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    own = network.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(compatible))
    if not compatible:
        raise ValueError(f"{path}: no tensor of the checkpoint fits the network (first key {next(iter(state), None)!r})")
    if skipped:
        logger.warning("%s: %d tensors not loaded (other shape or unknown), e.g. %s", path, len(skipped), skipped[:3])
    network.load_state_dict(compatible, strict=False)


def yolo_loss(hparams: Mapping[str, Any], network: torch.nn.Module, outputs: Sequence[Tensor], targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The YOLOv3 loss with a module's loss settings: ``(B,)`` per frame and its components."""
    return yolov3_loss(
        outputs, targets, network.anchors, network.strides, anchor_iou_threshold=hparams["anchor_iou_threshold"],
        box_gain=hparams["box_gain"], obj_gain=hparams["obj_gain"], cls_gain=hparams["cls_gain"],
    )


def yolo_decode(hparams: Mapping[str, Any], network: torch.nn.Module, outputs: Sequence[Tensor]) -> list[dict[str, Tensor]]:
    """Detections per image with a module's evaluation settings (threshold, NMS IoU, max detections)."""
    return postprocess_detections(
        outputs, network.anchors, network.strides, score_threshold=hparams["score_threshold"],
        iou_threshold=hparams["nms_iou"], max_detections=hparams["max_detections"],
    )


def as_frame_batch(batch: Mapping[str, Any]) -> Mapping[str, Any]:
    """A frame batch as it is; a sequence batch (``frames`` ``(B, T, 3, S, S)``) as its valid frames."""
    return sequence_batch_as_frames(dict(batch)) if "frames" in batch and "valid" in batch else batch


class YOLOv3Module(DetectionModule):
    """YOLOv3 (Darknet-53, three scales, nine anchors) trained frame by frame.

    Batches are ``FrameDataModule`` dicts: ``images`` uint8 ``(B, 3, S, S)``, ``targets``
    ``(M, 6)`` ``[image_index, class, x1, y1, x2, y2]`` pixels. ``SequenceDataModule`` batches
    are taken too (their valid frames, as independent images), so the frame model can be
    trained and evaluated on exactly the stream a ConvLSTM-YOLO sees.

    Args:
        num_classes: number of action classes (``dm.num_classes``).
        anchors: ``(9, 2)`` anchor sizes in pixels at the training size (``dm.anchors(9)``);
            ``None`` uses yolov3.cfg's COCO anchors.
        width, depth: channel and depth multipliers (1.0 is yolov3.cfg).
        pretrained: darknet ``.weights``, ``darknet53.conv.74`` or a checkpoint to start from.
        box_gain, obj_gain, cls_gain: loss weights; ``anchor_iou_threshold``: IoU above which
            an anchor is assigned a target (the best anchor always is).
        **kwargs: optimisation and evaluation settings of ``DetectionModule`` (``lr``,
            ``optimizer``, ``ema_decay``, ``class_names``, ``class_ranking``, …).
    """

    def __init__(
        self,
        num_classes: int,
        anchors: Sequence[Sequence[float]] | None = None,
        width: float = 1.0,
        depth: float = 1.0,
        pretrained: str | None = None,
        box_gain: float = 0.05,
        obj_gain: float = 1.0,
        cls_gain: float = 0.5,
        anchor_iou_threshold: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        self.network = YOLOv3(num_classes, anchors if anchors is not None else COCO_ANCHORS, width, depth)
        if pretrained:
            load_pretrained(self.network, pretrained)

    def forward(self, images: Tensor) -> list[Tensor]:
        """Raw outputs per scale ``(B, 3, H/s, W/s, 5 + C)`` of uint8 or float images ``(B, 3, H, W)``."""
        return self.network(self.images_to_float(images))

    def loss(self, outputs: Sequence[Tensor], targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-frame YOLOv3 loss ``(B,)`` and its components; ``targets`` ``(M, 6)`` per frame."""
        return yolo_loss(self.hparams, self.network, outputs, targets)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        batch = as_frame_batch(batch)
        per_frame, parts = self.loss(self(batch["images"]), batch["targets"])
        loss = per_frame.mean()
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v.mean() for k, v in parts.items()})
        return loss

    def decode(self, outputs: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """Detections per image from raw outputs: threshold, class-aware NMS, top ``max_detections``."""
        return yolo_decode(self.hparams, self.network, outputs)

    def detect(self, batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        return self.decode(self(as_frame_batch(batch)["images"]))

    def _evaluate(self, metric: Any, batch: Mapping[str, Any]) -> None:
        frames = as_frame_batch(batch)
        if len(frames["images"]):  # a sequence step may hold padding frames only
            super()._evaluate(metric, frames)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[dict[str, Tensor]]:
        return self.detect(batch)
