"""YOLOv3: Darknet-53, a three-scale upsampling neck and one prediction head per scale.

At ``width=1.0, depth=1.0`` the layers are those of darknet's ``yolov3.cfg``, so its
``.weights`` files load (see :func:`~restaurant_action.models.darknet.load_darknet_weights`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restaurant_action.models.darknet import Darknet53, DarknetLayer, conv_layers
from restaurant_action.models.layers import ConvBNAct, fuse_conv_bn, scale_channels

# yolov3.cfg's anchors in input pixels (416 px COCO), sorted by area: three per scale, small to large.
COCO_ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326),
)

YOLOV3_STRIDES = (8, 16, 32)


def check_anchors(anchors: Tensor | Sequence[Sequence[float]], num_scales: int = 3) -> Tensor:
    """Validate anchors and return them as a float32 ``(N, 2)`` tensor ``(width, height)`` in
    pixels, sorted by area (stable), so that anchors ``[k·A, (k+1)·A)`` belong to scale ``k``
    (smallest stride first), ``A = N / num_scales``.
    """
    anchors = torch.as_tensor(anchors, dtype=torch.float32, device="cpu").detach()
    if anchors.ndim != 2 or anchors.shape[1] != 2 or anchors.shape[0] == 0 or anchors.shape[0] % num_scales:
        raise ValueError(f"anchors must be an (N, 2) array of (width, height) pixels with N a multiple of "
                         f"{num_scales} (e.g. (9, 2)), got shape {tuple(anchors.shape)}")
    if not torch.isfinite(anchors).all() or (anchors <= 0).any():
        raise ValueError(f"anchors must be finite and positive, got {anchors.tolist()}")
    order = torch.sort(anchors.prod(dim=1), stable=True).indices
    return anchors[order]


class DetectionBlock(nn.Sequential):
    """The five alternating 1×1 / 3×3 convs before each head of yolov3.cfg.

    ``(B, in_channels, H, W) -> (B, channels, H, W)``; the 3×3 convs have ``2·channels``
    (``hidden_channels``) outputs.
    """

    def __init__(self, in_channels: int, channels: int, hidden_channels: int) -> None:
        super().__init__(
            ConvBNAct(in_channels, channels, 1),
            ConvBNAct(channels, hidden_channels, 3),
            ConvBNAct(hidden_channels, channels, 1),
            ConvBNAct(channels, hidden_channels, 3),
            ConvBNAct(hidden_channels, channels, 1),
        )


class YOLOHead(nn.Module):
    """One scale's prediction head: ``features`` (3×3 conv-BN-LeakyReLU) then ``final`` (1×1 conv).

    ``forward(x) == predict(features(x))`` and ``predict(f) == layout(final(f))``. A recurrent
    model adds its cell's contribution between the two:
    ``head.layout(head.final(f) + cell(f))`` with ``f = head.features(x)``.

    Args:
        in_channels: channels of the detection block's output.
        hidden_channels: channels of ``features``' output (``final``'s input).
        num_anchors: anchors at this scale (A).
        num_classes: number of classes (C).
        stride: the scale's stride in pixels (for the objectness bias prior).
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_anchors: int, num_classes: int,
                 stride: int) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        self.num_classes = num_classes
        self.stride = stride
        self.features = ConvBNAct(in_channels, hidden_channels, 3)
        self.final = nn.Conv2d(hidden_channels, num_anchors * (5 + num_classes), 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise ``final`` with YOLOv5's bias priors, which speed up early training:
        about 8 objects per 640×640 image, and class probabilities near 0.6 / C.
        """
        self.final.reset_parameters()
        with torch.no_grad():
            bias = self.final.bias.view(self.num_anchors, 5 + self.num_classes)
            bias[:, 4] = math.log(8 / (640 / self.stride) ** 2)
            bias[:, 5:] = math.log(0.6 / (self.num_classes - 0.99))

    def predict(self, features: Tensor) -> Tensor:
        """``final`` and the anchor layout: ``(B, hidden, H, W) -> (B, A, H, W, 5 + C)`` raw
        ``(tx, ty, tw, th, objectness, class logits…)``.
        """
        return self.layout(self.final(features))

    def layout(self, raw: Tensor) -> Tensor:
        """The anchor layout of ``final``'s output: ``(B, A·(5 + C), H, W) -> (B, A, H, W, 5 + C)``."""
        batch, _, height, width = raw.shape
        return raw.view(batch, self.num_anchors, 5 + self.num_classes, height, width).permute(0, 1, 3, 4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.predict(self.features(x))


class YOLOv3(nn.Module):
    """YOLOv3 network: raw predictions at strides 8, 16 and 32.

    ``(B, 3, H, W) -> [(B, A, H/8, W/8, 5 + C), (B, A, H/16, W/16, 5 + C), (B, A, H/32, W/32, 5 + C)]``
    with H and W multiples of 32; the last dimension holds raw ``(tx, ty, tw, th, objectness,
    class logits)``; decode with :func:`~restaurant_action.models.postprocess.decode_outputs`.

    Args:
        num_classes: number of classes C (80 for COCO).
        anchors: ``(N, 2)`` anchor (width, height) in input pixels, N a multiple of 3 (9 in
            yolov3.cfg); sorted by area, the smallest N/3 go to stride 8 (see :func:`check_anchors`).
        width: channel multiplier (1.0 is yolov3.cfg).
        depth: multiplier of Darknet-53's residual blocks per stage.

    Attributes:
        anchors: ``(N, 2)`` buffer, sorted; ``anchors[k·A:(k+1)·A]`` belong to ``strides[k]``.
        strides: ``(8, 16, 32)``, the order of the outputs.
        heads: one :class:`YOLOHead` per stride, in output order.
    """

    strides = YOLOV3_STRIDES

    def __init__(self, num_classes: int, anchors: Tensor | Sequence[Sequence[float]], width: float = 1.0,
                 depth: float = 1.0) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.register_buffer("anchors", check_anchors(anchors, len(self.strides)), persistent=False)
        self.num_anchors = self.anchors.shape[0] // len(self.strides)

        self.backbone = Darknet53(width, depth)
        c3, c4, c5 = self.backbone.out_channels
        c128, c256, c512, c1024 = (scale_channels(c, width) for c in (128, 256, 512, 1024))
        # Indexed like the outputs: 0 is stride 8, 2 is stride 32; laterals[k] feeds scale k from k + 1.
        self.blocks = nn.ModuleList([
            DetectionBlock(c128 + c3, c128, c256),
            DetectionBlock(c256 + c4, c256, c512),
            DetectionBlock(c5, c512, c1024),
        ])
        self.laterals = nn.ModuleList([ConvBNAct(c256, c128, 1), ConvBNAct(c512, c256, 1)])
        self.heads = nn.ModuleList([
            YOLOHead(channels, 2 * channels, self.num_anchors, num_classes, stride)
            for channels, stride in zip((c128, c256, c512), self.strides)
        ])

    def forward_features(self, images: Tensor, backbone_hook: Callable[[list[Tensor]], list[Tensor]] | None = None) -> list[Tensor]:
        """The detection blocks' outputs, the heads' inputs, at strides 8, 16, 32:
        ``(B, 3, H, W) -> [(B, 128w, H/8, W/8), (B, 256w, H/16, W/16), (B, 512w, H/32, W/32)]``.
        ``backbone_hook``, if given, maps the backbone's three outputs before the neck uses them
        (ConvLSTM-YOLO's ``placement="neck"``).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(f"image size {height}x{width} is not a multiple of 32; resize or pad the input")
        c3, c4, c5 = self.backbone(images) if backbone_hook is None else backbone_hook(list(self.backbone(images)))
        x5 = self.blocks[2](c5)
        # yolov3.cfg's [route] layers=-1,61: the upsampled map comes before the backbone's.
        x4 = self.blocks[1](torch.cat([F.interpolate(self.laterals[1](x5), scale_factor=2.0), c4], dim=1))
        x3 = self.blocks[0](torch.cat([F.interpolate(self.laterals[0](x4), scale_factor=2.0), c3], dim=1))
        return [x3, x4, x5]

    def forward(self, images: Tensor) -> list[Tensor]:
        return [head(x) for head, x in zip(self.heads, self.forward_features(images))]

    def fuse(self) -> YOLOv3:
        """Fold BatchNorm into the convs for inference (eval mode); returns ``self``."""
        fuse_conv_bn(self)
        return self

    def darknet_layers(self) -> list[DarknetLayer]:
        """The 75 convolutions in yolov3.cfg order: backbone, then stride 32's block and head,
        the lateral 1×1 to stride 16, its block and head, the lateral to stride 8, its block and head.
        """
        layers = conv_layers(self.backbone, "backbone")
        for level in reversed(range(len(self.strides))):
            if level < len(self.strides) - 1:
                layers += conv_layers(self.laterals[level], f"laterals.{level}")
            head = self.heads[level]
            layers += conv_layers(self.blocks[level], f"blocks.{level}")
            layers += conv_layers(head.features, f"heads.{level}.features")
            layers.append(DarknetLayer(f"heads.{level}.final", head.final, None, head.reset_parameters))
        return layers
