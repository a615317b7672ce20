"""3D CNN backbones for YOWO's clip branch, and loading of their Kinetics checkpoints.

Every backbone maps a clip ``(B, 3, T, H, W)`` to features ``(B, C, T', H/32, W/32)``
(:meth:`Backbone3D.forward_features`); calling it averages the ``T'`` axis away, giving
``(B, C, H/32, W/32)`` (YOWO squeezes it, which only works for ``T' = 1``, i.e. up to 16 frames
in the ResNets; the mean equals that there and extends it to longer clips).

Layouts, with module names equal to the originals' so their checkpoints load by name:

- ``resnet18/34/50/101`` and ``resnext101``: the Kinetics 3D-ResNets of Hara et al.
  (kenshohara/3D-ResNets-PyTorch) as YOWO uses them: conv1 7×7×7 with stride (1, 2, 2),
  3×3×3 max-pool with stride 2, layer1..4 (strides 1, 2, 2, 2 in time and space), shortcut
  type "B" (1×1×1 conv + BN where the shape changes) or "A" (subsampling and zero channels,
  which YOWO's ResNet-18 and Hara's ``resnet-18-kinetics.pth`` use). ResNeXt-101 has
  cardinality 32 and bottleneck expansion 2 (output 2048 channels).
- ``mobilenetv2`` and ``shufflenetv2``: the 3D MobileNetV2 and ShuffleNetV2 of Köpüklü et al.,
  "Resource Efficient 3D Convolutional Neural Networks" (okankop/Efficient-3DCNNs), without
  their classifier; ``width`` is their ``width_mult``.
- ``r3d_18``, ``r2plus1d_18``, ``s3d``: torchvision's video models, randomly initialised (no
  download). The two ResNets get a 3×3 spatial max-pool after the stem (stride (1, 2, 2)) so
  that their output is at stride 32 like the others; S3D already is.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import video as tv_video

from restaurant_action.models.layers import scale_channels

logger = logging.getLogger(__name__)

# (kernel, stride, padding) of a temporal reduction; see Backbone3D.temporal_ops.
TemporalOp = tuple[int, int, int]
_HALVE: TemporalOp = (3, 2, 1)
MAX_CLIP_LENGTH = 1024


class Backbone3D(nn.Module):
    """Base of the clip backbones: ``(B, 3, T, H, W) -> (B, out_channels, H/32, W/32)``.

    Attributes:
        name: the factory name (``"resnext101"``…), used in messages.
        out_channels: channels of the output.
        stride: spatial stride of the output (32).
        temporal_ops: ``(kernel, stride, padding)`` of every layer that changes the length of
            the time axis, in order; :meth:`temporal_size` folds them.
        stages: ``{stride: (module name, channels)}`` of the modules whose outputs are at
            spatial strides 8 and 16 (:meth:`forward_with_stage`); empty where not declared.
    """

    stride: ClassVar[int] = 32
    temporal_ops: ClassVar[tuple[TemporalOp, ...]] = ()
    head_prefixes: ClassVar[tuple[str, ...]] = ("fc.", "classifier.")

    def __init__(self, name: str, out_channels: int) -> None:
        super().__init__()
        self.name = name
        self.out_channels = out_channels
        self.stages: dict[int, tuple[str, int]] = {}

    def stage_channels(self, stride: int) -> int:
        """Channels of the features at ``stride`` (8 or 16) that :meth:`forward_with_stage` returns."""
        return self._stage(stride)[1]

    def _stage(self, stride: int) -> tuple[str, int]:
        if stride not in self.stages:
            offered = f"strides {sorted(self.stages)}" if self.stages else "none"
            raise ValueError(f"{self.name} has no declared stage at stride {stride} (offers {offered}); "
                             f"choose another stride or another 3D backbone")
        return self.stages[stride]

    def forward_with_stage(self, clips: Tensor, stride: int) -> tuple[Tensor, Tensor]:
        """The output ``(B, out_channels, H/32, W/32)`` and the features at ``stride``
        ``(B, stage_channels(stride), H/stride, W/stride)``, both averaged over time, in one pass.
        """
        name, _ = self._stage(stride)
        captured: list[Tensor] = []
        handle = self.get_submodule(name).register_forward_hook(lambda module, inputs, output: captured.append(output))
        try:
            output = self(clips)
        finally:
            handle.remove()
        return output, captured[0].mean(dim=2)

    @classmethod
    def temporal_size(cls, frames: int) -> int:
        """Length ``T'`` of the feature time axis for a clip of ``frames`` frames (0: too short)."""
        for kernel, stride, padding in cls.temporal_ops:
            frames = (frames + 2 * padding - kernel) // stride + 1
            if frames < 1:
                return 0
        return frames

    @property
    def min_frames(self) -> int:
        """The shortest clip the backbone accepts (``MAX_CLIP_LENGTH + 1`` if none up to it)."""
        return next((t for t in range(1, MAX_CLIP_LENGTH + 1) if self.temporal_size(t) >= 1), MAX_CLIP_LENGTH + 1)

    def forward_features(self, clips: Tensor) -> Tensor:
        """``(B, 3, T, H, W) -> (B, out_channels, T', H/32, W/32)`` before the time axis is averaged."""
        raise NotImplementedError

    def forward(self, clips: Tensor) -> Tensor:
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(f"{self.name}: expected clips of shape (B, 3, T, H, W), got {tuple(clips.shape)}")
        frames = clips.shape[2]
        if frames < self.min_frames:
            raise ValueError(f"{self.name} needs clips of at least {self.min_frames} frames (its temporal "
                             f"downsampling leaves no frame of a shorter one), got {frames}")
        return self.forward_features(clips).mean(dim=2)

    def checkpoint_key(self, key: str) -> str:
        """Our state-dict key of ``key`` as the original implementation names it (``module.`` and
        the classifier already removed). Identity unless a subclass renames modules.
        """
        return key


def _init_weights(module: nn.Module) -> None:
    """Hara's and Köpüklü's initialisation: He-normal (fan-out) convs, BatchNorm at 1 and 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- Hara's 3D ResNets
class ZeroPadShortcut(nn.Module):
    """Shortcut type "A": subsample by ``stride`` and append zero channels up to ``out_channels``.

    ``(B, C, T, H, W) -> (B, out_channels, ⌈T/s⌉, ⌈H/s⌉, ⌈W/s⌉)``; no parameters.
    """

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        x = x[:, :, ::s, ::s, ::s]
        return F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


def _shortcut(in_channels: int, out_channels: int, stride: int, shortcut: str) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    if shortcut == "A":
        return ZeroPadShortcut(out_channels, stride)
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm3d(out_channels))


class BasicBlock3D(nn.Module):
    """Two 3×3×3 conv-BN (ReLU between and after the sum): ``(B, in, T, H, W) -> (B, planes, T/s, H/s, W/s)``."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, shortcut: str, cardinality: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, planes, stride, shortcut)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck3D(nn.Module):
    """1×1×1 → 3×3×3 (strided; grouped for ResNeXt) → 1×1×1 to ``planes · expansion`` channels.

    ResNet: ``expansion = 4``, middle width ``planes``. ResNeXt (``cardinality > 1``):
    ``expansion = 2``, middle width ``cardinality · (planes // 32)`` in ``cardinality`` groups
    (Hara's ``ResNeXtBottleneck``).
    """

    def __init__(self, in_channels: int, planes: int, stride: int, shortcut: str, cardinality: int = 1) -> None:
        super().__init__()
        expansion = self.expansion_of(cardinality)
        mid = planes if cardinality == 1 else cardinality * (planes // 32)
        self.conv1 = nn.Conv3d(in_channels, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = nn.Conv3d(mid, mid, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, planes * expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, planes * expansion, stride, shortcut)

    @staticmethod
    def expansion_of(cardinality: int) -> int:
        return 4 if cardinality == 1 else 2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet3D(Backbone3D):
    """Hara's 3D ResNet / ResNeXt without the classifier (see the module docstring).

    Args:
        name: factory name, for messages.
        block: :class:`BasicBlock3D` or :class:`Bottleneck3D`.
        layers: blocks per stage, e.g. ``(3, 4, 23, 3)`` for 101 layers.
        width: channel multiplier; stage widths are ``64, 128, 256, 512`` (ResNet) or
            ``128, 256, 512, 1024`` (ResNeXt, rounded to multiples of 32) times ``width``.
        shortcut: ``"B"`` (projection) or ``"A"`` (zero padding, no parameters).
        cardinality: groups of the ResNeXt bottleneck; 1 is a plain ResNet.
    """

    temporal_ops = ((7, 1, 3), _HALVE, _HALVE, _HALVE, _HALVE)  # conv1, maxpool, layer2..4

    def __init__(self, name: str, block: type[BasicBlock3D] | type[Bottleneck3D], layers: tuple[int, int, int, int],
                 width: float = 1.0, shortcut: str = "B", cardinality: int = 1) -> None:
        if shortcut not in ("A", "B"):
            raise ValueError(f"{name}: shortcut must be 'A' or 'B', got {shortcut!r}")
        if cardinality > 1:
            planes = [scale_channels(c, width, divisor=32) for c in (128, 256, 512, 1024)]
            expansion = Bottleneck3D.expansion_of(cardinality)
        else:
            planes = [scale_channels(c, width) for c in (64, 128, 256, 512)]
            expansion = 1 if block is BasicBlock3D else Bottleneck3D.expansion_of(1)
        super().__init__(name, planes[-1] * expansion)
        in_channels = scale_channels(64, width)
        self.conv1 = nn.Conv3d(3, in_channels, 7, (1, 2, 2), 3, bias=False)
        self.bn1 = nn.BatchNorm3d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, 2, 1)
        for index, (channels, repeats) in enumerate(zip(planes, layers)):
            blocks = []
            for repeat in range(repeats):
                stride = 2 if index and not repeat else 1
                blocks.append(block(in_channels, channels, stride, shortcut, cardinality))
                in_channels = channels * expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.stages = {8: ("layer2", planes[1] * expansion), 16: ("layer3", planes[2] * expansion)}
        _init_weights(self)

    def forward_features(self, clips: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(clips))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# --------------------------------------------------------------------------- Köpüklü's efficient 3D CNNs
def _conv_bn_act(in_channels: int, out_channels: int, kernel: int, stride: int | tuple[int, int, int],
                 activation: Callable[[], nn.Module]) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm3d(out_channels), activation())


def _relu6() -> nn.Module:
    return nn.ReLU6(inplace=True)


def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


class InvertedResidual3D(nn.Module):
    """MobileNetV2 block: 1×1×1 expansion (skipped when ``expand_ratio`` is 1), 3×3×3 depthwise
    (strided), linear 1×1×1 projection; residual when the shape is kept.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [nn.Conv3d(in_channels, hidden, 1, bias=False), nn.BatchNorm3d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv3d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm3d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv3d(hidden, out_channels, 1, bias=False), nn.BatchNorm3d(out_channels)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (expand ratio, channels, repeats, stride) of Köpüklü's 3D MobileNetV2.
MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1))


class MobileNetV23D(Backbone3D):
    """Köpüklü's 3D MobileNetV2 features: ``features`` = stem (3×3×3, stride (1, 2, 2)), 17
    inverted residuals, 1×1×1 conv to ``1280`` channels (``1280 · width`` when ``width > 1``).

    Channels are ``int(c · width)`` as in the original, so its Kinetics checkpoints (widths 0.2,
    0.45, 0.7, 1.0) load.
    """

    temporal_ops = (_HALVE,) * 4  # the four stride-2 stages

    def __init__(self, width: float = 1.0) -> None:
        if width <= 0 or int(16 * width) < 1:
            raise ValueError(f"mobilenetv2: width {width} leaves a layer without channels; use width >= 1/16")
        last_channels = int(1280 * width) if width > 1.0 else 1280
        super().__init__("mobilenetv2", last_channels)
        in_channels = int(32 * width)
        layers: list[nn.Module] = [_conv_bn_act(3, in_channels, 3, (1, 2, 2), _relu6)]
        spatial_stride = 2
        for expand_ratio, channels, repeats, stride in MOBILENETV2_SETTINGS:
            if stride == 2 and spatial_stride in (8, 16):  # the stage that ends at spatial_stride is the last one
                self.stages[spatial_stride] = (f"features.{len(layers) - 1}", in_channels)
            spatial_stride *= stride
            for repeat in range(repeats):
                layers.append(InvertedResidual3D(in_channels, int(channels * width), stride if not repeat else 1,
                                                 expand_ratio))
                in_channels = int(channels * width)
        layers.append(_conv_bn_act(in_channels, last_channels, 1, 1, _relu6))
        self.features = nn.Sequential(*layers)
        _init_weights(self)

    def forward_features(self, clips: Tensor) -> Tensor:
        return self.features(clips)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """``(B, C, T, H, W)``: channel ``g · C/groups + i`` moves to ``i · groups + g``."""
    batch, channels = x.shape[:2]
    return x.view(batch, groups, channels // groups, *x.shape[2:]).transpose(1, 2).reshape(x.shape)


class ShuffleUnit3D(nn.Module):
    """ShuffleNetV2 unit. Stride 1: half the channels pass, the other half go through ``branch2``
    (1×1×1, depthwise 3×3×3, 1×1×1). Stride 2: ``branch1`` (depthwise strided, 1×1×1) and
    ``branch2`` both see the whole input. Outputs are concatenated and channel-shuffled.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = out_channels // 2
        branch_in = in_channels if stride == 2 else half
        if stride == 2:
            self.branch1 = nn.Sequential(
                nn.Conv3d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
                nn.BatchNorm3d(in_channels),
                nn.Conv3d(in_channels, half, 1, bias=False), nn.BatchNorm3d(half), nn.ReLU(inplace=True))
        self.branch2 = nn.Sequential(
            nn.Conv3d(branch_in, half, 1, bias=False), nn.BatchNorm3d(half), nn.ReLU(inplace=True),
            nn.Conv3d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm3d(half),
            nn.Conv3d(half, half, 1, bias=False), nn.BatchNorm3d(half), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            passed, processed = x.chunk(2, dim=1)
            out = torch.cat([passed, self.branch2(processed)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)


# Köpüklü's ShuffleNetV2 stage widths (stem, stage 2, 3, 4, last conv) per width_mult.
SHUFFLENETV2_CHANNELS: dict[float, tuple[int, int, int, int, int]] = {
    0.25: (24, 32, 64, 128, 1024),
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 224, 488, 976, 2048),
}
SHUFFLENETV2_REPEATS = (4, 8, 4)


class ShuffleNetV23D(Backbone3D):
    """Köpüklü's 3D ShuffleNetV2 features: ``conv1`` (3×3×3, stride (1, 2, 2)), 3×3×3 max-pool
    (stride 2), 4 + 8 + 4 shuffle units in ``features``, ``conv_last`` 1×1×1.

    ``width`` must be one of :data:`SHUFFLENETV2_CHANNELS` (0.25, 0.5, 1.0, 1.5, 2.0). The
    original's branches are spelled ``banch1``/``banch2``; :meth:`checkpoint_key` maps them.
    """

    temporal_ops = (_HALVE,) * 4  # max-pool and the three stages

    def __init__(self, width: float = 1.0) -> None:
        if width not in SHUFFLENETV2_CHANNELS:
            raise ValueError(f"shufflenetv2: width must be one of {sorted(SHUFFLENETV2_CHANNELS)}, got {width}")
        stem, *stages, last = SHUFFLENETV2_CHANNELS[width]
        super().__init__("shufflenetv2", last)
        self.conv1 = _conv_bn_act(3, stem, 3, (1, 2, 2), _relu)
        self.maxpool = nn.MaxPool3d(3, 2, 1)
        units: list[nn.Module] = []
        in_channels = stem
        for stage_stride, channels, repeats in zip((8, 16, 32), stages, SHUFFLENETV2_REPEATS):
            for repeat in range(repeats):
                units.append(ShuffleUnit3D(in_channels, channels, 1 if repeat else 2))
                in_channels = channels
            if stage_stride < 32:
                self.stages[stage_stride] = (f"features.{len(units) - 1}", channels)
        self.features = nn.Sequential(*units)
        self.conv_last = _conv_bn_act(in_channels, last, 1, 1, _relu)
        _init_weights(self)

    def checkpoint_key(self, key: str) -> str:
        return re.sub(r"\.banch([12])\.", r".branch\1.", key)

    def forward_features(self, clips: Tensor) -> Tensor:
        return self.conv_last(self.features(self.maxpool(self.conv1(clips))))


# --------------------------------------------------------------------------- torchvision's video models
class TorchvisionVideoResNet(Backbone3D):
    """torchvision's ``r3d_18`` / ``r2plus1d_18`` (random init) without pooling and ``fc``, plus a
    3×3 spatial max-pool (stride (1, 2, 2)) after the stem for stride 32. Output 512 channels.
    State-dict keys are torchvision's (``stem.*``, ``layer1.*``…).
    """

    temporal_ops = (_HALVE,) * 3  # layer2..4

    def __init__(self, name: str) -> None:
        super().__init__(name, 512)
        network = getattr(tv_video, name)(weights=None)
        self.stem = network.stem
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.layer1, self.layer2, self.layer3, self.layer4 = (network.layer1, network.layer2, network.layer3,
                                                              network.layer4)
        self.stages = {8: ("layer2", 128), 16: ("layer3", 256)}

    def forward_features(self, clips: Tensor) -> Tensor:
        x = self.pool(self.stem(clips))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class TorchvisionS3D(Backbone3D):
    """torchvision's S3D (random init) without its classifier: ``features`` at stride 32,
    1024 channels; its last max-pool (2×2×2, no padding) needs clips of at least 5 frames.
    """

    temporal_ops = ((7, 2, 3), _HALVE, (2, 2, 0))

    def __init__(self) -> None:
        super().__init__("s3d", 1024)
        self.features = tv_video.s3d(weights=None).features

    def forward_features(self, clips: Tensor) -> Tensor:
        return self.features(clips)


# --------------------------------------------------------------------------- factory
RESNET_LAYOUTS: dict[str, tuple[type[BasicBlock3D] | type[Bottleneck3D], tuple[int, int, int, int], int]] = {
    "resnet18": (BasicBlock3D, (2, 2, 2, 2), 1),
    "resnet34": (BasicBlock3D, (3, 4, 6, 3), 1),
    "resnet50": (Bottleneck3D, (3, 4, 6, 3), 1),
    "resnet101": (Bottleneck3D, (3, 4, 23, 3), 1),
    "resnext101": (Bottleneck3D, (3, 4, 23, 3), 32),
}
OTHER_BACKBONES: dict[str, Callable[[float], Backbone3D]] = {
    "mobilenetv2": MobileNetV23D,
    "shufflenetv2": ShuffleNetV23D,
    "r3d_18": lambda width: TorchvisionVideoResNet("r3d_18"),
    "r2plus1d_18": lambda width: TorchvisionVideoResNet("r2plus1d_18"),
    "s3d": lambda width: TorchvisionS3D(),
}
BACKBONE_3D_NAMES = (*RESNET_LAYOUTS, *OTHER_BACKBONES)
TORCHVISION_BACKBONES = ("r3d_18", "r2plus1d_18", "s3d")


def build_backbone3d(name: str, width: float = 1.0, *, shortcut: str | None = None) -> Backbone3D:
    """Build a clip backbone by name.

    Args:
        name: one of :data:`BACKBONE_3D_NAMES`: ``resnet18``, ``resnet34``, ``resnet50``,
            ``resnet101``, ``resnext101``, ``mobilenetv2``, ``shufflenetv2``, ``r3d_18``,
            ``r2plus1d_18``, ``s3d``.
        width: channel multiplier (``width_mult`` of the efficient nets; one of 0.25, 0.5, 1.0,
            1.5, 2.0 for ShuffleNetV2; 1.0 only for torchvision's models).
        shortcut: ``"B"`` (default) or ``"A"``, for the ResNets and ResNeXt only.

    Returns:
        a :class:`Backbone3D`: ``(B, 3, T, H, W) -> (B, out_channels, H/32, W/32)``.
    """
    if name in RESNET_LAYOUTS:
        block, layers, cardinality = RESNET_LAYOUTS[name]
        return ResNet3D(name, block, layers, width, shortcut or "B", cardinality)
    if name not in OTHER_BACKBONES:
        raise ValueError(f"unknown 3D backbone {name!r}; choose one of {', '.join(BACKBONE_3D_NAMES)}")
    if shortcut is not None:
        raise ValueError(f"{name}: shortcut is an option of the ResNets only")
    if name in TORCHVISION_BACKBONES and width != 1.0:
        raise ValueError(f"{name} is torchvision's fixed-width model: width must be 1.0, got {width}")
    return OTHER_BACKBONES[name](width)


# --------------------------------------------------------------------------- checkpoints
def read_state_dict(source: str | Path | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The tensors of a checkpoint file (or mapping), with a leading ``module.`` (DataParallel) removed.

    A file holding ``{"state_dict": ..., ...}`` (Hara's, Köpüklü's and YOWO's training scripts)
    or a bare state dict is read with ``torch.load(weights_only=True)``: no code in it runs.
    """
    if isinstance(source, Mapping):
        checkpoint: object = source
        where = "state dict"
    else:
        where = str(source)
        try:
            checkpoint = torch.load(source, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
            raise ValueError(f"{where}: cannot be read as a plain PyTorch checkpoint ({error}); if you trust it, "
                             "load it with torch.load(..., weights_only=False) and pass its state dict") from None
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise ValueError(f"{where}: expected a state dict (or a dict with 'state_dict') of tensors")
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


def load_mapped_state(module: nn.Module, mapped: Mapping[str, tuple[str, Tensor]], source: str) -> None:
    """Load ``mapped`` (our key → (the checkpoint's key, tensor)) into ``module``, strictly.

    Every key of ``module`` must be given except BatchNorm's ``num_batches_tracked`` (absent
    from checkpoints of old PyTorch versions), no other key may be, and every shape must
    match; otherwise ``ValueError`` naming the keys, and ``module`` is untouched.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    unexpected = [original for key, (original, _) in mapped.items() if key not in own]
    if missing or unexpected:
        raise ValueError(f"{source}: does not fit {type(module).__name__}: {len(missing)} missing keys "
                         f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]} (another "
                         f"architecture, width or shortcut type?)")
    for key, (original, tensor) in mapped.items():
        if tensor.shape != own[key].shape:
            raise ValueError(f"{source}: {original} has shape {tuple(tensor.shape)} but the model's {key} has "
                             f"{tuple(own[key].shape)} (another width, class count or architecture?)")
    module.load_state_dict({**own, **{key: tensor for key, (_, tensor) in mapped.items()}})


def load_kinetics_3d(backbone: Backbone3D, source: str | Path | Mapping[str, Tensor]) -> None:
    """Load a Kinetics-pretrained checkpoint into ``backbone`` (in place).

    Reads Hara's 3D-ResNet/ResNeXt files (``resnext-101-kinetics.pth``…: keys
    ``module.conv1.weight``, ``module.layer1.0.conv1.weight``…), Köpüklü's efficient-3D files
    (``module.features.*``, plus ``module.conv1/conv_last.*`` for ShuffleNetV2) and torchvision
    state dicts of the wrapped models. The classifier (``fc.*``, ``classifier.*``) is dropped.

    Raises:
        ValueError: unreadable file, keys that do not fit (naming them), or a shape mismatch
            (naming the checkpoint's key and both shapes); ``backbone`` is untouched then.
    """
    state = read_state_dict(source)
    mapped = {backbone.checkpoint_key(key): (key, tensor) for key, tensor in state.items()
              if not key.startswith(backbone.head_prefixes)}
    dropped = len(state) - len(mapped)
    load_mapped_state(backbone, mapped, str(source) if not isinstance(source, Mapping) else "state dict")
    logger.info("loaded %d tensors into %s (dropped %d of the classifier)", len(mapped), backbone.name, dropped)
