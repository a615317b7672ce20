"""Export a trained detector to ONNX (run by ONNX Runtime) or TorchScript.

The exported graph is the predictor's own (``inference.networks``): float images in ``[0, 1]`` in,
decoded ``boxes``, ``objectness`` and ``class_probs`` out, with a dynamic batch axis.

- YOLOv3: ``images (N, 3, S, S)``.
- YOWO: ``clips (N, T, 3, S, S)``, key frame last (the box refiner and RoI head included).
- ConvLSTM-YOLO: one time step, ``frames (L, 3, S, S)`` plus its state as explicit inputs
  ``state_in_*`` and outputs ``state_out_*`` (per ConvLSTM: ``h``, ``c``; per branch the previous
  input and the ``started`` flags), so a runtime carries it from frame to frame. Lanes at their
  first frame take zeros (``started`` false).

Class-aware NMS stays outside the graph (torchvision's ``batched_nms`` in the predictor). The
file also carries the model spec (classes, image size, clip length, frame stride) as metadata,
so ``VideoPredictor.from_export`` needs nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from restaurant_action.inference.checkpoint import ModelSpec, checkpoint_spec, load_module, read_checkpoint
from restaurant_action.inference.networks import ClipDetector, FrameDetector, RecurrentDetector
from restaurant_action.inference.runners import METADATA_KEY, TORCHSCRIPT_METADATA_FILE, state_metadata
from restaurant_action.lightning._detection import DetectionModule

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
OPSET = 18


def inference_network(module: DetectionModule, spec: ModelSpec) -> nn.Module:
    """The inference graph of a detector module (``FrameDetector``, ``ClipDetector`` or ``RecurrentDetector``), in eval mode."""
    if spec.kind == "YOLOv3Module":
        return FrameDetector(module.network).eval()
    if spec.kind == "YOWOModule":
        return ClipDetector(module.network).eval()
    return RecurrentDetector(module.network.eval(), spec.image_size).eval()


def example_inputs(network: nn.Module, spec: ModelSpec, batch: int = 2) -> tuple[Tensor, ...]:
    """Random inputs of the graph's shape, ``batch`` images, clips or lanes."""
    size = spec.image_size
    if isinstance(network, ClipDetector):
        return (torch.rand(batch, spec.clip_length, 3, size, size),)
    images = torch.rand(batch, 3, size, size)
    if isinstance(network, RecurrentDetector):
        return (images, *network.initial_state(batch))
    return (images,)


def io_names(network: nn.Module) -> tuple[list[str], list[str]]:
    """Input and output names of the exported graph."""
    outputs = ["boxes", "objectness", "class_probs"]
    if isinstance(network, ClipDetector):
        return ["clips"], outputs
    if isinstance(network, RecurrentDetector):
        count = len(network.state_shapes)
        return ["frames", *(f"state_in_{i}" for i in range(count))], outputs + [f"state_out_{i}" for i in range(count)]
    return ["images"], outputs


def export(checkpoint: str | Path, out: str | Path, format: str = "onnx", image_size: int | None = None,
           frame_stride: int | None = None) -> Path:
    """Export a ``YOLOv3Module``, ``ConvLSTMYOLOModule`` or ``YOWOModule`` checkpoint.

    Args:
        checkpoint: the Lightning checkpoint.
        out: the file to write (``.onnx`` or ``.pt``).
        format: ``"onnx"`` (torch.onnx's exporter, opset 18) or ``"torchscript"`` (``torch.jit.trace``).
        image_size, frame_stride: for a checkpoint that does not record them.

    Returns:
        ``out``.

    Raises:
        CheckpointError: the checkpoint is unreadable or lacks what prediction needs.
        ValueError: an unknown format.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    state = read_checkpoint(checkpoint)
    spec = checkpoint_spec(state, checkpoint, image_size, frame_stride)
    return export_network(inference_network(load_module(state, spec, checkpoint), spec), spec, out, format)


def export_network(network: nn.Module, spec: ModelSpec, out: str | Path, format: str = "onnx") -> Path:
    """Export an inference graph (``inference_network``) with its spec as metadata; see :func:`export`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = json.dumps({"spec": spec.to_dict(), **state_metadata(network)})
    inputs = example_inputs(network, spec)
    if format == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(network, inputs, check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={TORCHSCRIPT_METADATA_FILE: metadata})
        logger.info("wrote %s (TorchScript)", out)
        return out
    import onnx

    input_names, output_names = io_names(network)
    batch = torch.export.Dim("batch")
    # Keyed by the forward's argument names; the recurrent state is one *args argument.
    dynamic_shapes: dict[str, object] = {input_names[0]: {0: batch}}
    if isinstance(network, RecurrentDetector):
        dynamic_shapes["state"] = tuple({0: batch} for _ in input_names[1:])
    # The exporter writes its progress to standard output; the library does not print.
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(network, inputs, dynamo=True, verbose=False, opset_version=OPSET,
                                    input_names=input_names, output_names=output_names, dynamic_shapes=dynamic_shapes)
    model = program.model_proto
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    onnx.save(model, str(out))
    logger.info("wrote %s (ONNX opset %d)", out, OPSET)
    return out
