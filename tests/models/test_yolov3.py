import pytest
import torch
from torch import nn

from restaurant_action.models.layers import ConvBNAct
from restaurant_action.models.yolov3 import COCO_ANCHORS, YOLOHead, YOLOv3


def _tiny(num_classes: int = 3) -> YOLOv3:
    torch.manual_seed(0)
    model = YOLOv3(num_classes, COCO_ANCHORS, width=0.125, depth=0.34)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # trained-looking BatchNorm statistics, so fusing has something to fold
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.3)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def _yolov3_cfg_convs() -> list[tuple[int, int, int, int, bool]]:
    """(in, out, kernel, stride, batch_normalize) of every [convolutional] of darknet's yolov3.cfg."""
    convs = [(3, 32, 3, 1, True)]
    channels = 32
    for stage, repeats in enumerate((1, 2, 8, 8, 4)):
        out = 64 << stage
        convs.append((channels, out, 3, 2, True))
        convs += [(out, out // 2, 1, 1, True), (out // 2, out, 3, 1, True)] * repeats
        channels = out
    for in_channels, width in ((1024, 512), (768, 256), (384, 128)):
        if width != 512:  # the [route] -4, 1x1 conv and [upsample] before the stride-16 and stride-8 heads
            convs.append((2 * width, width, 1, 1, True))
        convs += [(in_channels, width, 1, 1, True), (width, 2 * width, 3, 1, True), (2 * width, width, 1, 1, True),
                  (width, 2 * width, 3, 1, True), (2 * width, width, 1, 1, True), (width, 2 * width, 3, 1, True),
                  (2 * width, 255, 1, 1, False)]
    return convs


@pytest.fixture(scope="module")
def coco_yolov3() -> YOLOv3:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return YOLOv3(80, COCO_ANCHORS)


def test_full_model_parameter_and_weights_file_counts(coco_yolov3):
    assert sum(p.numel() for p in coco_yolov3.parameters() if p.requires_grad) == 61_949_149
    layers = coco_yolov3.darknet_layers()
    assert sum(layer.num_floats for layer in layers) == 62_001_757
    assert 20 + 4 * sum(layer.num_floats for layer in layers) == 248_007_048


def test_darknet_layer_order_follows_yolov3_cfg(coco_yolov3):
    layers = coco_yolov3.darknet_layers()
    actual = [(layer.conv.in_channels, layer.conv.out_channels, layer.conv.kernel_size[0], layer.conv.stride[0],
               layer.bn is not None) for layer in layers]
    assert actual == _yolov3_cfg_convs()
    assert [i for i, layer in enumerate(layers) if layer.reset is not None] == [58, 66, 74]
    assert [layers[i].name for i in (51, 52, 58, 59, 67, 74)] == [
        "backbone.stages.4.4.conv2", "blocks.2.0", "heads.2.final", "laterals.1", "laterals.0", "heads.0.final"]


def test_output_shapes_and_heads():
    model = _tiny(num_classes=4)
    x = torch.randn(2, 3, 64, 96)
    outputs = model(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 8, 12, 9), (2, 3, 4, 6, 9), (2, 3, 2, 3, 9)]
    assert model.strides == (8, 16, 32)
    features = model.forward_features(x)
    assert [f.shape[1] for f in features] == [16, 32, 64]
    for head, feature, output in zip(model.heads, features, outputs):
        assert isinstance(head, YOLOHead) and isinstance(head.features, ConvBNAct)
        assert head.final.kernel_size == (1, 1) and head.final.out_channels == 3 * 9
        torch.testing.assert_close(head.predict(head.features(feature)), output, rtol=0, atol=0)
    # the last axis is anchor-major darknet layout: channel a * (5 + C) + k
    raw = model.heads[1].final(model.heads[1].features(features[1]))
    torch.testing.assert_close(outputs[1][:, 2, :, :, 4], raw[:, 2 * 9 + 4], rtol=0, atol=0)


def test_route_concatenates_upsampled_map_first():
    # yolov3.cfg's [route] layers=-1,61 and -1,36: darknet weights expect this channel order.
    model = _tiny()
    seen = {}
    hooks = [module.register_forward_hook(lambda m, args, out, key=key: seen.__setitem__(key, (args[0], out)))
             for key, module in [("lateral1", model.laterals[1]), ("lateral0", model.laterals[0]),
                                 ("block1", model.blocks[1][0]), ("block0", model.blocks[0][0]),
                                 ("backbone", model.backbone)]]
    model(torch.randn(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    c3, c4, _ = seen["backbone"][1]
    for level, lateral, skip in [(1, "lateral1", c4), (0, "lateral0", c3)]:
        upsampled = nn.functional.interpolate(seen[lateral][1], scale_factor=2.0)
        block_input = seen[f"block{level}"][0]
        torch.testing.assert_close(block_input, torch.cat([upsampled, skip], dim=1), rtol=0, atol=0)


def test_anchors_are_sorted_by_area_and_split_by_scale():
    shuffled = [COCO_ANCHORS[i] for i in (8, 0, 4, 2, 6, 1, 3, 7, 5)]
    model = YOLOv3(2, shuffled, width=0.125, depth=0.34)
    torch.testing.assert_close(model.anchors, torch.tensor(COCO_ANCHORS, dtype=torch.float32))
    assert model.num_anchors == 3
    six = YOLOv3(2, COCO_ANCHORS[::3] + COCO_ANCHORS[1::3], width=0.125, depth=0.34).eval()
    assert six.num_anchors == 2 and six(torch.randn(1, 3, 32, 32))[0].shape == (1, 2, 4, 4, 7)


@pytest.mark.parametrize("anchors, match", [
    ([(10, 13)] * 8, "multiple of 3"),
    ([(10, 13, 1)] * 9, r"\(N, 2\)"),
    ([], "multiple of 3"),
    ([(10, 13)] * 8 + [(0, 5)], "positive"),
    ([(10, 13)] * 8 + [(float("nan"), 5)], "finite"),
])
def test_bad_anchors(anchors, match):
    with pytest.raises(ValueError, match=match):
        YOLOv3(3, anchors, width=0.125, depth=0.34)


@pytest.mark.parametrize("num_classes", [0, -1, 2.0, True, "3"])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        YOLOv3(num_classes, COCO_ANCHORS, width=0.125, depth=0.34)


@pytest.mark.parametrize("shape", [(1, 3, 64, 80), (1, 3, 48, 64), (3, 64, 64), (1, 1, 64, 64)])
def test_bad_input(shape):
    with pytest.raises(ValueError, match="multiple of 32|expected images"):
        _tiny()(torch.randn(*shape))


def test_fuse_channels_last_and_inference_mode_keep_outputs():
    model = _tiny()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    with torch.inference_mode():
        for actual, reference in zip(model(x), expected):
            torch.testing.assert_close(actual, reference, atol=1e-4, rtol=0)
        model_cl = _tiny().to(memory_format=torch.channels_last)
        for actual, reference in zip(model_cl(x.to(memory_format=torch.channels_last)), expected):
            torch.testing.assert_close(actual, reference, atol=1e-4, rtol=0)
        assert model.fuse() is model
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        for actual, reference in zip(model(x), expected):
            torch.testing.assert_close(actual, reference, atol=1e-4, rtol=0)
        model.to(memory_format=torch.channels_last)
        for actual, reference in zip(model(x.to(memory_format=torch.channels_last)), expected):
            torch.testing.assert_close(actual, reference, atol=1e-4, rtol=0)


def test_head_bias_priors():
    model = _tiny(num_classes=4)
    bias = model.heads[0].final.bias.view(3, 9)
    torch.testing.assert_close(bias[:, 4].exp(), torch.full((3,), 8 / 80**2))  # 8 objects in 80x80 cells
    torch.testing.assert_close(bias[:, 5:].exp(), torch.full((3, 4), 0.6 / 3.01))
