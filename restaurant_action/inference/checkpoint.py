"""Reading a trained detector back from its Lightning checkpoint, for prediction and export.

A checkpoint of ``YOLOv3Module``, ``ConvLSTMYOLOModule`` or ``YOWOModule`` holds the weights,
the module's init arguments (``hyper_parameters``: classes, anchors, widths, clip length) and,
written by ``DetectionModule.on_save_checkpoint``, the entry ``restaurant_action``: the module's
class, the class names, and the image size and frame stride of the datamodule it was fitted on.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from restaurant_action.lightning._detection import INFERENCE_KEY, DetectionModule
from restaurant_action.lightning.recurrent_yolo import ConvLSTMYOLOModule
from restaurant_action.lightning.yolov3 import YOLOv3Module
from restaurant_action.lightning.yowo import YOWOModule

MODULE_KINDS: dict[str, type[DetectionModule]] = {
    "YOLOv3Module": YOLOv3Module,
    "ConvLSTMYOLOModule": ConvLSTMYOLOModule,
    "YOWOModule": YOWOModule,
}
# Init arguments that name files to start from: the checkpoint holds every weight, and the files
# may be absent where the checkpoint is used.
START_FILE_ARGUMENTS = ("pretrained", "yolov3_checkpoint", "pretrained_yowo", "pretrained_3d", "pretrained_2d")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for prediction; the message names the file and what is missing."""


@dataclass(frozen=True)
class ModelSpec:
    """What a predictor needs to know about a trained detector besides its weights.

    Attributes:
        kind: the LightningModule's class name (``YOLOv3Module``, ``ConvLSTMYOLOModule``, ``YOWOModule``).
        class_names: one name per class id.
        image_size: the square, letterboxed input size in pixels.
        frame_stride: frames between two frames the model saw one after the other (a clip's
            frames for YOWO, a lane's steps for ConvLSTM-YOLO; 1 for YOLOv3).
        clip_length: frames per clip (YOWO), 1 otherwise.
        score_threshold, nms_iou, max_detections: the module's detection settings.
    """

    kind: str
    class_names: tuple[str, ...]
    image_size: int
    frame_stride: int = 1
    clip_length: int = 1
    score_threshold: float = 0.005
    nms_iou: float = 0.45
    max_detections: int = 100

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values."""
        return {**dataclasses.asdict(self), "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict`."""
        return cls(**{**values, "class_names": tuple(values["class_names"])})


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code in it can run).

    Raises:
        CheckpointError: the file is missing, truncated, not a checkpoint, or holds objects that
            a weights-only load refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: refused by a weights-only load (it holds objects other than tensors and "
                              f"plain values, which could run code): {str(error).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or another format): "
                              f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


def checkpoint_spec(checkpoint: dict[str, Any], path: str | Path, image_size: int | None = None,
                    frame_stride: int | None = None) -> ModelSpec:
    """The :class:`ModelSpec` a checkpoint records; ``image_size``/``frame_stride`` stand in for a
    checkpoint saved before they were recorded (or override them).

    Raises:
        CheckpointError: naming what the checkpoint lacks (model kind, hyperparameters, image
            size) and how to supply it.
    """
    recorded = checkpoint.get(INFERENCE_KEY)
    if recorded is None:
        raise CheckpointError(f"{path}: the checkpoint does not say which model it holds (no {INFERENCE_KEY!r} entry: "
                              "saved by an older version of the library); load it with its LightningModule's "
                              "load_from_checkpoint and save it again after trainer.fit, or re-train")
    kind = recorded.get("kind")
    if kind not in MODULE_KINDS:
        raise CheckpointError(f"{path}: unknown model kind {kind!r}; this library predicts with {', '.join(MODULE_KINDS)}")
    hparams = checkpoint.get("hyper_parameters")
    if not hparams:
        raise CheckpointError(f"{path}: the checkpoint holds no hyper_parameters, so the {kind} cannot be rebuilt")
    size = image_size if image_size is not None else recorded.get("image_size")
    if size is None:
        raise CheckpointError(f"{path}: the checkpoint does not record the image size the model was trained at "
                              "(it was not fitted through a datamodule); pass image_size=")
    stride = frame_stride if frame_stride is not None else recorded.get("frame_stride", 1)
    return ModelSpec(
        kind=kind, class_names=tuple(recorded["class_names"]), image_size=int(size), frame_stride=int(stride),
        clip_length=int(hparams.get("clip_length", 1)) if kind == "YOWOModule" else 1,
        score_threshold=float(hparams.get("score_threshold", 0.005)), nms_iou=float(hparams.get("nms_iou", 0.45)),
        max_detections=int(hparams.get("max_detections", 100)),
    )


def load_module(checkpoint: dict[str, Any], spec: ModelSpec, path: str | Path) -> DetectionModule:
    """Rebuild the checkpoint's LightningModule (start files left out) with its weights, in eval mode.

    Raises:
        CheckpointError: the weights do not fit the rebuilt module (naming the first key).
    """
    hparams = {key: value for key, value in checkpoint["hyper_parameters"].items() if key not in START_FILE_ARGUMENTS}
    module = MODULE_KINDS[spec.kind](**hparams)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: the weights do not fit a {spec.kind} built from the checkpoint's own "
                              f"hyperparameters: {str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else error}") from None
    module.on_load_checkpoint(checkpoint)
    return module.eval()
