"""What every detector module shares: optimisation schedule, EMA, gradient clipping, frame mAP."""

from __future__ import annotations

import math
import re
import zlib
from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EMAWeightAveraging
from torch import Tensor

from restaurant_action.metrics import FrameMAP

OPTIMIZERS = ("sgd", "adamw")
INFERENCE_KEY = "restaurant_action"
"""Checkpoint entry holding what prediction needs besides the weights (``DetectionModule.inference_settings``)."""


def targets_per_image(targets: Tensor, batch_size: int) -> list[dict[str, Tensor]]:
    """Split ``(M, 6)`` rows ``[image_index, class, x1, y1, x2, y2]`` into one dict per image (metric format)."""
    image_index = targets[:, 0].long()
    return [{"boxes": targets[image_index == i, 2:6], "labels": targets[image_index == i, 1].long()} for i in range(batch_size)]


def video_id(name: str) -> int:
    """A stable integer id of a video name (CRC-32): the same in every process, for the metrics' state."""
    return zlib.crc32(name.encode("utf-8"))


def frame_ids(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics' ``video_ids``/``frame_indices`` keyword arguments of a frame or clip batch.

    Args:
        batch: a batch with ``videos`` (``B`` names) and ``frames`` int64 ``(B,)``, the
            evaluated frames' indices in their videos.

    Returns:
        ``{"video_ids": [B ints], "frame_indices": (B,)}``, or ``{}`` when the batch has no
        ``videos`` or ``frames`` (then repeated frames are not recognised).
    """
    if "videos" not in batch or "frames" not in batch:
        return {}
    return {"video_ids": [video_id(name) for name in batch["videos"]], "frame_indices": batch["frames"]}


def metric_key(name: str) -> str:
    """A class name as a logger key: lower case, words joined by underscores."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


class DetectionModule(pl.LightningModule):
    """Base of the detector modules: subclasses provide ``detect`` and the training loss.

    Args:
        num_classes: number of action classes.
        class_names: class names, for per-class logging; ``class_<id>`` if ``None``.
        class_ranking: class ids by training clip count, most first (``dm.top_classes``),
            for the top-5/top-24 summaries; ``None`` ranks by validation boxes.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum, Nesterov). The losses are means over
            frames, so AdamW's default needs no tuning to the batch size, while SGD wants about
            ``0.01 × batch size`` (YOLOv5 multiplies its loss by the batch size instead).
        lr: peak learning rate.
        momentum: SGD momentum (AdamW's beta1).
        weight_decay: on weights only (not on biases or norm layers).
        warmup_fraction: fraction of all optimizer steps spent warming up linearly from 1%
            of ``lr``.
        final_lr_fraction: the cosine schedule ends at ``lr * final_lr_fraction``.
        ema_decay: decay of the exponential moving average of the weights used for
            validation and saved checkpoints; ``0`` turns EMA off.
        gradient_clip_norm: clip the gradient norm to this; ``0`` turns clipping off.
        score_threshold: minimum detection score kept for evaluation.
        nms_iou: IoU threshold of the class-aware NMS.
        max_detections: detections kept per image.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        class_ranking: Sequence[int] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        momentum: float = 0.937,
        weight_decay: float = 5e-4,
        warmup_fraction: float = 0.05,
        final_lr_fraction: float = 0.01,
        ema_decay: float = 0.0,
        gradient_clip_norm: float = 10.0,
        score_threshold: float = 0.005,
        nms_iou: float = 0.45,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        # Collects the init arguments of the subclass too (its __init__ frame is still active).
        self.save_hyperparameters()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
        self.val_map = FrameMAP(num_classes, class_ranking=class_ranking)
        self.test_map = FrameMAP(num_classes, class_ranking=class_ranking)
        self.last_metrics: dict[str, Any] = {}
        self.inference_settings: dict[str, Any] = {}

    # ------------------------------------------------------------------ to provide
    def detect(self, batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        """Detections of the batch's (key) frames: one dict per image (boxes, scores, labels)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def setup(self, stage: str) -> None:
        """Check the datamodule agrees with the model (class count) and note the image size and
        frame stride it serves, for the checkpoint (``inference_settings``)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        if hasattr(datamodule, "num_classes") and datamodule.num_classes != self.num_classes:
            raise ValueError(
                f"the model predicts {self.num_classes} classes but the datamodule's dataset "
                f"({getattr(datamodule, 'root', '?')}) has {datamodule.num_classes}; build the model with "
                "num_classes=dm.num_classes"
            )
        if hasattr(datamodule, "image_size"):
            # A sequence datamodule's frame_step and a clip datamodule's frame_stride are the
            # same thing to a predictor: frames the model saw one after the other are this far apart.
            stride = getattr(datamodule, "frame_stride", getattr(datamodule, "frame_step", 1))
            self.inference_settings = {"image_size": int(datamodule.image_size), "frame_stride": int(stride)}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record what a predictor needs besides the weights: the module's class, the class names
        and, when the module was fitted through a datamodule, its image size and frame stride."""
        checkpoint[INFERENCE_KEY] = {"kind": type(self).__name__, "class_names": list(self.class_names),
                                     **self.inference_settings}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the recorded image size and frame stride, so a re-saved checkpoint has them too."""
        recorded = checkpoint.get(INFERENCE_KEY, {})
        self.inference_settings = {k: recorded[k] for k in ("image_size", "frame_stride") if k in recorded}

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, metric: FrameMAP, batch: Mapping[str, Any]) -> None:
        """Update ``metric`` with the batch's detections; a frame repeated by DDP padding counts once."""
        detections = self.detect(batch)
        metric.update(detections, targets_per_image(batch["targets"], len(detections)), **frame_ids(batch))

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(self.val_map, batch)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(self.test_map, batch)

    def _log_metrics(self, metric: FrameMAP, prefix: str) -> None:
        result = metric.compute()
        metric.reset()
        scalars = {k: v for k, v in result.items() if v.ndim == 0}
        # The values are already global (the metric syncs itself); sync_dist only tells Lightning so.
        self.log_dict({f"{prefix}/{k}": torch.nan_to_num(v.float(), nan=0.0) for k, v in scalars.items()}, sync_dist=True)
        for name, ap in zip(self.class_names, result["ap_per_class"].reshape(-1).tolist()):
            if not math.isnan(ap):
                self.log(f"{prefix}/ap/{metric_key(name)}", ap, sync_dist=True)
        self.last_metrics = {k: v.detach().cpu() for k, v in result.items()}

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_map, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_map, "test")

    # ------------------------------------------------------------------ optimisation
    def parameter_parts(self) -> dict[str, tuple[list[torch.nn.Parameter], float]]:
        """Parameters to optimise by part, each with its learning-rate scale.

        The default is one part holding every parameter at scale 1; a model with backbones
        returns them as their own parts to train them at another rate. Frozen parameters
        may be included: the optimizer skips a parameter without gradient.
        """
        return {"params": (list(self.parameters()), 1.0)}

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW or SGD (Nesterov) over ``parameter_parts`` (no weight decay on biases and norms),
        linear warm-up then cosine."""
        hp = self.hparams
        groups = []
        for name, (params, scale) in self.parameter_parts().items():
            for suffix, members, decay in (("", [p for p in params if p.ndim > 1], hp.weight_decay),
                                           ("/no_decay", [p for p in params if p.ndim <= 1], 0.0)):
                if members:
                    groups.append({"params": members, "lr": hp.lr * scale, "weight_decay": decay, "name": name + suffix})
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=(hp.momentum, 0.999))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(hp.warmup_fraction * total))

        def factor(step: int) -> float:
            if step < warmup:
                return 0.01 + 0.99 * step / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return hp.final_lr_fraction + (1 - hp.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by the module's ``gradient_clip_norm`` unless the Trainer sets its own clipping."""
        value = gradient_clip_val if gradient_clip_val is not None else self.hparams.gradient_clip_norm
        if value:
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=gradient_clip_algorithm or "norm")

    def configure_callbacks(self) -> list[Callback]:
        """EMA of the weights when ``ema_decay > 0``."""
        if self.hparams.ema_decay > 0:
            return [EMAWeightAveraging(decay=self.hparams.ema_decay, use_buffers=True)]
        return []

    @staticmethod
    def images_to_float(images: Tensor) -> Tensor:
        """uint8 ``(…, 3, H, W)`` in ``[0, 255]`` to float in ``[0, 1]``."""
        return images.float().div_(255.0) if images.dtype == torch.uint8 else images
