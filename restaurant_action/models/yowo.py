"""YOWO (You Only Watch Once, Köpüklü et al. 2019): a 2D and a 3D branch fused by CFAM, with a
YOLOv2 region head.

The layout is that of the official implementation (wei-tim/YOWO ``core/model.py``,
``core/cfam.py``) so its checkpoints load (:func:`load_yowo_checkpoint`):

- 2D branch: darknet's ``yolo.cfg`` (Darknet-19 with the passthrough) *including* its 425-channel
  COCO prediction conv, on the key frame — the last frame of the clip;
- 3D branch: a :class:`~restaurant_action.models.backbones3d.Backbone3D` on the whole clip;
- CFAM on ``cat(3D, 2D)`` (3D first): 1×1 conv-BN-ReLU, 3×3 conv-BN-ReLU, channel attention,
  3×3 conv-BN-ReLU, dropout 0.1, 1×1 conv (with bias);
- a final 1×1 conv without bias to ``A·(5 + C)`` channels (anchor-major).

An option this library adds (``roi_stride``): a box-aligned action classifier
(:class:`~restaurant_action.models.roi_head.RoIActionHead`) over the 3D branch's stride-8 or -16
features, whose class probabilities multiply the region head's at every predicted box. YOWO's
cell readout does not learn actions that only the direction of motion separates; the
box-aligned readout does (docs/models.md). With it, ``roi_refine`` adds a
:class:`~restaurant_action.models.roi_head.RoIBoxRefiner` over the key frame's and the clip's
features at the same stride, which corrects each predicted box before the classifier reads it:
the stride-32 cell places small hands coarsely.

Anchors are ``(A, 2)`` (width, height) in input pixels, as everywhere in this library; YOLOv2
cfg files give them in grid cells of the stride-32 output, i.e. pixels / 32.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from restaurant_action.models.backbones3d import Backbone3D, build_backbone3d, load_mapped_state, read_state_dict
from restaurant_action.models.darknet import Darknet19, Reorg
from restaurant_action.models.postprocess import decode_region
from restaurant_action.models.roi_head import RoIActionHead, RoIBoxRefiner

logger = logging.getLogger(__name__)

YOWO_STRIDE = 32

# YOWO's cfg/ucf24.yaml ANCHORS, in grid cells (YOLOv2's convention).
UCF24_ANCHORS_CELLS: tuple[tuple[float, float], ...] = (
    (0.70458, 1.18803), (1.26654, 2.55121), (1.59382, 4.08321), (2.30548, 4.94180), (3.52332, 5.91979),
)
# The same in input pixels (cells × 32), the unit :class:`YOWO` takes.
UCF24_ANCHORS: tuple[tuple[float, float], ...] = tuple((w * YOWO_STRIDE, h * YOWO_STRIDE)
                                                      for w, h in UCF24_ANCHORS_CELLS)

# Channels of yolo.cfg's last conv (5 anchors × (5 + 80 COCO classes)): YOWO's 2D features.
YOLO_CFG_OUT_CHANNELS = 425

# Index in pytorch-yolo2's ``Darknet.models`` (one entry per yolo.cfg block) of each of yolo.cfg's
# 23 convolutions; conv k (0-based) is named ``models.{index}.conv{k+1}`` / ``.bn{k+1}``.
YOLO_CFG_CONV_BLOCKS = (0, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23, 24, 26, 29, 30)

# Official CFAMBlock module names → ours.
CFAM_KEYS = {"conv_bn_relu1.": "conv1.", "conv_bn_relu2.": "conv2.", "sc.": "attention.",
             "conv_bn_relu3.": "conv3.", "conv_out.1.": "output."}

PASSTHROUGH_ORDERS = ("darknet", "pytorch-yolo2")
# Modules this library adds to YOWO, absent from official checkpoints.
ADDED_HEADS = ("roi_head", "box_refiner")


class RegionPass(NamedTuple):
    """What one pass of :meth:`YOWO.forward_region` computes.

    Attributes:
        region: the region head's raw output ``(B, A, H/32, W/32, 5 + C)``.
        clip_stage: with the RoI head, the 3D branch's features at its stride
            ``(B, C3, H/s, W/s)`` (time averaged), else ``None``.
        frame_stage: with the box refiner, the 2D branch's key-frame features at that stride
            ``(B, C2, H/s, W/s)``, else ``None``.
    """

    region: Tensor
    clip_stage: Tensor | None
    frame_stage: Tensor | None


def check_region_anchors(anchors: Tensor | Sequence[Sequence[float]]) -> Tensor:
    """Validate region-head anchors: float32 ``(A, 2)`` (width, height) pixels, finite and
    positive, in the given order (the order of the head's channels).
    """
    anchors = torch.as_tensor(anchors, dtype=torch.float32, device="cpu").detach()
    if anchors.ndim != 2 or anchors.shape[1] != 2 or anchors.shape[0] == 0:
        raise ValueError(f"anchors must be an (A, 2) array of (width, height) pixels, got shape {tuple(anchors.shape)}")
    if not torch.isfinite(anchors).all() or (anchors <= 0).any():
        raise ValueError(f"anchors must be finite and positive, got {anchors.tolist()}")
    return anchors


class SpaceToDepth(nn.Module):
    """pytorch-yolo2's ``Reorg``, which YOWO trained with: ``(B, C, H, W) -> (B, C·s², H/s, W/s)``,
    ``out[(dy·s + dx)·C + c, j, i] = x[c, j·s + dy, i·s + dx]`` — a plain space-to-depth, unlike
    darknet's own ``reorg`` (:class:`~restaurant_action.models.darknet.Reorg`).
    """

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        s = self.stride
        if height % s or width % s:
            raise ValueError(f"SpaceToDepth(stride={s}) needs a size divisible by {s}, got {tuple(x.shape)}")
        x = x.reshape(batch, channels, height // s, s, width // s, s)
        return x.permute(0, 3, 5, 1, 2, 4).reshape(batch, s * s * channels, height // s, width // s)


class ChannelAttention(nn.Module):
    """CFAM's channel attention (``CAM_Module``, from DANet), with a residual.

    For ``x (B, C, H, W)`` flattened to ``F (B, C, N)``: Gram matrix ``E = F Fᵀ (B, C, C)``,
    attention ``softmax(max_row(E) − E)`` over the last axis, output ``γ · (attention F) + x``.
    ``gamma`` starts at 0, so the module starts as the identity.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, C)``; rows sum to 1."""
        flat = x.flatten(2).float()  # the Gram matrix overflows float16 under autocast
        energy = flat @ flat.transpose(1, 2)
        return (energy.amax(dim=-1, keepdim=True) - energy).softmax(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        attended = (self.attention(x) @ x.flatten(2).float()).view(x.shape).to(x.dtype)
        return self.gamma * attended + x


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class CFAM(nn.Module):
    """Channel Fusion and Attention Mechanism (YOWO's ``CFAMBlock``).

    ``(B, in_channels, H, W) -> (B, out_channels, H, W)``: ``conv1`` 1×1 and ``conv2`` 3×3
    conv-BN-ReLU to ``hidden_channels``, :class:`ChannelAttention`, ``conv3`` 3×3 conv-BN-ReLU,
    ``Dropout2d(dropout)``, ``output`` 1×1 conv with bias. YOWO: hidden = out = 1024, dropout 0.1.
    """

    def __init__(self, in_channels: int, out_channels: int = 1024, hidden_channels: int = 1024,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels, hidden_channels, 1)
        self.conv2 = _conv_bn_relu(hidden_channels, hidden_channels, 3)
        self.attention = ChannelAttention()
        self.conv3 = _conv_bn_relu(hidden_channels, hidden_channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.output = nn.Conv2d(hidden_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attention(self.conv2(self.conv1(x)))
        return self.output(self.dropout(self.conv3(x)))


class YOWO(nn.Module):
    """YOWO network: ``clips (B, 3, T, H, W) float -> (B, A, H/32, W/32, 5 + C)`` raw
    ``(tx, ty, tw, th, objectness, class logits…)``, H and W multiples of 32.

    The key frame is the clip's last frame. A ``(B, T, 3, H, W)`` batch (the datamodule's) is
    permuted with ``clips.permute(0, 2, 1, 3, 4)`` first. Decode with
    :func:`~restaurant_action.models.postprocess.postprocess_region` (with the box refiner:
    :meth:`predict`, then :func:`~restaurant_action.models.postprocess.select_detections`) and train with
    :func:`~restaurant_action.models.losses.region_loss` (softmax classes, YOLOv2).

    Args:
        num_classes: number of classes C.
        anchors: ``(A, 2)`` anchor (width, height) in input pixels (:data:`UCF24_ANCHORS` are
            YOWO's for UCF101-24: its grid-cell values × 32); the order is the head's.
        backbone_3d: a name for :func:`~restaurant_action.models.backbones3d.build_backbone3d`
            (built with ``width_3d``) or a built :class:`Backbone3D`.
        width_2d: channel multiplier of Darknet-19.
        width_3d: channel multiplier of the 3D backbone when it is built by name.
        channels_2d: output channels of the 2D branch's final 1×1 conv: 425 is yolo.cfg's (what
            YOWO and ``yolo.weights`` have); ``None`` drops that conv and uses the 1024·width
            features.
        cfam_channels: CFAM's hidden and output channels (1024 in YOWO).
        dropout: CFAM's dropout.
        passthrough_order: ``"darknet"`` (darknet's reorg, right for ``yolo.weights``) or
            ``"pytorch-yolo2"`` (:class:`SpaceToDepth`, what YOWO's checkpoints were trained
            with; :func:`load_yowo_checkpoint` switches to it).
        roi_stride: ``None`` (YOWO as published) or 8 or 16: add a
            :class:`~restaurant_action.models.roi_head.RoIActionHead` over the 3D branch's
            features at that stride. :meth:`forward` then returns class logits
            ``log_softmax(region) + log_softmax(RoI head at the decoded box)``: the softmax of
            the output is the normalised product of the two heads' probabilities.
        roi_bins, roi_context: the RoI head's bins per side and box enlargement.
        roi_refine: with ``roi_stride``, add a
            :class:`~restaurant_action.models.roi_head.RoIBoxRefiner` over
            ``cat(key-frame features, clip features)`` at ``roi_stride``: every decoded box is
            corrected by it before the RoI head reads it, and :meth:`predict` returns the
            corrected boxes (:meth:`forward`'s box channels stay the region head's).

    Attributes:
        backbone_2d: :class:`~restaurant_action.models.darknet.Darknet19`.
        backbone_3d: :class:`Backbone3D`.
        cfam: :class:`CFAM`.
        final: the 1×1 prediction conv (no bias, as YOWO's ``conv_final``).
        roi_head: :class:`~restaurant_action.models.roi_head.RoIActionHead` or ``None``.
        box_refiner: :class:`~restaurant_action.models.roi_head.RoIBoxRefiner` or ``None``.
        anchors: ``(A, 2)`` buffer, pixels.
    """

    stride = YOWO_STRIDE

    def __init__(self, num_classes: int, anchors: Tensor | Sequence[Sequence[float]],
                 backbone_3d: str | Backbone3D = "resnext101", width_2d: float = 1.0, width_3d: float = 1.0,
                 channels_2d: int | None = YOLO_CFG_OUT_CHANNELS, cfam_channels: int = 1024, dropout: float = 0.1,
                 passthrough_order: str = "darknet", roi_stride: int | None = None, roi_bins: int = 4,
                 roi_context: float = 2.0, roi_refine: bool = False) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.register_buffer("anchors", check_region_anchors(anchors), persistent=False)
        self.num_anchors = self.anchors.shape[0]
        self._frozen = {"backbone_2d": False, "backbone_3d": False}

        self.backbone_2d = Darknet19(width_2d, channels_2d)
        self.backbone_3d = backbone_3d if isinstance(backbone_3d, Backbone3D) else build_backbone3d(backbone_3d,
                                                                                                     width_3d)
        self.cfam = CFAM(self.backbone_3d.out_channels + self.backbone_2d.out_channels, cfam_channels,
                         cfam_channels, dropout)
        self.final = nn.Conv2d(cfam_channels, self.num_anchors * (5 + num_classes), 1, bias=False)
        self.roi_head = None if roi_stride is None else RoIActionHead(
            self.backbone_3d.stage_channels(roi_stride), num_classes, roi_stride, roi_bins, roi_context)
        if roi_refine and roi_stride is None:
            raise ValueError("roi_refine corrects the boxes the RoI head reads: it needs roi_stride (8 or 16)")
        self.box_refiner = None if not roi_refine else RoIBoxRefiner(
            self.backbone_2d.stage_channels(roi_stride) + self.backbone_3d.stage_channels(roi_stride), roi_stride,
            roi_bins, roi_context)
        self.passthrough_order = "darknet"
        self.set_passthrough_order(passthrough_order)

    def set_passthrough_order(self, order: str) -> None:
        """Use darknet's reorg (``"darknet"``) or pytorch-yolo2's (``"pytorch-yolo2"``) in the 2D
        branch's passthrough; neither has parameters.
        """
        if order not in PASSTHROUGH_ORDERS:
            raise ValueError(f"passthrough_order must be one of {PASSTHROUGH_ORDERS}, got {order!r}")
        self.backbone_2d.passthrough[1] = Reorg(2) if order == "darknet" else SpaceToDepth(2)
        self.passthrough_order = order

    def _check_clips(self, clips: Tensor) -> None:
        if clips.ndim != 5 or clips.shape[1] != 3:
            hint = (": this looks like (B, T, 3, H, W); use clips.permute(0, 2, 1, 3, 4)"
                    if clips.ndim == 5 and clips.shape[2] == 3 else "")
            raise ValueError(f"expected clips of shape (B, 3, T, H, W), got {tuple(clips.shape)}{hint}")
        if not clips.is_floating_point():
            raise ValueError(f"expected float clips (normalised), got {clips.dtype}")
        height, width = clips.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(f"frame size {height}x{width} is not a multiple of {self.stride}; resize or pad the clip")

    def forward_features(self, clips: Tensor) -> Tensor:
        """CFAM's output, the prediction conv's input: ``(B, 3, T, H, W) -> (B, cfam_channels, H/32, W/32)``."""
        return self._forward_branches(clips, stage_stride=None, frame_stage=False)[0]

    def _forward_branches(self, clips: Tensor, stage_stride: int | None,
                          frame_stage: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """CFAM's output and, for a ``stage_stride``, the 3D branch's features at that stride and
        (``frame_stage``) the 2D branch's.
        """
        self._check_clips(clips)
        key_frames = clips[:, :, -1]
        if stage_stride is None:
            clip_features, clip_stage = self.backbone_3d(clips), None
        else:
            clip_features, clip_stage = self.backbone_3d.forward_with_stage(clips, stage_stride)
        if frame_stage:
            frame_features, key_frame_stage = self.backbone_2d.forward_with_stage(key_frames, stage_stride)
        else:
            frame_features, key_frame_stage = self.backbone_2d(key_frames), None
        # YOWO's torch.cat((x_3d, x_2d)): the clip features come first.
        return self.cfam(torch.cat([clip_features, frame_features], dim=1)), clip_stage, key_frame_stage

    def forward_region(self, clips: Tensor) -> RegionPass:
        """The region head's raw output and the stage features the added heads read: what
        training needs.
        """
        stage_stride = None if self.roi_head is None else self.roi_head.stride
        refining = self.box_refiner is not None
        features, clip_stage, frame_stage = self._forward_branches(clips, stage_stride, refining)
        out = self.final(features)
        batch, _, height, width = out.shape
        region = out.view(batch, self.num_anchors, 5 + self.num_classes, height, width).permute(0, 1, 3, 4, 2)
        return RegionPass(region, clip_stage, frame_stage)

    def refiner_features(self, region_pass: RegionPass) -> Tensor:
        """The box refiner's input ``cat(key-frame stage, clip stage) (B, C2 + C3, H/s, W/s)``."""
        return torch.cat([region_pass.frame_stage, region_pass.clip_stage], dim=1)

    def forward(self, clips: Tensor) -> Tensor:
        """Raw predictions ``(B, A, H/32, W/32, 5 + C)``; with the RoI head, the class channels are
        ``log_softmax(region logits) + log_softmax(RoI logits at the decoded box)`` (with
        ``roi_refine``, at the corrected box).
        """
        return self._heads(clips)[0]

    def predict(self, clips: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Decoded predictions: ``boxes (B, P, 4)`` xyxy pixels (with ``roi_refine`` corrected
        by the refiner), ``objectness (B, P)`` and ``class_probs (B, P, C)``, ``P = A·H/32·W/32``
        (:func:`~restaurant_action.models.postprocess.decode_region`'s order); what
        :func:`~restaurant_action.models.postprocess.select_detections` takes.
        """
        output, refined_boxes = self._heads(clips)
        boxes, objectness, class_probs = decode_region(output, self.anchors, self.stride)
        return (boxes if refined_boxes is None else refined_boxes), objectness, class_probs

    def _heads(self, clips: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward`'s output and, with the box refiner, the corrected boxes ``(B, P, 4)``."""
        region_pass = self.forward_region(clips)
        if self.roi_head is None:
            return region_pass.region, None
        boxes = decode_region(region_pass.region.detach(), self.anchors, self.stride)[0]  # (B, P, 4)
        refined_boxes = None
        if self.box_refiner is not None:
            boxes = refined_boxes = self.box_refiner.refine(self.refiner_features(region_pass),
                                                            box_rois(boxes)).view_as(boxes)
        roi_logits = self.roi_head(region_pass.clip_stage, box_rois(boxes))
        roi_logits = roi_logits.view(*region_pass.region.shape[:-1], self.num_classes)
        classes = region_pass.region[..., 5:].log_softmax(dim=-1) + roi_logits.log_softmax(dim=-1)
        return torch.cat([region_pass.region[..., :5], classes], dim=-1), refined_boxes

    # ------------------------------------------------------------------ fine-tuning helpers
    def freeze_2d(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the 2D branch: ``requires_grad`` off and the branch kept in eval
        mode (BatchNorm statistics fixed) even through ``model.train()``.
        """
        self._set_frozen("backbone_2d", frozen)

    def freeze_3d(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the 3D branch, as :meth:`freeze_2d`."""
        self._set_frozen("backbone_3d", frozen)

    def _set_frozen(self, branch: str, frozen: bool) -> None:
        self._frozen[branch] = frozen
        module = getattr(self, branch)
        for parameter in module.parameters():
            parameter.requires_grad_(not frozen)
        module.train(self.training and not frozen)

    @property
    def frozen(self) -> dict[str, bool]:
        """``{"backbone_2d": bool, "backbone_3d": bool}``."""
        return dict(self._frozen)

    def train(self, mode: bool = True) -> YOWO:
        """As ``nn.Module.train``, but frozen branches stay in eval mode, so Lightning's
        ``model.train()`` at the start of every training epoch leaves their BatchNorm alone.
        """
        super().train(mode)
        for branch, frozen in self._frozen.items():
            if frozen:
                getattr(self, branch).eval()
        return self

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Every parameter, by part, for separate learning rates: ``backbone_2d``,
        ``backbone_3d`` and ``head`` (CFAM, the final conv and the added heads). Frozen parameters are included
        (they get no gradient, so optimizers skip them) so that unfreezing later needs no new
        optimizer.
        """
        return {"backbone_2d": list(self.backbone_2d.parameters()),
                "backbone_3d": list(self.backbone_3d.parameters()),
                "head": [*self.cfam.parameters(), *self.final.parameters(),
                         *(p for name in ADDED_HEADS if getattr(self, name) is not None
                           for p in getattr(self, name).parameters())]}


def box_rois(boxes: Tensor) -> Tensor:
    """``boxes (B, P, 4)`` as RoIAlign's ``rois (B·P, 5)`` ``[batch index, x1, y1, x2, y2]``."""
    image_index = torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype)
    return torch.cat([image_index.view(-1, 1, 1).expand(-1, boxes.shape[1], 1), boxes], dim=2).flatten(0, 1)


def _darknet_key_map(model: YOWO) -> dict[str, str]:
    """pytorch-yolo2 key of YOWO's 2D branch (without ``backbone_2d.``) → ours."""
    layers = model.backbone_2d.darknet_layers()
    if len(layers) != len(YOLO_CFG_CONV_BLOCKS):
        raise ValueError("YOWO checkpoints hold yolo.cfg's 425-channel output conv in the 2D branch: build YOWO "
                         f"with channels_2d={YOLO_CFG_OUT_CHANNELS}")
    names: dict[str, str] = {}
    for index, (layer, block) in enumerate(zip(layers, YOLO_CFG_CONV_BLOCKS), start=1):
        prefix = f"models.{block}."
        if layer.bn is None:
            names.update({f"{prefix}conv{index}.{p}": f"{layer.name}.{p}" for p in ("weight", "bias")})
            continue
        names[f"{prefix}conv{index}.weight"] = f"{layer.name}.conv.weight"
        for tensor in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            names[f"{prefix}bn{index}.{tensor}"] = f"{layer.name}.bn.{tensor}"
    return names


def _yowo_key(model: YOWO, key: str, darknet_keys: Mapping[str, str]) -> str | None:
    """Our key of an official YOWO state-dict key (``module.`` removed), or None if unknown;
    ``darknet_keys`` is :func:`_darknet_key_map` of ``model``.
    """
    part, _, rest = key.partition(".")
    if part == "backbone_2d":
        return f"backbone_2d.{darknet_keys[rest]}" if rest in darknet_keys else None
    if part == "backbone_3d":
        return f"backbone_3d.{model.backbone_3d.checkpoint_key(rest)}"
    if part == "cfam":
        for official, ours in CFAM_KEYS.items():
            if rest.startswith(official):
                return f"cfam.{ours}{rest.removeprefix(official)}"
        return None
    if key == "conv_final.weight":
        return "final.weight"
    return None


def own_added_heads_state(model: YOWO, mapped: Mapping[str, tuple[str, Tensor]],
                          where: str) -> dict[str, tuple[str, Tensor]]:
    """The added heads' own tensors (RoI head, box refiner), to load in place of a checkpoint's
    (``mapped``: our key → (its key, tensor)) that has none of that head: YOWO's and those of
    this library without it; empty for heads that either side lacks.
    """
    kept: dict[str, tuple[str, Tensor]] = {}
    for name in ADDED_HEADS:
        head = getattr(model, name)
        if head is None or any(key.startswith(f"{name}.") for key in mapped):
            continue
        logger.info("%s: has no %s; model.%s keeps its initial weights", where, name, name)
        kept.update({f"{name}.{key}": ("(kept: not in the checkpoint)", tensor.detach().clone())
                     for key, tensor in head.state_dict().items()})
    return kept


def load_yowo_checkpoint(model: YOWO, source: str | Path | Mapping[str, Tensor]) -> None:
    """Load an official YOWO checkpoint (``yowo_ucf101-24_16f_best.pth``…: ``{"state_dict":
    {"module.backbone_2d.models.0.conv1.weight": ..., "module.backbone_3d.conv1.weight": ...,
    "module.cfam.conv_bn_relu1.0.weight": ..., "module.conv_final.weight": ...}, ...}``) into
    ``model`` (in place).

    ``model`` must have the checkpoint's architecture (3D backbone, widths, ``channels_2d=425``,
    ``cfam_channels=1024``). A ``conv_final`` for another number of classes or anchors is
    skipped and ``model.final`` re-initialised, with a warning. The 2D passthrough is switched
    to pytorch-yolo2's order, which the checkpoints were trained with.

    Raises:
        ValueError: unreadable file, keys that do not fit or a shape mismatch (naming the
            checkpoint's key); ``model`` is untouched then.
    """
    where = str(source) if not isinstance(source, Mapping) else "state dict"
    state = read_state_dict(source)
    darknet_keys = _darknet_key_map(model)
    mapped: dict[str, tuple[str, Tensor]] = {}
    for key, tensor in state.items():
        ours = _yowo_key(model, key, darknet_keys)
        mapped[ours if ours is not None else f"<unknown>.{key}"] = (key, tensor)

    final = mapped.get("final.weight")
    reinitialise = (final is not None and final[1].shape != model.final.weight.shape
                    and final[1].shape[1:] == model.final.weight.shape[1:])
    if reinitialise:  # load the model's own weight (a no-op), re-initialised below
        mapped["final.weight"] = ("(re-initialised)", model.final.weight.detach().clone())
    mapped.update(own_added_heads_state(model, mapped, where))
    load_mapped_state(model, mapped, where)
    if reinitialise:
        model.final.reset_parameters()
        logger.warning("%s: conv_final has %d output channels, the model %d (another number of classes or "
                       "anchors): re-initialised model.final", where, final[1].shape[0], model.final.out_channels)
    if model.passthrough_order != "pytorch-yolo2":
        model.set_passthrough_order("pytorch-yolo2")
        logger.info("%s: switched the 2D passthrough to pytorch-yolo2's reorg order, which YOWO was trained with",
                    where)
