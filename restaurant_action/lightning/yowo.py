"""YOWOModule: YOWO trained on ``ClipDataModule`` batches (key frame last), evaluated with frame
mAP, YOWO's localization recall / classification accuracy and, when the batch carries track
ids, video-mAP.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from restaurant_action.lightning._detection import DetectionModule, frame_ids, targets_per_image
from restaurant_action.metrics import ClassificationAccuracy, LocalizationRecall, VideoMAP
from restaurant_action.models.backbones3d import load_kinetics_3d, load_mapped_state, read_state_dict
from restaurant_action.models.darknet import load_darknet_weights
from restaurant_action.models.losses import region_loss
from restaurant_action.models.postprocess import decode_region, select_detections
from restaurant_action.models.roi_head import jitter_boxes
from restaurant_action.models.yowo import (
    UCF24_ANCHORS,
    YOLO_CFG_OUT_CHANNELS,
    YOWO,
    RegionPass,
    box_rois,
    load_yowo_checkpoint,
    own_added_heads_state,
)

logger = logging.getLogger(__name__)

FREEZE_OPTIONS = ("none", "2d", "3d", "both")
FROZEN_BRANCHES = {"none": (), "2d": ("backbone_2d",), "3d": ("backbone_3d",), "both": ("backbone_2d", "backbone_3d")}
# darknet's partial Darknet-19 file: the first 18 convs of yolo.cfg.
DARKNET19_CONV23_LAYERS = 18
PASSTHROUGH_CHECKPOINT_KEY = "yowo_passthrough_order"
ROI_STRIDES = (8, 16)
# The box refiner trains on REFINE_COPIES copies of every target box, each shifted by up to
# REFINE_SHIFT of its size and resized by up to exp(±REFINE_LOG_SCALE) per axis, and on the
# region head's boxes that overlap a target of their frame by IoU >= REFINE_MIN_IOU.
REFINE_COPIES = 4
REFINE_SHIFT = 0.25
REFINE_LOG_SCALE = 0.3
REFINE_MIN_IOU = 0.3


def load_pretrained_yowo(network: YOWO, path: str | Path) -> None:
    """Load a whole YOWO into ``network`` (in place): an official checkpoint
    (``yowo_ucf101-24_16f_best.pth``, see :func:`~restaurant_action.models.yowo.load_yowo_checkpoint`)
    or one of this library (a ``YOWOModule`` Lightning checkpoint, keys ``network.*``, or a
    ``YOWO`` state dict). A prediction conv for another number of classes or anchors is
    re-initialised, with a warning; every other tensor must fit.

    Raises:
        ValueError: keys or shapes that do not fit, naming the checkpoint's key; ``network`` is
            untouched then.
    """
    state = read_state_dict(path)
    if "conv_final.weight" in state:
        load_yowo_checkpoint(network, state)
        return
    state = {key.removeprefix("network."): tensor for key, tensor in state.items()}
    final = state.get("final.weight")
    reinitialise = final is not None and final.shape != network.final.weight.shape
    mapped = {key: (key, tensor) for key, tensor in state.items()}
    if reinitialise:  # load the model's own weight (a no-op), re-initialised below
        mapped["final.weight"] = ("final.weight (re-initialised)", network.final.weight.detach().clone())
    mapped.update(own_added_heads_state(network, mapped, str(path)))
    load_mapped_state(network, mapped, str(path))
    if reinitialise:
        network.final.reset_parameters()
        logger.warning("%s: final has %d output channels, the model %d (another number of classes or anchors): "
                       "re-initialised it", path, final.shape[0], network.final.out_channels)


class YOWOModule(DetectionModule):
    """YOWO (2D Darknet-19 on the key frame + 3D CNN on the clip, CFAM, YOLOv2 region head).

    Batches are ``ClipDataModule`` dicts: ``clips`` uint8 ``(B, T, 3, S, S)`` with the key frame
    last, ``targets`` ``(M, 6)`` ``[image_index, class, x1, y1, x2, y2]`` pixels of the key
    frames, ``videos`` (names) and ``frames`` ``(B,)`` key-frame indices; optionally ``tracks``
    ``(M,)`` int64 track ids of the target rows, which turn on video-mAP.

    Args:
        num_classes: number of action classes (``dm.num_classes``).
        anchors: ``(A, 2)`` anchor (width, height) pixels at the training size (``dm.anchors(5)``);
            ``None``: YOWO's UCF101-24 anchors (for 224 px).
        backbone_3d: 3D backbone name (``resnext101``, ``resnet18``, ``mobilenetv2``, …; see
            :func:`~restaurant_action.models.backbones3d.build_backbone3d`).
        width_2d, width_3d: channel multipliers of the two branches.
        clip_length: frames per clip ``T``; every clip must have exactly this many, and at least
            the 3D backbone's ``min_frames``.
        channels_2d: output channels of the 2D branch's prediction conv (425: ``yolo.cfg``, as
            YOWO); ``None`` drops that conv.
        cfam_channels: CFAM's width (1024 in YOWO).
        pretrained_yowo: a whole YOWO to start from (an official checkpoint or one of this
            library); not combinable with ``pretrained_2d``/``pretrained_3d``.
        pretrained_3d: Kinetics weights of the 3D backbone (Hara's / Köpüklü's ``.pth``).
        pretrained_2d: darknet weights of the 2D branch: ``yolo.weights`` (COCO YOLOv2; with
            ``channels_2d=None`` its last conv is skipped) or ``darknet19_448.conv.23``.
        freeze: branches whose weights do not train and whose BatchNorm statistics stay fixed:
            ``"none"``, ``"2d"``, ``"3d"`` or ``"both"``.
        unfreeze_epoch: epoch from which frozen branches train (``None``: frozen throughout).
            Until then their gradients are computed and dropped, not skipped, because DDP only
            synchronises parameters that required gradients when it wrapped the model.
        backbone_lr_scale: learning rate of both backbones relative to ``lr`` (CFAM and the
            head train at ``lr``).
        coord_scale, object_scale, noobject_scale, class_scale, ignore_threshold, focal_gamma:
            region-loss settings (:func:`~restaurant_action.models.losses.region_loss`; YOWO's
            defaults).
        roi_stride: ``None`` (YOWO as published) or 8 or 16: add the box-aligned action
            classifier over the 3D branch's features at that stride (``YOWO(roi_stride=...)``);
            it trains on the key frames' target boxes and its probabilities multiply the region
            head's at every predicted box.
        roi_bins, roi_context: its bins per side and box enlargement (``YOWO``).
        roi_jitter: in training, the target boxes the RoI head reads are shifted by up to this
            fraction of their size, as detected boxes are off.
        roi_class_scale: weight of its loss, a cross-entropy per target box, summed per frame.
        roi_refine: add the box refiner (``YOWO(roi_refine=True)``, needs ``roi_stride``): it
            trains on jittered copies of the target boxes and on the region head's boxes that
            overlap a target (IoU ≥ 0.3), regressing Fast R-CNN's deltas onto the target
            (smooth L1), and corrects every predicted box at inference.
        roi_box_scale: weight of the refiner's loss, the mean over a frame's boxes.
        optimizer, lr, momentum, nms_iou: as for ``DetectionModule``, with YOWO's defaults: AdamW
            (YOWO: Adam) at 1e-4, β1 0.9, NMS IoU 0.4.
        **kwargs: the other settings of ``DetectionModule`` (``class_names``, ``class_ranking``,
            ``weight_decay``, ``warmup_fraction``, ``ema_decay``, ``score_threshold``, …).

    Restoring a checkpoint re-runs ``__init__`` with the saved arguments, pretrained paths
    included: pass ``pretrained_yowo=None, pretrained_3d=None, pretrained_2d=None`` to
    ``load_from_checkpoint`` where those files are absent (the checkpoint holds every weight).
    """

    def __init__(
        self,
        num_classes: int,
        anchors: Sequence[Sequence[float]] | None = None,
        backbone_3d: str = "resnext101",
        width_2d: float = 1.0,
        width_3d: float = 1.0,
        clip_length: int = 16,
        channels_2d: int | None = YOLO_CFG_OUT_CHANNELS,
        cfam_channels: int = 1024,
        pretrained_yowo: str | None = None,
        pretrained_3d: str | None = None,
        pretrained_2d: str | None = None,
        freeze: str = "none",
        unfreeze_epoch: int | None = None,
        backbone_lr_scale: float = 1.0,
        coord_scale: float = 1.0,
        object_scale: float = 5.0,
        noobject_scale: float = 1.0,
        class_scale: float = 1.0,
        ignore_threshold: float = 0.6,
        focal_gamma: float = 2.0,
        roi_stride: int | None = None,
        roi_bins: int = 4,
        roi_context: float = 2.0,
        roi_jitter: float = 0.1,
        roi_class_scale: float = 1.0,
        roi_refine: bool = False,
        roi_box_scale: float = 1.0,
        optimizer: str = "adamw",
        lr: float = 1e-4,
        momentum: float = 0.9,
        nms_iou: float = 0.4,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, optimizer=optimizer, lr=lr, momentum=momentum, nms_iou=nms_iou, **kwargs)
        if freeze not in FREEZE_OPTIONS:
            raise ValueError(f"freeze must be one of {FREEZE_OPTIONS}, got {freeze!r}")
        if unfreeze_epoch is not None and (freeze == "none" or unfreeze_epoch < 0):
            raise ValueError(f"unfreeze_epoch={unfreeze_epoch} needs freeze != 'none' and an epoch >= 0")
        if backbone_lr_scale < 0:
            raise ValueError(f"backbone_lr_scale must be >= 0, got {backbone_lr_scale}")
        if pretrained_yowo and (pretrained_2d or pretrained_3d):
            raise ValueError("pretrained_yowo holds both branches: do not combine it with pretrained_2d/pretrained_3d")
        if roi_stride is not None and roi_stride not in ROI_STRIDES:
            raise ValueError(f"roi_stride must be None or one of {ROI_STRIDES}, got {roi_stride!r}")
        if min(roi_jitter, roi_class_scale, roi_box_scale) < 0:
            raise ValueError(f"roi_jitter, roi_class_scale and roi_box_scale must be >= 0, got {roi_jitter}, "
                             f"{roi_class_scale} and {roi_box_scale}")
        self.network = YOWO(num_classes, anchors if anchors is not None else UCF24_ANCHORS, backbone_3d, width_2d,
                            width_3d, channels_2d, cfam_channels, roi_stride=roi_stride, roi_bins=roi_bins,
                            roi_context=roi_context, roi_refine=roi_refine)
        min_frames = self.network.backbone_3d.min_frames
        if clip_length < min_frames:
            raise ValueError(f"clip_length={clip_length}: the 3D backbone {backbone_3d} needs clips of at least "
                             f"{min_frames} frames")
        self._load_pretrained(pretrained_yowo, pretrained_3d, pretrained_2d)
        for branch in FROZEN_BRANCHES[freeze]:
            self._freeze(branch, True)

        def frame_measures() -> nn.ModuleDict:
            options = {"score_threshold": self.hparams.score_threshold}
            return nn.ModuleDict({"localization_recall": LocalizationRecall(num_classes, **options),
                                  "classification_accuracy": ClassificationAccuracy(num_classes, **options)})

        self.frame_measures = nn.ModuleDict({"val": frame_measures(), "test": frame_measures()})
        self.video_map = nn.ModuleDict({"val": VideoMAP(num_classes), "test": VideoMAP(num_classes)})
        self._warned_no_tracks = False

    # ------------------------------------------------------------------ construction helpers
    def _load_pretrained(self, yowo: str | None, kinetics: str | None, darknet: str | None) -> None:
        """Load the pretrained files; errors name the argument and the file and keep the loader's
        message (the checkpoint's key and both shapes).
        """
        loaders = (("pretrained_yowo", yowo, lambda path: load_pretrained_yowo(self.network, path)),
                   ("pretrained_3d", kinetics, lambda path: load_kinetics_3d(self.network.backbone_3d, path)),
                   ("pretrained_2d", darknet, self._load_darknet))
        for argument, path, load in loaders:
            if not path:
                continue
            if not Path(path).is_file():
                raise FileNotFoundError(f"{argument}: {path} not found")
            try:
                load(path)
            except ValueError as error:
                hp = self.hparams
                raise ValueError(f"{argument}={path!r} does not fit YOWO(backbone_3d={hp.backbone_3d!r}, "
                                 f"width_2d={hp.width_2d}, width_3d={hp.width_3d}, channels_2d={hp.channels_2d}, "
                                 f"cfam_channels={hp.cfam_channels}): {error}") from error

    def _load_darknet(self, path: str) -> None:
        """``yolo.weights`` (its 425-channel last conv skipped when ``channels_2d=None``) or
        ``darknet19_448.conv.23`` into the 2D branch.
        """
        backbone_2d = self.network.backbone_2d
        if Path(path).name.endswith(".conv.23"):
            num_layers: int | None = DARKNET19_CONV23_LAYERS
        else:
            num_layers = None if backbone_2d.output is not None else len(backbone_2d.darknet_layers())
        load_darknet_weights(backbone_2d, path, num_layers=num_layers)

    def _freeze(self, branch: str, frozen: bool) -> None:
        """Freeze or unfreeze ``backbone_2d``/``backbone_3d`` (eval mode, no weight updates)."""
        getattr(self.network, "freeze_2d" if branch == "backbone_2d" else "freeze_3d")(frozen)
        if frozen and self.hparams.unfreeze_epoch is not None:
            # DDP registers only parameters that require grad when it wraps the model
            # (Lightning issue #20340): keep them registered, drop their gradients instead.
            for parameter in getattr(self.network, branch).parameters():
                parameter.requires_grad_(True)

    # ------------------------------------------------------------------ network
    def forward(self, clips: Tensor) -> Tensor:
        """Raw region outputs ``(B, A, H/32, W/32, 5 + C)`` of uint8 or float clips ``(B, T, 3, H, W)``
        (key frame last; uint8 scaled to ``[0, 1]``). With the RoI head the class channels hold
        both heads' log-probabilities (``YOWO.forward``).
        """
        return self.network(self._network_input(clips))

    def _network_input(self, clips: Tensor) -> Tensor:
        """Checked ``(B, T, 3, H, W)`` uint8 or float clips as the network's float ``(B, 3, T, H, W)``."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected clips of shape (B, T, 3, H, W) (ClipDataModule's layout), "
                             f"got {tuple(clips.shape)}")
        if clips.shape[1] != self.hparams.clip_length:
            raise ValueError(f"the model was built for clips of {self.hparams.clip_length} frames, got "
                             f"{clips.shape[1]}; set ClipDataModule(clip_length=...) to match")
        return self.images_to_float(clips).permute(0, 2, 1, 3, 4)

    def loss(self, clips: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-frame loss ``(B,)`` of clips ``(B, T, 3, H, W)`` and its components: the region
        loss's ``box``, ``obj``, ``noobj``, ``cls``, with the RoI head ``roi_cls`` and with the
        box refiner ``roi_box``.
        """
        hp = self.hparams
        region_pass = self.network.forward_region(self._network_input(clips))
        region = region_pass.region
        per_frame, parts = region_loss(
            region, targets, self.network.anchors, self.network.stride, coord_scale=hp.coord_scale,
            object_scale=hp.object_scale, noobject_scale=hp.noobject_scale, class_scale=hp.class_scale,
            ignore_threshold=hp.ignore_threshold, focal_gamma=hp.focal_gamma,
        )
        if self.network.roi_head is None:
            return per_frame, parts
        targets = targets.to(region.device)
        parts["roi_cls"] = self._roi_loss(region_pass.clip_stage, targets, len(per_frame))
        per_frame = per_frame + parts["roi_cls"]
        if self.network.box_refiner is not None:
            parts["roi_box"] = self._refine_loss(region_pass, targets)
            per_frame = per_frame + parts["roi_box"]
        return per_frame, parts

    def _roi_loss(self, stage_features: Tensor, targets: Tensor, batch_size: int) -> Tensor:
        """``roi_class_scale ×`` the RoI head's cross-entropy at every target box (jittered in
        training), summed per frame: ``(B,)``.
        """
        boxes = targets[:, 2:6].float()
        if self.training and self.hparams.roi_jitter > 0:
            boxes = jitter_boxes(boxes, self.hparams.roi_jitter)
        logits = self.network.roi_head(stage_features, torch.cat([targets[:, :1].float(), boxes], dim=1))
        per_box = nn.functional.cross_entropy(logits, targets[:, 1].long(), reduction="none")
        per_frame = per_box.new_zeros(batch_size).index_add_(0, targets[:, 0].long(), per_box)
        return self.hparams.roi_class_scale * per_frame

    def refiner_samples(self, region: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The boxes the refiner trains on and their targets: ``rois (N, 5)`` ``[frame, x1, y1,
        x2, y2]`` and the target boxes ``(N, 4)`` they should move onto. In training,
        ``REFINE_COPIES`` jittered copies of every target box, plus the region head's decoded boxes
        ``(B, P, 4)`` whose best IoU with a target of their frame is ≥ ``REFINE_MIN_IOU``.
        """
        frames, ground_truth = targets[:, 0].long(), targets[:, 2:6].float()
        region_rois = box_rois(decode_region(region.detach(), self.network.anchors, self.network.stride)[0])
        iou = box_iou(region_rois[:, 1:], ground_truth)  # (B·P, M)
        iou[region_rois[:, :1].long() != frames[None, :]] = 0
        if len(ground_truth):
            best_iou, best = iou.max(dim=1)
        else:
            best_iou, best = iou.new_zeros(len(iou)), frames.new_zeros(len(iou))
        matched = best_iou >= REFINE_MIN_IOU
        samples, sample_truth = [region_rois[matched]], [ground_truth[best[matched]]]
        if self.training:
            copies = ground_truth.repeat(REFINE_COPIES, 1)
            jittered = jitter_boxes(copies, REFINE_SHIFT, scale=REFINE_LOG_SCALE)
            samples.append(torch.cat([frames.repeat(REFINE_COPIES).float()[:, None], jittered], dim=1))
            sample_truth.append(copies)
        return torch.cat(samples), torch.cat(sample_truth)

    def _refine_loss(self, region_pass: RegionPass, targets: Tensor) -> Tensor:
        """``roi_box_scale ×`` the box refiner's smooth-L1 loss on Fast R-CNN's deltas
        (:meth:`refiner_samples`), the mean over each frame's boxes: ``(B,)``.
        """
        refiner, batch_size = self.network.box_refiner, len(region_pass.region)
        rois, ground_truth = self.refiner_samples(region_pass.region, targets)
        deltas = refiner(self.network.refiner_features(region_pass), rois)
        per_box = nn.functional.smooth_l1_loss(deltas, refiner.deltas_between(rois[:, 1:], ground_truth),
                                               beta=1 / 9, reduction="none").sum(dim=1)
        frames = rois[:, 0].long()
        total = per_box.new_zeros(batch_size).index_add_(0, frames, per_box)
        count = per_box.new_zeros(batch_size).index_add_(0, frames, torch.ones_like(per_box))
        return self.hparams.roi_box_scale * total / count.clamp(min=1)

    def detect(self, batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
        """Detections per key frame (``YOWO.predict``: with ``roi_refine`` at the corrected boxes):
        score threshold, class-aware NMS, top ``max_detections``.
        """
        clips = self._network_input(batch["clips"])
        hp = self.hparams
        return select_detections(*self.network.predict(clips), tuple(clips.shape[-2:]),
                                 score_threshold=hp.score_threshold, iou_threshold=hp.nms_iou,
                                 max_detections=hp.max_detections)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[dict[str, Tensor]]:
        return self.detect(batch)

    # ------------------------------------------------------------------ checks
    def setup(self, stage: str) -> None:
        """Check the datamodule's class count (base) and clip length against the model's."""
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        clip_length = getattr(datamodule, "clip_length", None)
        if clip_length is not None and clip_length != self.hparams.clip_length:
            raise ValueError(f"the model was built for clips of {self.hparams.clip_length} frames but the datamodule "
                             f"makes clips of {clip_length}; build both with the same clip_length")

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        """Unfreeze the frozen branches at ``unfreeze_epoch``."""
        unfreeze_epoch = self.hparams.unfreeze_epoch
        frozen = [branch for branch, is_frozen in self.network.frozen.items() if is_frozen]
        if unfreeze_epoch is not None and self.current_epoch >= unfreeze_epoch and frozen:
            for branch in frozen:
                self._freeze(branch, False)
            logger.info("epoch %d: unfroze %s", self.current_epoch, ", ".join(frozen))

    def on_after_backward(self) -> None:
        """Drop the gradients of frozen branches that still compute them (see ``unfreeze_epoch``)."""
        for branch, frozen in self.network.frozen.items():
            if frozen:
                for parameter in getattr(self.network, branch).parameters():
                    parameter.grad = None

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        per_frame, parts = self.loss(batch["clips"], batch["targets"])
        loss = per_frame.mean()
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{name}": value.mean() for name, value in parts.items()})
        return loss

    def parameter_parts(self) -> dict[str, tuple[list[torch.nn.Parameter], float]]:
        """``backbone_2d`` and ``backbone_3d`` at ``backbone_lr_scale``, the rest (``head``) at 1.
        Every parameter is included, frozen ones too, so unfreezing needs no new optimizer.
        """
        parts = self.network.parameter_groups()
        covered = {id(p) for params in parts.values() for p in params}
        parts["head"] += [p for p in self.parameters() if id(p) not in covered]
        return {name: (params, 1.0 if name == "head" else self.hparams.backbone_lr_scale) for name, params in parts.items()}

    # ------------------------------------------------------------------ evaluation
    def _evaluate_step(self, batch: Mapping[str, Any], stage: str) -> None:
        detections = self.detect(batch)
        targets = targets_per_image(batch["targets"], len(detections))
        ids = frame_ids(batch)
        (self.val_map if stage == "val" else self.test_map).update(detections, targets, **ids)
        for metric in self.frame_measures[stage].values():
            metric.update(detections, targets, **ids)
        tracks = batch.get("tracks")
        if tracks is None:
            if not self._warned_no_tracks:
                logger.info("the %s batches carry no 'tracks': video-mAP is skipped", stage)
                self._warned_no_tracks = True
            return
        image_index = batch["targets"][:, 0].long()
        for index, target in enumerate(targets):
            target["tracks"] = tracks[image_index == index].long()
        self.video_map[stage].update(detections, targets, **ids)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate_step(batch, "test")

    def _log_yowo_metrics(self, stage: str) -> None:
        """Log ``{stage}/localization_recall``, ``{stage}/classification_accuracy`` and, if updated,
        ``{stage}/video_map`` and ``{stage}/video_map_{10,20,50}``. The values are already global
        (the metrics sync their states); ``sync_dist`` averages equal values and keeps Lightning quiet.
        """
        for name, metric in self.frame_measures[stage].items():
            self.log(f"{stage}/{name}", torch.nan_to_num(metric.compute(), nan=0.0), sync_dist=True)
            metric.reset()
        video_map = self.video_map[stage]
        if video_map.update_count:
            result = video_map.compute()
            self.log_dict({f"{stage}/video_{key}": torch.nan_to_num(value, nan=0.0)
                           for key, value in result.items() if key.startswith("map")}, sync_dist=True)
        video_map.reset()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_yowo_metrics("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_yowo_metrics("test")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The predictor's settings (base) and the 2D passthrough order (an official YOWO start
        switches it; it has no parameters)."""
        super().on_save_checkpoint(checkpoint)
        checkpoint[PASSTHROUGH_CHECKPOINT_KEY] = self.network.passthrough_order

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.network.set_passthrough_order(checkpoint.get(PASSTHROUGH_CHECKPOINT_KEY, "darknet"))
