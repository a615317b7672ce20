"""Engines: which frames each model needs, YOWO's window, ConvLSTM-YOLO's lanes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import restaurant_action as ra
from restaurant_action.export import inference_network
from restaurant_action.inference.checkpoint import ModelSpec
from restaurant_action.inference.engines import ClipEngine, FrameEngine, RecurrentEngine, recurrent_lanes
from restaurant_action.inference.runners import EagerRunner

CLASSES = ("a", "b", "c")


def yowo_runner(clip_length: int) -> EagerRunner:
    module = ra.YOWOModule(3, [[8, 8], [16, 16]], backbone_3d="resnet18", width_2d=0.125, width_3d=0.125,
                           cfam_channels=16, clip_length=clip_length)
    spec = ModelSpec("YOWOModule", CLASSES, 64, clip_length=clip_length)
    return EagerRunner(inference_network(module, spec))


@settings(max_examples=200, deadline=None)
@given(clip_length=st.integers(1, 8), stride=st.integers(1, 5), every=st.integers(1, 9), index=st.integers(0, 120))
def test_clip_engine_wants_exactly_the_frames_of_predicted_clips(clip_length: int, stride: int, every: int, index: int) -> None:
    spec = ModelSpec("YOWOModule", CLASSES, 64, frame_stride=stride, clip_length=clip_length)
    engine = ClipEngine(None, spec, every)
    needed = {i for key in range(0, index + clip_length * stride + 1, every) for i in engine.clip_indices(key)}
    assert engine.wants(index) == (index in needed)


def test_clip_indices_put_the_key_frame_last_and_clamp_at_zero() -> None:
    engine = ClipEngine(None, ModelSpec("YOWOModule", CLASSES, 64, frame_stride=2, clip_length=4))
    assert engine.clip_indices(3) == [0, 0, 1, 3]  # ClipDataset's docstring example
    assert engine.clip_indices(10) == [4, 6, 8, 10]


def test_clip_engine_window_holds_one_clip_span_and_every_key_frame_gets_a_clip() -> None:
    torch.manual_seed(0)
    engine = ClipEngine(yowo_runner(4), ModelSpec("YOWOModule", CLASSES, 64, frame_stride=3, clip_length=4), every=2,
                        batch_size=3)
    predicted, most = [], 0
    for index in range(40):
        if engine.wants(index):
            for decoded in engine.push(index, torch.full((3, 64, 64), index, dtype=torch.uint8)):
                predicted += decoded.frame_indices
                assert decoded.boxes.shape[0] == len(decoded.frame_indices)
            most = max(most, engine.frames_held)
    for decoded in engine.flush():
        predicted += decoded.frame_indices
    assert predicted == list(range(0, 40, 2)) and most == (4 - 1) * 3 + 1


def test_a_dropped_clip_frame_is_replaced_by_the_nearest_earlier_one() -> None:
    engine = ClipEngine(yowo_runner(3), ModelSpec("YOWOModule", CLASSES, 64, frame_stride=1, clip_length=3), batch_size=8)
    for index in (0, 1, 3):  # frame 2 never arrived
        engine.push(index, torch.full((3, 64, 64), index, dtype=torch.uint8))
    clip = engine._clips[-1]
    assert [int(frame[0, 0, 0]) for frame in clip] == [1, 1, 3]


@pytest.mark.parametrize(("stride", "every", "lanes"), [(8, 1, 8), (8, 2, 4), (8, 8, 1), (4, 8, 1), (1, 1, 1)])
def test_recurrent_lanes_keep_a_lanes_frames_the_training_stride_apart(stride: int, every: int, lanes: int) -> None:
    assert recurrent_lanes(stride, every) == lanes


def test_recurrent_lanes_refuse_an_every_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="every=3 does not fit the ConvLSTM-YOLO's frame stride 8"):
        recurrent_lanes(8, 3)


def test_recurrent_engine_pads_the_last_round_and_returns_only_real_frames() -> None:
    module = ra.ConvLSTMYOLOModule(3, [[4, 4]] * 9, width=0.125, depth=0.34)
    spec = ModelSpec("ConvLSTMYOLOModule", CLASSES, 64, frame_stride=4)
    engine = RecurrentEngine(EagerRunner(inference_network(module, spec)), spec, every=1, batch_size=8)
    assert engine.lanes == 4 and engine.rounds == 2
    out = []
    for index in range(10):
        for decoded in engine.push(index, torch.zeros(3, 64, 64, dtype=torch.uint8)):
            out += decoded.frame_indices
    assert out == list(range(8))
    last = engine.flush()
    assert [d.frame_indices for d in last] == [[8, 9]] and last[0].boxes.shape[0] == 2


def test_frame_engine_batches_predicted_frames() -> None:
    module = ra.YOLOv3Module(3, [[4, 4]] * 9, width=0.125, depth=0.34)
    spec = ModelSpec("YOLOv3Module", CLASSES, 64)
    engine = FrameEngine(EagerRunner(inference_network(module, spec)), spec, every=3, batch_size=2)
    batches = [d.frame_indices for i in range(10) for d in engine.push(i, torch.zeros(3, 64, 64, dtype=torch.uint8))]
    batches += [d.frame_indices for d in engine.flush()]
    assert batches == [[0, 3], [6, 9]]
