"""Darknet-53 (YOLOv3) and Darknet-19 (YOLOv2) backbones and darknet ``.weights`` files.

A ``.weights`` file is a header — ``major, minor, revision`` (int32 each), then ``seen``
(int64 when ``major * 10 + minor >= 2``, else int32) — followed by raw float32 values, layer
after layer in cfg order: for a conv with BatchNorm, the BN bias, BN weight, running mean,
running variance, then the conv weight; for a conv without, the conv bias then its weight.
Nothing in the file says where a layer ends, so a model lists its convolutions in cfg order
(``darknet_layers()``) and the reader checks the sizes against it.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Callable, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from restaurant_action.models.layers import ConvBNAct, ResidualBlock, scale_channels, scale_depth

logger = logging.getLogger(__name__)

DARKNET53_STAGE_BLOCKS = (1, 2, 8, 8, 4)


class Darknet53(nn.Module):
    """Darknet-53, the YOLOv3 backbone (its 52 convolutions, without the classifier).

    ``(B, 3, H, W) -> (c3, c4, c5)``, the outputs of the last three residual stages at
    strides 8, 16 and 32, with ``out_channels`` = ``(256, 512, 1024)`` scaled by ``width``.

    Args:
        width: channel multiplier (see :func:`scale_channels`); 1.0 is darknet's network.
        depth: multiplier of the residual blocks per stage (1, 2, 8, 8, 4), at least one each.
    """

    strides = (8, 16, 32)

    def __init__(self, width: float = 1.0, depth: float = 1.0) -> None:
        super().__init__()
        in_channels = scale_channels(32, width)
        self.stem = ConvBNAct(3, in_channels, 3)
        self.stages = nn.ModuleList()
        for index, repeats in enumerate(DARKNET53_STAGE_BLOCKS):
            channels = scale_channels(64 << index, width)
            hidden = scale_channels(32 << index, width)
            blocks = [ResidualBlock(channels, hidden) for _ in range(scale_depth(repeats, depth))]
            self.stages.append(nn.Sequential(ConvBNAct(in_channels, channels, 3, stride=2), *blocks))
            in_channels = channels
        self.out_channels = tuple(scale_channels(c, width) for c in (256, 512, 1024))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.stem(images)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features[2], features[3], features[4]

    def darknet_layers(self) -> list[DarknetLayer]:
        """The 52 convolutions in cfg order (those of ``darknet53.conv.74``)."""
        return conv_layers(self)


class Reorg(nn.Module):
    """Darknet's ``[reorg]`` (YOLOv2 passthrough): ``(B, C, H, W) -> (B, C·s², H/s, W/s)``.

    Reproduces darknet's ``reorg_cpu(..., forward=0)`` element for element — not a plain
    space-to-depth (``pixel_unshuffle``) — so weights trained in darknet see the channel order
    they were trained with: the input's memory is read as ``(C/s², H·s, W·s)``, and
    ``out[(dy·s + dx)·C/s² + c, j, i] = x_view[c, j·s + dy, i·s + dx]``, read back as
    ``(C·s², H/s, W/s)``.
    """

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        s = self.stride
        if channels % (s * s) or height % s or width % s:
            raise ValueError(f"Reorg(stride={s}) needs channels divisible by {s * s} and a size divisible by {s}, "
                             f"got {tuple(x.shape)}")
        x = x.reshape(batch, channels // (s * s), height, s, width, s)
        return x.permute(0, 3, 5, 1, 2, 4).reshape(batch, channels * s * s, height // s, width // s)


def _darknet19_stride16(width: float) -> nn.Sequential:
    """Darknet-19's convolutions 1-13 with their max-pools: ``(B, 3, H, W) -> (B, 512w, H/16, W/16)``."""
    layers: list[nn.Module] = []
    in_channels = 3
    # (out channels of the 3×3 convs, number of 3×3 convs) per stage; 1×1 convs halve in between.
    for stage, (channels, repeats) in enumerate(((32, 1), (64, 1), (128, 2), (256, 2), (512, 3))):
        if stage:
            layers.append(nn.MaxPool2d(2, 2))
        for repeat in range(repeats):
            if repeat:
                layers.append(ConvBNAct(scale_channels(channels, width), scale_channels(channels // 2, width), 1))
                in_channels = scale_channels(channels // 2, width)
            layers.append(ConvBNAct(in_channels, scale_channels(channels, width), 3))
            in_channels = scale_channels(channels, width)
    return nn.Sequential(*layers)


class Darknet19(nn.Module):
    """The YOLOv2 network of darknet's ``yolo.cfg`` up to its region layer: Darknet-19 plus the
    passthrough (``reorg``) neck, used as YOWO's 2D backbone.

    ``(B, 3, H, W) -> (B, out_channels, H/32, W/32)``; H and W must be multiples of 32.
    Without ``out_channels`` the output is the 1024·width features after the passthrough
    merge; with it, a final 1×1 conv with bias (e.g. 425 for the COCO ``yolo.cfg``, whose
    ``yolo.weights`` this then reads in full). The first 18 convs are ``darknet19_448.conv.23``.

    Args:
        width: channel multiplier (see :func:`scale_channels`).
        out_channels: channels of an optional final linear 1×1 conv.
    """

    stride = 32

    def __init__(self, width: float = 1.0, out_channels: int | None = None) -> None:
        super().__init__()
        c512, c1024, c64 = (scale_channels(c, width) for c in (512, 1024, 64))
        self.stride16 = _darknet19_stride16(width)
        self.stride32 = nn.Sequential(
            nn.MaxPool2d(2, 2),
            ConvBNAct(c512, c1024, 3), ConvBNAct(c1024, c512, 1),
            ConvBNAct(c512, c1024, 3), ConvBNAct(c1024, c512, 1),
            ConvBNAct(c512, c1024, 3),
        )
        self.neck = nn.Sequential(ConvBNAct(c1024, c1024, 3), ConvBNAct(c1024, c1024, 3))
        self.passthrough = nn.Sequential(ConvBNAct(c512, c64, 1), Reorg(2))
        self.merge = ConvBNAct(4 * c64 + c1024, c1024, 3)
        self.output = nn.Conv2d(c1024, out_channels, 1) if out_channels else None
        self.out_channels = out_channels or c1024

    def forward(self, images: Tensor) -> Tensor:
        self._check_size(images)
        return self._from_stride16(self.stride16(images))

    def forward_with_stage(self, images: Tensor, stride: int) -> tuple[Tensor, Tensor]:
        """The output ``(B, out_channels, H/32, W/32)`` and the features at ``stride`` (8 or 16;
        the last layer at that resolution) ``(B, stage_channels(stride), H/stride, W/stride)``.
        """
        self._check_size(images)
        split = self._stage_end(stride)
        stage = self.stride16[:split](images)
        return self._from_stride16(self.stride16[split:](stage)), stage

    def _check_size(self, images: Tensor) -> None:
        if images.shape[-2] % self.stride or images.shape[-1] % self.stride:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of {self.stride}")

    def _from_stride16(self, x16: Tensor) -> Tensor:
        """The output from the stride-16 features."""
        x32 = self.neck(self.stride32(x16))
        # yolo.cfg's [route] layers=-1,-4: the reorganised passthrough comes first.
        x = self.merge(torch.cat([self.passthrough(x16), x32], dim=1))
        return self.output(x) if self.output is not None else x

    def stage_channels(self, stride: int) -> int:
        """Channels of :meth:`forward_with_stage`'s features at ``stride`` (8 or 16)."""
        split = self._stage_end(stride)
        convs = [layer for layer in self.stride16[:split] if isinstance(layer, ConvBNAct)]
        return convs[-1].conv.out_channels

    def _stage_end(self, stride: int) -> int:
        """Number of leading ``stride16`` layers whose output is at ``stride`` (the layers before
        the max-pool that leaves it).
        """
        pools = [index for index, layer in enumerate(self.stride16) if isinstance(layer, nn.MaxPool2d)]
        ends = {2 ** (number + 1): end for number, end in enumerate([*pools[1:], len(self.stride16)])}
        if stride not in (8, 16):
            raise ValueError(f"Darknet-19 offers stage features at strides 8 and 16, not {stride}")
        return ends[stride]

    def darknet_layers(self) -> list[DarknetLayer]:
        """The convolutions in ``yolo.cfg`` order (22, or 23 with ``out_channels``)."""
        layers = conv_layers(self)
        if self.output is not None:
            layers[-1] = layers[-1]._replace(reset=self.output.reset_parameters)
        return layers


class DarknetLayer(NamedTuple):
    """One darknet ``[convolutional]`` layer and where it lives in the model.

    Attributes:
        name: the conv's qualified module name, e.g. ``"backbone.stages.2.1.conv2"``.
        conv: the convolution.
        bn: its BatchNorm, or None for a linear conv with bias.
        reset: for a prediction conv whose width depends on the number of classes, the function
            that re-initialises it when a file was trained for another class count.
    """

    name: str
    conv: nn.Conv2d
    bn: nn.BatchNorm2d | None
    reset: Callable[[], None] | None = None

    def tensors(self) -> list[Tensor]:
        """The layer's tensors in file order."""
        if self.bn is None:
            return [self.conv.bias, self.conv.weight]
        return [self.bn.bias, self.bn.weight, self.bn.running_mean, self.bn.running_var, self.conv.weight]

    @property
    def num_floats(self) -> int:
        """Number of float32 values the layer takes in a ``.weights`` file."""
        return sum(t.numel() for t in self.tensors())


class DarknetModel(Protocol):
    """A network that lists its convolutions in darknet cfg order."""

    def darknet_layers(self) -> list[DarknetLayer]: ...


class DarknetHeader(NamedTuple):
    """The header of a ``.weights`` file; ``seen`` is the number of images trained on."""

    major: int
    minor: int
    revision: int
    seen: int


def conv_layers(module: nn.Module, prefix: str = "") -> list[DarknetLayer]:
    """The :class:`ConvBNAct` blocks and bare ``nn.Conv2d`` of ``module`` in registration order."""
    if isinstance(module, ConvBNAct):
        if module.fused:
            raise ValueError(f"{prefix or type(module).__name__}: BatchNorm is fused into the conv; "
                             "darknet weights need the unfused model")
        return [DarknetLayer(prefix, module.conv, module.bn)]
    if isinstance(module, nn.Conv2d):
        if module.bias is None:
            raise ValueError(f"{prefix}: a conv without BatchNorm needs a bias to be a darknet layer")
        return [DarknetLayer(prefix, module, None)]
    layers = []
    for name, child in module.named_children():
        layers += conv_layers(child, f"{prefix}.{name}" if prefix else name)
    return layers


def _select_layers(model: DarknetModel, num_layers: int | None) -> list[DarknetLayer]:
    layers = model.darknet_layers()
    if num_layers is None:
        return layers
    if not 1 <= num_layers <= len(layers):
        raise ValueError(f"num_layers must be in 1..{len(layers)} for {type(model).__name__}, got {num_layers}")
    return layers[:num_layers]


def _read_weights_file(path: Path) -> tuple[DarknetHeader, np.ndarray, int]:
    """Header, the whole float32 values and the number of stray bytes after them."""
    file_size = path.stat().st_size
    too_short = ValueError(f"{path}: {file_size} bytes is too short for a darknet .weights header")
    with open(path, "rb") as file:
        head = file.read(20)
        if len(head) < 12:
            raise too_short
        major, minor, revision = struct.unpack_from("<3i", head)
        seen_format = "<q" if major * 10 + minor >= 2 else "<i"
        header_size = 12 + struct.calcsize(seen_format)
        if file_size < header_size:
            raise too_short
        (seen,) = struct.unpack_from(seen_format, head, 12)
        file.seek(header_size)
        body = bytearray(file_size - header_size)  # writable, so torch.from_numpy can share it
        file.readinto(body)
    num_floats, stray_bytes = divmod(len(body), 4)
    floats = np.frombuffer(body, dtype="<f4", count=num_floats)
    return DarknetHeader(major, minor, revision, seen), floats, stray_bytes


def _file_output_channels(layers: list[DarknetLayer], num_floats: int) -> int | None:
    """Output channels of the prediction convs if the file differs from the model only in those."""
    outputs = [layer for layer in layers if layer.reset is not None]
    if not outputs:
        return None
    fixed = sum(layer.num_floats for layer in layers if layer.reset is None)
    # A prediction conv holds out · (fan_in + 1) values: its weight and its bias.
    per_channel = sum(layer.conv.weight[0].numel() + 1 for layer in outputs)
    channels, remainder = divmod(num_floats - fixed, per_channel)
    return channels if channels > 0 and remainder == 0 else None


def load_darknet_weights(model: DarknetModel, path: str | Path, *, num_layers: int | None = None) -> DarknetHeader:
    """Read a darknet ``.weights`` file into ``model`` (in place) and return its header.

    Without ``num_layers`` the file must hold every layer of ``model`` — except that when it
    differs only in the width of the prediction convs (a detector trained for another number of
    classes, e.g. COCO's ``yolov3.weights`` into a 24-class YOLOv3), those convs are skipped and
    re-initialised, with a warning. With ``num_layers`` only the first ``num_layers`` convs are
    read, as from darknet's partial files (``darknet53.conv.74`` is the first 52 convs of
    YOLOv3); later values in the file are ignored. ``load_darknet_weights(yolo.backbone, path)``
    reads a backbone-only file too.

    Raises:
        ValueError: naming the conv (index in cfg order and module name) where the file runs
            out, or saying how many values are left over; the model is untouched then.
    """
    path = Path(path)
    layers = _select_layers(model, num_layers)
    header, floats, stray_bytes = _read_weights_file(path)
    file_out_channels = None
    if num_layers is None and floats.size != sum(layer.num_floats for layer in layers):
        file_out_channels = _file_output_channels(layers, floats.size)

    plan: list[tuple[DarknetLayer, int, bool]] = []
    offset = 0
    for index, layer in enumerate(layers):
        skip = file_out_channels is not None and layer.reset is not None
        size = file_out_channels * (layer.conv.weight[0].numel() + 1) if skip else layer.num_floats
        if offset + size > floats.size:
            raise ValueError(
                f"{path}: conv {index} ({layer.name}) needs {size} float32 values but only {floats.size - offset} "
                f"remain: the file is truncated or was written for another architecture")
        plan.append((layer, offset, skip))
        offset += size
    left_over = floats.size - offset
    if num_layers is None and (left_over or stray_bytes):
        raise ValueError(
            f"{path}: {left_over} float32 values and {stray_bytes} bytes are left after the last conv "
            f"{len(layers) - 1} ({layers[-1].name}): the file was written for a larger network")
    if left_over:
        logger.info("%s: read the first %d convs, ignored %d later values", path, len(layers), left_over)

    with torch.no_grad():
        for layer, start, skip in plan:
            if skip:
                layer.reset()
                continue
            for tensor in layer.tensors():
                tensor.copy_(torch.from_numpy(floats[start:start + tensor.numel()]).view_as(tensor))
                start += tensor.numel()
    if file_out_channels is not None:
        skipped = [layer.name for layer, _, skip in plan if skip]
        logger.warning("%s: the prediction convs have %d output channels in the file, not %s (another number "
                       "of classes): re-initialised %s", path, file_out_channels,
                       sorted({layer.conv.out_channels for layer, _, skip in plan if skip}), ", ".join(skipped))
    return header


def save_darknet_weights(model: DarknetModel, path: str | Path, *, seen: int = 0,
                         num_layers: int | None = None) -> None:
    """Write ``model`` (or its first ``num_layers`` convs) as a darknet ``.weights`` file.

    The header is version 0.2.0 with ``seen`` as int64 (20 bytes), as darknet writes today.
    """
    layers = _select_layers(model, num_layers)
    with open(path, "wb") as file:
        file.write(struct.pack("<3iq", 0, 2, 0, seen))
        for layer in layers:
            for tensor in layer.tensors():
                file.write(tensor.detach().to("cpu", torch.float32).numpy().astype("<f4").tobytes())
