"""The networks as a predictor runs them: float images in, decoded predictions out, recurrent state
as explicit tensors. These are what ``export`` writes to ONNX or TorchScript, and what the eager
backend calls, so both backends run the same graph.

Every detector returns ``boxes (N, P, 4)`` xyxy pixels of the letterboxed input,
``objectness (N, P)`` and ``class_probs (N, P, C)``: the input of
:func:`~restaurant_action.models.postprocess.select_detections`, which runs outside the graph
(torchvision's NMS).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from restaurant_action.models.postprocess import decode_outputs
from restaurant_action.models.recurrent_yolo import BranchState, ConvLSTMYOLO, RecurrentState
from restaurant_action.models.yolov3 import YOLOv3
from restaurant_action.models.yowo import YOWO


class FrameDetector(nn.Module):
    """YOLOv3 with its decoding: ``images (N, 3, S, S)`` float in ``[0, 1]`` → boxes, objectness, class probabilities."""

    def __init__(self, network: YOLOv3) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return decode_outputs(self.network(images), self.network.anchors, self.network.strides)


class ClipDetector(nn.Module):
    """YOWO with its decoding (box refiner included): ``clips (N, T, 3, S, S)`` float in ``[0, 1]``,
    key frame last → boxes, objectness, class probabilities of the key frames."""

    def __init__(self, network: YOWO) -> None:
        super().__init__()
        self.network = network

    def forward(self, clips: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.network.predict(clips.permute(0, 2, 1, 3, 4))


class StateLayout(NamedTuple):
    """How a ConvLSTM-YOLO state is laid out as a flat list of tensors, per branch.

    Attributes:
        layers: ConvLSTM layers of each branch (each contributes ``h`` then ``c``).
        previous: whether each branch carries its previous input and ``started`` flags
            (``temporal_difference``): two more tensors after its layers.
    """

    layers: tuple[int, ...]
    previous: tuple[bool, ...]


def flatten_state(state: RecurrentState) -> list[Tensor]:
    """A ConvLSTM-YOLO state as a flat list: per branch, ``h`` and ``c`` of each layer, then
    ``previous (L, C, H, W)`` and ``started (L,)`` bool where the branch carries them."""
    flat: list[Tensor] = []
    for branch in state:
        for h, c in branch.lstm:
            flat += [h, c]
        if branch.previous is not None:
            flat += [branch.previous, branch.started]
    return flat


def unflatten_state(flat: list[Tensor] | tuple[Tensor, ...], layout: StateLayout) -> RecurrentState:
    """Inverse of :func:`flatten_state`."""
    state: RecurrentState = []
    position = 0
    for layers, previous in zip(layout.layers, layout.previous):
        lstm = [(flat[position + 2 * k], flat[position + 2 * k + 1]) for k in range(layers)]
        position += 2 * layers
        if previous:
            state.append(BranchState(lstm, flat[position], flat[position + 1]))
            position += 2
        else:
            state.append(BranchState(lstm, None, None))
    return state


def state_layout(state: RecurrentState) -> StateLayout:
    """The layout of a state the network returned."""
    return StateLayout(tuple(len(b.lstm) for b in state), tuple(b.previous is not None for b in state))


class RecurrentDetector(nn.Module):
    """One time step of ConvLSTM-YOLO with its decoding and its state as explicit tensors:
    ``(frames (L, 3, S, S) float in [0, 1], *state)`` → ``(boxes, objectness, class_probs, *new state)``,
    ``L`` lanes each carrying its own state. :meth:`initial_state` is the state of lanes that start.
    """

    def __init__(self, network: ConvLSTMYOLO, image_size: int) -> None:
        super().__init__()
        self.network = network
        with torch.no_grad():
            probe = torch.zeros(1, 1, 3, image_size, image_size, device=next(network.parameters()).device)
            _, state = network(probe, None)
        self.layout = state_layout(state)
        self.state_shapes = [tuple(t.shape[1:]) for t in flatten_state(state)]
        self.state_dtypes = [t.dtype for t in flatten_state(state)]

    def initial_state(self, lanes: int, device: torch.device | str = "cpu") -> list[Tensor]:
        """Zero ``h``, ``c`` and ``previous``, ``started`` false: the state of ``lanes`` lanes at their first frame."""
        return [torch.zeros((lanes, *shape), dtype=dtype, device=device) for shape, dtype in zip(self.state_shapes, self.state_dtypes)]

    def forward(self, frames: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        outputs, new_state = self.network(frames.unsqueeze(1), unflatten_state(state, self.layout))
        return (*decode_outputs(outputs, self.network.anchors, self.network.strides), *flatten_state(new_state))
