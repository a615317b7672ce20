"""ConvLSTMYOLOModule: truncated backpropagation through time over ``SequenceDataModule`` steps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from restaurant_action.data.sequences import valid_frame_targets
from restaurant_action.lightning._detection import DetectionModule, targets_per_image
from restaurant_action.lightning.yolov3 import yolo_decode, yolo_loss
from restaurant_action.models.recurrent_yolo import ConvLSTMYOLO, RecurrentState
from restaurant_action.models.yolov3 import COCO_ANCHORS, check_anchors

logger = logging.getLogger(__name__)


def read_yolov3_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], list[list[float]] | None]:
    """The ``YOLOv3`` state dict inside a ``YOLOv3Module`` checkpoint (keys ``network.*``) and
    the anchors it was trained with (``None`` when the checkpoint holds no hyperparameters)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: YOLOv3 checkpoint not found")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    weights = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
    if not weights:
        raise ValueError(f"{path}: no 'network.*' weights: not a YOLOv3Module checkpoint")
    return weights, checkpoint.get("hyper_parameters", {}).get("anchors")


class ConvLSTMYOLOModule(DetectionModule):
    """ConvLSTM-YOLO trained on ordered clips with the LSTM state carried across steps.

    Each training step is one ``SequenceDataModule`` batch (``B`` lanes × ``T`` frames): the
    state of lanes with ``reset`` is zeroed, the network runs the ``T`` frames, the loss is the
    YOLOv3 loss averaged over the valid frames, and the state is kept, detached, for the next
    step (truncated BPTT of length ``T``). Validation plays the validation clips in order with
    their own carried state.

    Args:
        num_classes: number of action classes.
        anchors: ``(9, 2)`` anchors in pixels (``dm.anchors(9)``); ``None``: the ported
            checkpoint's, else COCO's. Anchors that differ from the ported checkpoint's raise.
        width, depth: YOLOv3 multipliers (must match a ported checkpoint).
        yolov3_checkpoint: a ``YOLOv3Module`` checkpoint whose network is ported (the
            ConvLSTMs start as the identity, so the model starts as that YOLOv3).
        placement, hidden_ratio, kernel_size, num_layers, lstm_dropout, norm, temporal_difference,
            input_ratio: ``ConvLSTMYOLO`` options.
        freeze_ported_epochs: train only the ConvLSTMs for this many epochs (ported weights
            get no update and their BatchNorm statistics stay fixed).
        freeze_batchnorm: keep the YOLOv3 layers' BatchNorm in eval mode throughout (their
            running statistics fixed, batches normalised by them). ``None``: frozen when a
            ``yolov3_checkpoint`` is ported. A sequence batch is ``B`` clips' consecutive,
            near-identical frames plus grey padding frames where lanes run out of clips: its
            statistics are far from the data's, and training on them wrecks a ported
            detector's running statistics (measured in docs/recurrent.md).
        box_gain, obj_gain, cls_gain, anchor_iou_threshold: YOLOv3 loss settings.
        **kwargs: optimisation and evaluation settings of ``DetectionModule``.
    """

    def __init__(
        self,
        num_classes: int,
        anchors: Sequence[Sequence[float]] | None = None,
        width: float = 1.0,
        depth: float = 1.0,
        yolov3_checkpoint: str | None = None,
        placement: str = "head",
        hidden_ratio: float = 0.25,
        kernel_size: int = 3,
        num_layers: int = 1,
        lstm_dropout: float = 0.0,
        norm: str | None = None,
        temporal_difference: bool = True,
        input_ratio: float | None = 0.25,
        freeze_ported_epochs: int = 0,
        freeze_batchnorm: bool | None = None,
        box_gain: float = 0.05,
        obj_gain: float = 1.0,
        cls_gain: float = 0.5,
        anchor_iou_threshold: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        ported: dict[str, Tensor] | None = None
        if yolov3_checkpoint:
            # The anchors are not in the state dict: a ported model must keep its YOLOv3's.
            ported, ported_anchors = read_yolov3_checkpoint(yolov3_checkpoint)
            if anchors is None and ported_anchors is not None:
                anchors = ported_anchors
                self.hparams.anchors = anchors
            elif ported_anchors is not None and not torch.allclose(
                check_anchors(anchors if anchors is not None else COCO_ANCHORS), check_anchors(ported_anchors), atol=1e-3
            ):
                raise ValueError(
                    f"{yolov3_checkpoint}: the YOLOv3 was trained with anchors {ported_anchors}, not {anchors}; "
                    "pass anchors=None to use the checkpoint's"
                )
        self.network = ConvLSTMYOLO(
            num_classes, anchors if anchors is not None else COCO_ANCHORS, width, depth, placement, hidden_ratio,
            kernel_size, num_layers, lstm_dropout, norm, temporal_difference, input_ratio,
        )
        if ported is not None:
            self.network.load_yolov3(ported)
        self._state: dict[str, RecurrentState | None] = {"train": None, "val": None, "test": None}
        self._batchnorm_frozen = freeze_batchnorm if freeze_batchnorm is not None else bool(yolov3_checkpoint)

    def train(self, mode: bool = True) -> "ConvLSTMYOLOModule":
        """Train mode, except the YOLOv3 BatchNorms while they are frozen (``freeze_batchnorm``,
        or during ``freeze_ported_epochs``): Lightning calls ``train()`` at every epoch and after
        every validation, so the choice is made here."""
        super().train(mode)
        if mode and (self._batchnorm_frozen or self.current_epoch < self.hparams.freeze_ported_epochs):
            for module in self.network.yolo.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, frames: Tensor, state: RecurrentState | None = None) -> tuple[list[Tensor], RecurrentState]:
        """``frames (B, T, 3, H, W)`` uint8 or float → (outputs of the ``B·T`` frames per scale, state)."""
        return self.network(self.images_to_float(frames), state)

    def _run(self, batch: Mapping[str, Any], stage: str) -> list[Tensor]:
        """Run one step with the stage's carried state (reset where a clip starts), keep it detached."""
        state = self.network.reset_state(self._state[stage], batch["reset"])
        outputs, state = self(batch["frames"], state)
        self._state[stage] = self.network.detach_state(state)
        return outputs

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self._state["train"] = None
        self.train(self.training)  # the BatchNorms thaw when freeze_ported_epochs ends

    def on_after_backward(self) -> None:
        """While the ported layers are frozen, drop their gradients (the optimizer then skips them)."""
        if self.current_epoch < self.hparams.freeze_ported_epochs:
            for parameter in self.network.ported_parameters():
                parameter.grad = None

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        outputs = self._run(batch, "train")
        valid = batch["valid"].flatten()
        self.log("train/valid_frames", valid.sum().float())
        if not valid.any():
            # A step of padding only still backpropagates (a zero reaching every parameter), so
            # DDP ranks stay in step.
            loss = sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
            self.log("train/loss", loss, prog_bar=True)
            return loss
        # The loss sees the valid frames only: padding frames never enter it, not even times 0.
        keep = valid.nonzero().flatten()
        targets = valid_frame_targets(batch["targets"], batch["valid"])
        per_frame, parts = yolo_loss(self.hparams, self.network, [o[keep] for o in outputs], targets)
        loss = per_frame.mean()
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v.mean() for k, v in parts.items()})
        return loss

    # ------------------------------------------------------------------ evaluation
    def on_validation_epoch_start(self) -> None:
        self._state["val"] = None

    def on_test_epoch_start(self) -> None:
        self._state["test"] = None

    def _evaluate_step(self, batch: Mapping[str, Any], stage: str) -> None:
        outputs = self._run(batch, stage)
        valid = batch["valid"].flatten()
        if not valid.any():
            return
        keep = valid.nonzero().flatten()
        detections = self.decode([o[keep] for o in outputs])
        targets = targets_per_image(valid_frame_targets(batch["targets"], batch["valid"]), len(keep))
        (self.val_map if stage == "val" else self.test_map).update(detections, targets)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate_step(batch, "test")

    def decode(self, outputs: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """Detections per frame from raw outputs (threshold, class-aware NMS)."""
        return yolo_decode(self.hparams, self.network, outputs)

    def detect(self, batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        """Detections of every frame of a sequence step (state carried as in validation)."""
        return self.decode(self._run(batch, "test"))
