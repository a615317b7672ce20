import logging
import math
import struct

import pytest
import torch
from torch import nn

from restaurant_action.models.darknet import (
    Darknet19,
    Darknet53,
    Reorg,
    load_darknet_weights,
    save_darknet_weights,
)
from restaurant_action.models.yolov3 import COCO_ANCHORS, YOLOv3

HEADER_BYTES = 20


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics, so that a missed tensor shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for n, b in model.named_buffers() if "running" in n]:
            tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.25 if tensor.dim() == 1
                         else torch.randn(tensor.shape, generator=generator) * 0.1)
    return model.eval()


def _tiny_yolo(num_classes: int = 3, seed: int = 0) -> YOLOv3:
    return _randomise(YOLOv3(num_classes, COCO_ANCHORS, width=0.125, depth=0.34), seed)


def _darknet_reorg_reference(x: torch.Tensor, stride: int) -> torch.Tensor:
    """darknet's reorg_cpu(x, w, h, c, batch, stride, forward=0, out), transcribed from C."""
    batch, c, h, w = x.shape
    flat_in, flat_out = x.flatten().tolist(), [0.0] * x.numel()
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    flat_out[in_index] = flat_in[out_index]
    return torch.tensor(flat_out).view(batch, c * stride * stride, h // stride, w // stride)


def test_darknet53_feature_shapes_and_depth():
    model = Darknet53(width=0.125, depth=0.34).eval()
    c3, c4, c5 = model(torch.randn(2, 3, 64, 96))
    assert model.out_channels == (32, 64, 128)
    assert (c3.shape, c4.shape, c5.shape) == ((2, 32, 8, 12), (2, 64, 4, 6), (2, 128, 2, 3))
    assert [len(stage) - 1 for stage in model.stages] == [1, 1, 3, 3, 1]
    with torch.device("meta"):  # full size without allocating or initialising it
        full = Darknet53()
    assert [len(stage) - 1 for stage in full.stages] == [1, 2, 8, 8, 4]
    assert len(full.darknet_layers()) == 52


def test_reorg_matches_darknet_reorg_cpu():
    x = torch.arange(2 * 8 * 4 * 6, dtype=torch.float32).view(2, 8, 4, 6)
    out = Reorg(2)(x)
    assert out.shape == (2, 32, 2, 3)
    torch.testing.assert_close(out, _darknet_reorg_reference(x, 2), rtol=0, atol=0)
    assert not torch.equal(out, nn.functional.pixel_unshuffle(x, 2))
    with pytest.raises(ValueError, match="divisible"):
        Reorg(2)(torch.zeros(1, 6, 4, 4))


def test_darknet19_shapes_and_yolov2_weights_size():
    tiny = Darknet19(width=0.125).eval()
    assert tiny(torch.randn(1, 3, 64, 96)).shape == (1, 128, 2, 3)
    assert Darknet19(width=0.125, out_channels=40).eval()(torch.randn(1, 3, 64, 64)).shape == (1, 40, 2, 2)
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny(torch.randn(1, 3, 48, 64))
    # darknet's yolo.cfg (YOLOv2 COCO): yolo.weights is 203,934,260 bytes with a 16-byte (v0.1) header.
    with torch.device("meta"):
        yolo_v2 = Darknet19(out_channels=425)
    layers = yolo_v2.darknet_layers()
    assert len(layers) == 23 and layers[17].conv.out_channels == 1024 and layers[-1].bn is None
    assert 16 + 4 * sum(layer.num_floats for layer in layers) == 203_934_260


def test_darknet19_stage_features_are_the_last_layer_at_that_stride_from_the_same_pass():
    model = Darknet19(width=0.125, out_channels=40).eval()
    images = torch.randn(2, 3, 64, 96)
    captured = {}
    # darknet's yolo.cfg: conv 8 (256 channels) is the last at stride 8, conv 13 (512) at stride 16
    layers = model.darknet_layers()
    for index, key in ((7, 8), (12, 16)):
        model.get_submodule(layers[index].name).register_forward_hook(
            lambda module, inputs, output, key=key: captured.__setitem__(key, output))
    with torch.no_grad():
        output = model(images)
        for stride, channels in ((8, 32), (16, 64)):
            out, stage = model.forward_with_stage(images, stride)
            assert model.stage_channels(stride) == channels
            assert stage.shape == (2, channels, 64 // stride, 96 // stride)
            torch.testing.assert_close(stage, captured[stride], rtol=0, atol=0)
            torch.testing.assert_close(out, output, rtol=0, atol=0)
    with pytest.raises(ValueError, match="strides 8 and 16, not 32"):
        model.stage_channels(32)


def test_weights_round_trip(tmp_path):
    source, target = _tiny_yolo(seed=0), _tiny_yolo(seed=1)
    path = tmp_path / "tiny.weights"
    save_darknet_weights(source, path, seen=1234)
    assert path.stat().st_size == HEADER_BYTES + 4 * sum(layer.num_floats for layer in source.darknet_layers())

    header = load_darknet_weights(target, path)
    assert tuple(header) == (0, 2, 0, 1234)
    x = torch.randn(2, 3, 64, 64)
    for expected, actual in zip(source(x), target(x)):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_file_layout_is_darknets(tmp_path):
    model = _tiny_yolo()
    path = tmp_path / "layout.weights"
    save_darknet_weights(model, path, seen=5)
    data = path.read_bytes()
    assert struct.unpack_from("<3iq", data) == (0, 2, 0, 5)
    floats = torch.frombuffer(bytearray(data[HEADER_BYTES:]), dtype=torch.float32)
    stem = model.backbone.stem
    expected_start = [stem.bn.bias, stem.bn.weight, stem.bn.running_mean, stem.bn.running_var, stem.conv.weight]
    start = torch.cat([t.detach().flatten() for t in expected_start])
    torch.testing.assert_close(floats[:start.numel()], start, rtol=0, atol=0)
    # The stride-32 head's final conv (after 24 backbone convs and 6 of its own) is linear: bias, then weight.
    layers = model.darknet_layers()
    assert layers[30].name == "heads.2.final"
    offset = sum(layer.num_floats for layer in layers[:30])
    final = model.heads[2].final
    torch.testing.assert_close(floats[offset:offset + final.bias.numel()], final.bias.detach(), rtol=0, atol=0)
    after_bias = offset + final.bias.numel()
    torch.testing.assert_close(floats[after_bias:after_bias + final.weight.numel()], final.weight.detach().flatten(),
                               rtol=0, atol=0)


def test_old_header_with_int32_seen(tmp_path):
    source, target = _tiny_yolo(seed=0), _tiny_yolo(seed=1)
    path = tmp_path / "v1.weights"
    save_darknet_weights(source, path)
    body = path.read_bytes()[HEADER_BYTES:]
    path.write_bytes(struct.pack("<3ii", 0, 1, 0, 77) + body)
    assert load_darknet_weights(target, path).seen == 77
    torch.testing.assert_close(target.heads[0].final.weight, source.heads[0].final.weight, rtol=0, atol=0)


def test_truncated_file_names_the_layer_and_leaves_model_untouched(tmp_path):
    source, target = _tiny_yolo(seed=0), _tiny_yolo(seed=1)
    path = tmp_path / "cut.weights"
    save_darknet_weights(source, path)
    layers = source.darknet_layers()
    cut = HEADER_BYTES + 4 * (sum(layer.num_floats for layer in layers[:30]) + 10)
    path.write_bytes(path.read_bytes()[:cut])
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=rf"conv 30 \({layers[30].name}\).*truncated"):
        load_darknet_weights(target, path)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_file_for_a_larger_network_is_refused(tmp_path):
    path = tmp_path / "wide.weights"
    save_darknet_weights(YOLOv3(3, COCO_ANCHORS, width=0.25, depth=0.34), path)
    with pytest.raises(ValueError, match=r"conv \d+ \(|left after the last conv"):
        load_darknet_weights(_tiny_yolo(), path)
    save_darknet_weights(_tiny_yolo(), path)
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    with pytest.raises(ValueError, match=r"2 float32 values and 0 bytes are left after the last conv 46 \(heads.0.final\)"):
        load_darknet_weights(_tiny_yolo(), path)
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(ValueError, match=r"0 float32 values and 2 bytes are left"):
        load_darknet_weights(_tiny_yolo(), path)


def test_backbone_only_load(tmp_path):
    source, target = _tiny_yolo(seed=0), _tiny_yolo(seed=1)
    num_backbone = len(source.backbone.darknet_layers())
    path = tmp_path / "backbone.weights"
    save_darknet_weights(source.backbone, path)
    assert path.stat().st_size == HEADER_BYTES + 4 * sum(layer.num_floats for layer in source.backbone.darknet_layers())

    heads_before = {k: v.clone() for k, v in target.state_dict().items() if not k.startswith("backbone.")}
    load_darknet_weights(target, path, num_layers=num_backbone)
    for key, value in target.state_dict().items():
        expected = source.state_dict()[key] if key.startswith("backbone.") else heads_before[key]
        assert torch.equal(value, expected), key

    # The same prefix read from a full file, and into the backbone module itself.
    full_path = tmp_path / "full.weights"
    save_darknet_weights(source, full_path)
    other = _tiny_yolo(seed=2)
    load_darknet_weights(other, full_path, num_layers=num_backbone)
    assert torch.equal(other.backbone.stages[4][0].conv.weight, source.backbone.stages[4][0].conv.weight)
    assert not torch.equal(other.heads[2].final.weight, source.heads[2].final.weight)
    load_darknet_weights(_tiny_yolo(seed=3).backbone, path)


def test_other_class_count_reinitialises_the_final_convs(tmp_path, caplog):
    source = _tiny_yolo(num_classes=3, seed=0)
    target = _tiny_yolo(num_classes=5, seed=1)
    path = tmp_path / "coco_like.weights"
    save_darknet_weights(source, path)
    with caplog.at_level(logging.WARNING, logger="restaurant_action.models.darknet"):
        load_darknet_weights(target, path)
    assert "re-initialised heads.2.final, heads.1.final, heads.0.final" in caplog.text
    assert "24 output channels" in caplog.text
    source_state = source.state_dict()
    for key, value in target.state_dict().items():
        if ".final." in key:
            assert value.shape[0] == 3 * (5 + 5)
        else:
            assert torch.equal(value, source_state[key]), key
    # re-initialised with the objectness prior of stride 32: 8 objects in 20x20 cells
    torch.testing.assert_close(target.heads[2].final.bias.view(3, 10)[:, 4], torch.full((3,), math.log(8 / 400)))


@pytest.mark.parametrize("header", [b"", struct.pack("<2i", 0, 2), struct.pack("<3ii", 0, 2, 0, 0)])
def test_short_header_is_refused(tmp_path, header):
    path = tmp_path / "short.weights"
    path.write_bytes(header)
    with pytest.raises(ValueError, match="too short"):
        load_darknet_weights(_tiny_yolo(), path)


def test_fused_model_cannot_be_saved(tmp_path):
    model = _tiny_yolo().fuse()
    with pytest.raises(ValueError, match="fused"):
        save_darknet_weights(model, tmp_path / "fused.weights")
