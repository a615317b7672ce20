"""ConvLSTM-YOLO: YOLOv3 with a ConvLSTM in each detection head, carried over ordered clips.

Each of the three heads becomes ``final(f) + project(ConvLSTM(f))`` where ``f`` is the head's
3×3 feature map: the ConvLSTM sits before the final 1×1 conv (the study's placement) and the
final conv sees ``cat(f, h)``, its ported weights on ``f`` and new, zero-initialised weights
(``project``) on the LSTM's hidden state ``h``. An untrained ConvLSTM-YOLO ported from a YOLOv3
therefore gives exactly that YOLOv3's outputs, and training starts from its mAP rather than from
noise. The LSTM reaches the outputs through its own weights, not through the ported conv: a
YOLOv3 that cannot tell two motion-only classes apart has near-identical final-conv rows for
them, so a correction added to ``f`` would move both logits alike. ``placement="neck"`` puts the cells on the backbone's stride-8/16/32 outputs
instead ("earlier in the network", as the study proposed), as ``f + project(ConvLSTM(f))``.
By default each ConvLSTM reads a 1×1 reduction of ``f`` to a quarter of its channels, and the
change of those since the lane's previous frame.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from restaurant_action.models.convlstm import ConvLSTM, ConvLSTMState
from restaurant_action.models.yolov3 import YOLOv3

PLACEMENTS = ("head", "neck")


class BranchState(NamedTuple):
    """What a :class:`ConvLSTMBranch` carries from one subsequence to the next.

    Attributes:
        lstm: the ConvLSTM's state, one ``(h, c)`` per layer.
        previous: ``(B, C, H, W)`` the features the ConvLSTM read at each lane's last frame
            (after ``reduce``, if any; ``None`` without ``temporal_difference``).
        started: ``(B,)`` bool, lanes whose ``previous`` belongs to the clip they play (false
            after a reset: the clip's first frame then has a zero difference).
    """

    lstm: ConvLSTMState
    previous: Tensor | None
    started: Tensor | None


RecurrentState = list[BranchState | None]


class ConvLSTMBranch(nn.Module):
    """``project(ConvLSTM(x))`` with ``project`` a zero-initialised 1×1 conv: the LSTM's
    contribution, zero at start, added to the features it reads (``neck``) or to a head's
    outputs (``head``).

    With ``temporal_difference`` the ConvLSTM reads ``cat(x_t, x_t − x_{t−1})``: each frame's
    features and their change since the lane's previous frame (carried across subsequences;
    zero on a clip's first frame). The motion-only classes are told apart by that change; a
    ConvLSTM reading ``x_t`` alone did not learn to form it (docs/recurrent.md).

    With ``reduced_channels`` a 1×1 conv (``reduce``) first maps ``x`` to that many channels and
    the ConvLSTM reads those (and their difference): the ConvLSTM's input convolution, its
    costliest part, then reads ``2·reduced`` instead of ``2·channels`` channels per tap.

    Args:
        channels: channels of ``x``.
        hidden_channels: ConvLSTM hidden channels.
        out_channels: channels of the contribution.
        kernel_size, num_layers, dropout, norm: ConvLSTM options.
        temporal_difference: also feed the frame-to-frame difference of ``x``.
        reduced_channels: channels of the 1×1 reduction before the ConvLSTM (``None``: none).
    """

    def __init__(self, channels: int, hidden_channels: int, out_channels: int, kernel_size: int = 3, num_layers: int = 1,
                 dropout: float = 0.0, norm: str | None = None, temporal_difference: bool = True,
                 reduced_channels: int | None = None) -> None:
        super().__init__()
        self.temporal_difference = temporal_difference
        self.reduce = nn.Conv2d(channels, reduced_channels, 1) if reduced_channels is not None else None
        read = reduced_channels if reduced_channels is not None else channels
        inputs = 2 * read if temporal_difference else read
        self.lstm = ConvLSTM(inputs, hidden_channels, kernel_size, num_layers=num_layers, dropout=dropout, norm=norm)
        self.project = nn.Conv2d(hidden_channels, out_channels, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: Tensor, state: BranchState | None) -> tuple[Tensor, BranchState]:
        """``x (B, T, C, H, W)`` → ``(project(h) (B·T, out_channels, H, W), state)``."""
        lstm_state = state.lstm if state is not None else None
        if self.reduce is not None:
            x = self.reduce(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        if not self.temporal_difference:
            hidden, lstm_state = self.lstm(x, lstm_state)
            return self.project(hidden.flatten(0, 1)), BranchState(lstm_state, None, None)
        first = x[:, 0]
        if state is not None and state.previous is not None:
            first = torch.where(state.started.view(-1, 1, 1, 1), state.previous, first)
        previous = torch.cat([first.unsqueeze(1), x[:, :-1]], dim=1)
        hidden, lstm_state = self.lstm(torch.cat([x, x - previous], dim=2), lstm_state)
        started = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return self.project(hidden.flatten(0, 1)), BranchState(lstm_state, x[:, -1], started)

    def reset_state(self, state: BranchState, mask: Tensor) -> BranchState:
        """Zero the LSTM state of the lanes where ``mask (B,)`` is true and forget their previous frame."""
        started = state.started & ~mask.to(state.started.device) if state.started is not None else None
        return BranchState(self.lstm.reset_state(state.lstm, mask), state.previous, started)

    def detach_state(self, state: BranchState) -> BranchState:
        """The state cut from the autograd graph (truncated BPTT)."""
        previous = state.previous.detach() if state.previous is not None else None
        return BranchState(self.lstm.detach_state(state.lstm), previous, state.started)


def _scaled(channels: int, ratio: float) -> int:
    """``ratio`` of ``channels``, rounded, at least 8."""
    return max(8, int(round(channels * ratio)))


class ConvLSTMYOLO(nn.Module):
    """YOLOv3 with residual ConvLSTMs, over sequences of frames.

    ``forward(frames (B, T, 3, H, W), state) -> (outputs, state)`` where ``outputs`` are the
    YOLOv3 outputs of all ``B·T`` frames, ``(B·T, A, H/s, W/s, 5 + C)`` per scale, frame ``b·T + t``
    being lane ``b`` at step ``t``. Layers outside the LSTMs see the ``B·T`` frames as one batch;
    the LSTMs see ``B`` sequences.

    Args:
        num_classes, anchors, width, depth: as for ``YOLOv3``.
        placement: ``"head"`` (before each head's final 1×1 conv) or ``"neck"`` (on the
            backbone's three outputs).
        hidden_ratio: ConvLSTM hidden channels as a fraction of the channels it sits on.
        kernel_size, num_layers, dropout, norm: ConvLSTM options.
        temporal_difference: the ConvLSTMs also read the frame-to-frame difference of their
            input features (see :class:`ConvLSTMBranch`).
        input_ratio: channels of a 1×1 reduction of the features before each ConvLSTM, as a
            fraction of the channels it sits on (``None``: the ConvLSTMs read the features
            themselves). The default quarter cuts the ConvLSTMs' input convolutions, their
            costliest part, to a quarter (docs/recurrent.md).
    """

    def __init__(self, num_classes: int, anchors: Tensor | Sequence[Sequence[float]], width: float = 1.0, depth: float = 1.0,
                 placement: str = "head", hidden_ratio: float = 0.25, kernel_size: int = 3, num_layers: int = 1,
                 dropout: float = 0.0, norm: str | None = None, temporal_difference: bool = True,
                 input_ratio: float | None = 0.25) -> None:
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.placement = placement
        self.yolo = YOLOv3(num_classes, anchors, width, depth)
        if placement == "head":
            sizes = [(head.final.in_channels, head.final.out_channels) for head in self.yolo.heads]
        else:
            sizes = [(c, c) for c in self.yolo.backbone.out_channels]
        if not hidden_ratio > 0.0:
            raise ValueError(f"hidden_ratio must be > 0, got {hidden_ratio}")
        if input_ratio is not None and not 0.0 < input_ratio <= 1.0:
            raise ValueError(f"input_ratio must be in (0, 1] (a reduction) or None, got {input_ratio}")
        self.recurrent = nn.ModuleList(
            ConvLSTMBranch(c, _scaled(c, hidden_ratio), out, kernel_size, num_layers, dropout, norm, temporal_difference,
                           _scaled(c, input_ratio) if input_ratio is not None else None)
            for c, out in sizes
        )

    @property
    def anchors(self) -> Tensor:
        """``(9, 2)`` anchors in pixels, as ``YOLOv3.anchors``."""
        return self.yolo.anchors

    @property
    def strides(self) -> tuple[int, ...]:
        """Strides of the outputs."""
        return self.yolo.strides

    def forward(self, frames: Tensor, state: RecurrentState | None = None) -> tuple[list[Tensor], RecurrentState]:
        if frames.ndim != 5:
            raise ValueError(f"expected frames of shape (B, T, 3, H, W), got {tuple(frames.shape)}")
        batch, steps = frames.shape[:2]
        state = state if state is not None else [None] * len(self.recurrent)
        new_state: RecurrentState = []

        def recur(level: int, x: Tensor) -> Tensor:
            contribution, level_state = self.recurrent[level](x.unflatten(0, (batch, steps)), state[level])
            new_state.append(level_state)
            return contribution

        images = frames.flatten(0, 1)
        if self.placement == "head":
            features = self.yolo.forward_features(images)
            outputs = []
            for k, (head, f) in enumerate(zip(self.yolo.heads, features)):
                head_features = head.features(f)
                outputs.append(head.layout(head.final(head_features) + recur(k, head_features)))
        else:
            features = self.yolo.forward_features(images, backbone_hook=lambda maps: [m + recur(k, m) for k, m in enumerate(maps)])
            outputs = [head(f) for head, f in zip(self.yolo.heads, features)]
        return outputs, new_state

    def reset_state(self, state: RecurrentState | None, mask: Tensor) -> RecurrentState | None:
        """Zero the lanes where ``mask (B,)`` is true (a new clip starts there)."""
        if state is None:
            return None
        return [module.reset_state(level, mask) for module, level in zip(self.recurrent, state)]

    def detach_state(self, state: RecurrentState | None) -> RecurrentState | None:
        """Cut the graph through the state (truncated backpropagation through time)."""
        if state is None:
            return None
        return [module.detach_state(level) for module, level in zip(self.recurrent, state)]

    def load_yolov3(self, yolo_state: dict[str, Tensor]) -> None:
        """Port a YOLOv3's weights (a ``YOLOv3.state_dict()``); the ConvLSTMs keep their initialisation.

        Raises:
            ValueError: the state does not fit (other width, depth or class count), naming the key.
        """
        own = self.yolo.state_dict()
        for key, value in yolo_state.items():
            if key not in own:
                raise ValueError(f"YOLOv3 weight {key!r} has no place in this ConvLSTM-YOLO")
            if own[key].shape != value.shape:
                raise ValueError(f"YOLOv3 weight {key!r} has shape {tuple(value.shape)}, this model needs {tuple(own[key].shape)}")
        missing = sorted(set(own) - set(yolo_state))
        if missing:
            raise ValueError(f"the YOLOv3 weights lack {len(missing)} tensors, e.g. {missing[0]!r}")
        self.yolo.load_state_dict(yolo_state)

    def ported_parameters(self) -> list[nn.Parameter]:
        """Parameters that come from YOLOv3 (frozen during the first epochs, optionally)."""
        return list(self.yolo.parameters())
