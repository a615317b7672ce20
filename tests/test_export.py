"""Export: ONNX (run by ONNX Runtime) and TorchScript outputs equal the eager graph's, the ConvLSTM
state carried through the exported step, and the exported predictors' detections equal the eager
predictor's on a video.

Tolerance: boxes within 1e-3 px of the 64 px input and probabilities within 1e-5 (float32 kernels
of ONNX Runtime and PyTorch sum in other orders; measured differences are ≤ 3e-5 px and ≤ 2e-7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import restaurant_action as ra
from restaurant_action.export import example_inputs, inference_network
from restaurant_action.inference.checkpoint import checkpoint_spec, load_module, read_checkpoint
from restaurant_action.inference.runners import OnnxRunner, TorchScriptRunner

KINDS = ("YOLOv3Module", "YOWOModule", "ConvLSTMYOLOModule")
FORMATS = {"onnx": (".onnx", OnnxRunner), "torchscript": (".pt", TorchScriptRunner)}


def eager_network(checkpoint: Path) -> tuple[torch.nn.Module, ra.inference.checkpoint.ModelSpec]:
    state = read_checkpoint(checkpoint)
    spec = checkpoint_spec(state, checkpoint)
    return inference_network(load_module(state, spec, checkpoint), spec), spec


def assert_outputs_close(ours: tuple[torch.Tensor, ...], eager: tuple[torch.Tensor, ...]) -> None:
    boxes, *rest = ours
    torch.testing.assert_close(boxes, eager[0], atol=1e-3, rtol=0)
    for mine, theirs in zip(rest, eager[1:]):
        torch.testing.assert_close(mine.to(theirs.dtype), theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_exported_outputs_equal_eager(checkpoints: dict[str, Path], tmp_path: Path, kind: str, format: str) -> None:
    suffix, runner_class = FORMATS[format]
    path = ra.export(checkpoints[kind], tmp_path / f"model{suffix}", format)
    runner = runner_class(path)
    network, spec = eager_network(checkpoints[kind])
    assert runner.spec == spec
    torch.manual_seed(0)
    inputs = example_inputs(network, spec, batch=3)  # the export traced a batch of 2: the batch axis is dynamic
    if kind != "ConvLSTMYOLOModule":
        with torch.no_grad():
            assert_outputs_close(runner(*inputs), network(*inputs))
        return
    eager_state = runner_state = runner.initial_state(3)
    assert [tuple(t.shape) for t in runner_state] == [tuple(t.shape) for t in inputs[1:]]
    for _ in range(3):  # the state goes out of one step and into the next
        frames = torch.rand_like(inputs[0])
        with torch.no_grad():
            eager = network(frames, *eager_state)
        ours = runner(frames, *runner_state)
        assert_outputs_close(ours[:3], eager[:3])
        for mine, theirs in zip(ours[3:], eager[3:]):
            torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)
        eager_state, runner_state = eager[3:], ours[3:]


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_predictor_detects_what_the_eager_one_does(synthetic_root: Path, checkpoints: dict[str, Path], tmp_path: Path, kind: str) -> None:
    video = synthetic_root / "videos" / "cam1_001.mp4"
    frames = np.arange(48)
    short = tmp_path / "short"
    short.mkdir()
    import cv2

    for index, frame in zip(frames, ra.open_video(video).frames(frames)):
        cv2.imwrite(str(short / f"{index:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    eager = ra.VideoPredictor.from_checkpoint(checkpoints[kind], "cpu", max_detections=20)
    onnx = ra.VideoPredictor.from_checkpoint(checkpoints[kind], "cpu", backend="onnx", export_path=tmp_path / "m.onnx",
                                             max_detections=20)
    assert isinstance(onnx.runner, OnnxRunner)
    for mine, theirs in zip(onnx.stream(short), eager.stream(short), strict=True):
        assert mine.frame_index == theirs.frame_index
        np.testing.assert_allclose(mine.detections.scores, theirs.detections.scores, atol=1e-6)
        # at the max_detections cut, boxes whose scores tie within the runtimes' rounding may swap
        scores = theirs.detections.scores
        clear = scores > scores[-1] + 1e-5 if len(scores) == 20 else np.ones(len(scores), bool)
        np.testing.assert_array_equal(mine.detections.labels[clear], theirs.detections.labels[clear])
        np.testing.assert_allclose(mine.detections.boxes[clear], theirs.detections.boxes[clear], atol=1e-3)


def test_export_refuses_an_unknown_format(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format must be one of"):
        ra.export(checkpoints["YOLOv3Module"], tmp_path / "model.tflite", "tflite")


def test_a_file_not_exported_by_the_library_is_refused(tmp_path: Path) -> None:
    plain = torch.nn.Conv2d(3, 4, 1)
    torch.onnx.export(plain, (torch.rand(1, 3, 8, 8),), tmp_path / "plain.onnx", dynamo=True, verbose=False)
    with pytest.raises(ra.CheckpointError, match="plain.onnx: not exported by restaurant_action"):
        ra.VideoPredictor.from_export(tmp_path / "plain.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(ra.CheckpointError, match="broken.onnx: ONNX Runtime cannot load the file"):
        ra.VideoPredictor.from_export(tmp_path / "broken.onnx")
