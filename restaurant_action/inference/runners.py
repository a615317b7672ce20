"""Backends that run a detector's inference graph (``inference.networks``): eager PyTorch, ONNX
Runtime, TorchScript. All take and return torch tensors in the graph's order, so the predictor
does not know which one it drives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from restaurant_action.inference.checkpoint import CheckpointError, ModelSpec
from restaurant_action.inference.networks import RecurrentDetector

METADATA_KEY = "restaurant_action"
"""Key of the JSON metadata (the ``ModelSpec`` and the recurrent state's shapes) in an exported file."""
TORCHSCRIPT_METADATA_FILE = "restaurant_action.json"
BACKENDS = ("eager", "onnx", "torchscript")


class Runner(Protocol):
    """Runs an inference graph: ``runner(*inputs) -> outputs`` (see ``inference.networks``)."""

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]: ...

    def initial_state(self, lanes: int) -> list[Tensor]:
        """The recurrent state of ``lanes`` lanes at their first frame (``[]`` for stateless models)."""
        ...


def state_metadata(network: nn.Module) -> dict[str, Any]:
    """The recurrent state's per-lane shapes and dtypes, for a runner that has no network to ask."""
    if not isinstance(network, RecurrentDetector):
        return {"state_shapes": [], "state_dtypes": []}
    return {"state_shapes": [list(s) for s in network.state_shapes],
            "state_dtypes": [str(d).removeprefix("torch.") for d in network.state_dtypes]}


def _zero_state(metadata: dict[str, Any], lanes: int) -> list[Tensor]:
    return [torch.zeros((lanes, *shape), dtype=getattr(torch, dtype))
            for shape, dtype in zip(metadata["state_shapes"], metadata["state_dtypes"])]


class EagerRunner:
    """The inference network itself, under ``torch.inference_mode`` on ``device``."""

    def __init__(self, network: nn.Module, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        with torch.inference_mode():
            outputs = self.network(*(tensor.to(self.device) for tensor in inputs))
        return tuple(output.cpu() for output in outputs)

    def initial_state(self, lanes: int) -> list[Tensor]:
        if isinstance(self.network, RecurrentDetector):
            return [tensor.cpu() for tensor in self.network.initial_state(lanes, self.device)]
        return []


class OnnxRunner:
    """An exported ONNX file run by ONNX Runtime (CPU, or CUDA where the build has it and ``device`` asks).

    Args:
        path: the ``.onnx`` file written by ``restaurant_action.export``.
        device: ``"cpu"`` or ``"cuda"``.
        threads: intra-op threads (``None``: ONNX Runtime's default).
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime

        self.path = Path(path)
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types, unrelated to each other
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load the file: {str(error).splitlines()[0]}") from None
        metadata = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if metadata is None:
            raise CheckpointError(f"{self.path}: not exported by restaurant_action (no {METADATA_KEY!r} metadata)")
        self.metadata = json.loads(metadata)
        self.input_names = [node.name for node in self.session.get_inputs()]

    @property
    def spec(self) -> ModelSpec:
        """The model spec recorded at export."""
        return ModelSpec.from_dict(self.metadata["spec"])

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        feed = {name: np.ascontiguousarray(tensor.cpu().numpy()) for name, tensor in zip(self.input_names, inputs)}
        return tuple(torch.from_numpy(output) for output in self.session.run(None, feed))

    def initial_state(self, lanes: int) -> list[Tensor]:
        return _zero_state(self.metadata, lanes)


class TorchScriptRunner:
    """An exported TorchScript file (``torch.jit.load``)."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        extra = {TORCHSCRIPT_METADATA_FILE: ""}
        try:
            self.module = torch.jit.load(str(self.path), map_location=self.device, _extra_files=extra)
        except RuntimeError as error:
            raise CheckpointError(f"{self.path}: not a TorchScript file: {str(error).splitlines()[0]}") from None
        if not extra[TORCHSCRIPT_METADATA_FILE]:
            raise CheckpointError(f"{self.path}: not exported by restaurant_action (no {TORCHSCRIPT_METADATA_FILE})")
        self.metadata = json.loads(extra[TORCHSCRIPT_METADATA_FILE])

    @property
    def spec(self) -> ModelSpec:
        """The model spec recorded at export."""
        return ModelSpec.from_dict(self.metadata["spec"])

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        with torch.inference_mode():
            outputs = self.module(*(tensor.to(self.device) for tensor in inputs))
        return tuple(output.cpu() for output in outputs)

    def initial_state(self, lanes: int) -> list[Tensor]:
        return _zero_state(self.metadata, lanes)
