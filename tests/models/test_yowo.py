import logging
import math

import pytest
import torch
from torch import nn

from restaurant_action.models.backbones3d import build_backbone3d
from restaurant_action.models.darknet import Reorg, load_darknet_weights, save_darknet_weights
from restaurant_action.models.postprocess import decode_region, postprocess_region
from restaurant_action.models.yowo import (
    CFAM,
    UCF24_ANCHORS,
    UCF24_ANCHORS_CELLS,
    YOWO,
    ChannelAttention,
    SpaceToDepth,
    load_yowo_checkpoint,
)

# yolo.cfg's blocks after [net], in order: pytorch-yolo2 makes one entry of Darknet.models per block.
YOLO_CFG_BLOCKS = ["conv", "maxpool", "conv", "maxpool", "conv", "conv", "conv", "maxpool", "conv", "conv", "conv",
                   "maxpool", "conv", "conv", "conv", "conv", "conv", "maxpool", "conv", "conv", "conv", "conv", "conv",
                   "conv", "conv", "route", "conv", "reorg", "route", "conv", "conv", "region"]
# (in, out, kernel, batch-normalised) of yolo.cfg's 23 convs.
YOLO_CFG_CONVS = [(3, 32, 3, True), (32, 64, 3, True), (64, 128, 3, True), (128, 64, 1, True), (64, 128, 3, True),
                  (128, 256, 3, True), (256, 128, 1, True), (128, 256, 3, True), (256, 512, 3, True),
                  (512, 256, 1, True), (256, 512, 3, True), (512, 256, 1, True), (256, 512, 3, True),
                  (512, 1024, 3, True), (1024, 512, 1, True), (512, 1024, 3, True), (1024, 512, 1, True),
                  (512, 1024, 3, True), (1024, 1024, 3, True), (1024, 1024, 3, True), (512, 64, 1, True),
                  (1280, 1024, 3, True), (1024, 425, 1, False)]
CFAM_NAMES = {"conv1.": "conv_bn_relu1.", "conv2.": "conv_bn_relu2.", "attention.": "sc.", "conv3.": "conv_bn_relu3.",
              "output.": "conv_out.1."}


def _tiny(num_classes: int = 3, seed: int = 0, **kwargs) -> YOWO:
    torch.manual_seed(seed)
    options = dict(backbone_3d="resnet18", width_2d=0.125, width_3d=0.125, cfam_channels=32) | kwargs
    model = YOWO(num_classes, UCF24_ANCHORS, **options)
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # trained-looking BatchNorm statistics and attention
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
        model.cfam.attention.gamma.fill_(0.3 + seed)
    return model


def _official_state(model: YOWO) -> dict[str, torch.Tensor]:
    """``model``'s state dict named as YOWO's training script saves it (DataParallel)."""
    conv_blocks = [i for i, kind in enumerate(YOLO_CFG_BLOCKS) if kind == "conv"]
    darknet = {}
    for k, (layer, block) in enumerate(zip(model.backbone_2d.darknet_layers(), conv_blocks), start=1):
        if layer.bn is None:
            darknet.update({f"{layer.name}.{p}": f"models.{block}.conv{k}.{p}" for p in ("weight", "bias")})
        else:
            darknet[f"{layer.name}.conv.weight"] = f"models.{block}.conv{k}.weight"
            darknet.update({f"{layer.name}.bn.{p}": f"models.{block}.bn{k}.{p}"
                            for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")})
    state = {}
    for key, value in model.state_dict().items():
        part, _, rest = key.partition(".")
        if part == "backbone_2d":
            name = f"backbone_2d.{darknet[rest]}"
        elif part == "cfam":
            prefix = next(p for p in CFAM_NAMES if rest.startswith(p))
            name = f"cfam.{CFAM_NAMES[prefix]}{rest.removeprefix(prefix)}"
        elif key == "final.weight":
            name = "conv_final.weight"
        else:
            name = key
        state[f"module.{name}"] = value.clone()
    return state


def test_ucf24_anchors_are_yowos_cfg_in_pixels():
    assert UCF24_ANCHORS_CELLS[0] == (0.70458, 1.18803) and UCF24_ANCHORS_CELLS[4] == (3.52332, 5.91979)
    assert UCF24_ANCHORS[3] == pytest.approx((2.30548 * 32, 4.94180 * 32))


def test_space_to_depth_is_pytorch_yolo2_reorg_not_darknets():
    x = torch.randn(2, 4, 6, 8)
    out = SpaceToDepth(2)(x)
    assert out.shape == (2, 16, 3, 4)
    for dy in range(2):
        for dx in range(2):
            for c in range(4):
                torch.testing.assert_close(out[:, (dy * 2 + dx) * 4 + c], x[:, c, dy::2, dx::2], rtol=0, atol=0)
    assert not torch.equal(out, Reorg(2)(x))


def test_channel_attention_starts_as_identity():
    attention = ChannelAttention()
    x = torch.randn(2, 6, 3, 5)
    assert attention.gamma.item() == 0
    torch.testing.assert_close(attention(x), x, rtol=0, atol=0)
    weights = attention.attention(x)
    assert weights.shape == (2, 6, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 6))


def test_channel_attention_matches_cam_module_formula():
    attention = ChannelAttention()
    with torch.no_grad():
        attention.gamma.fill_(0.7)
    x = torch.randn(2, 6, 3, 5)
    flat = x.reshape(2, 6, 15)
    energy = torch.einsum("bcn,bdn->bcd", flat, flat)
    weights = torch.softmax(energy.max(dim=-1, keepdim=True).values - energy, dim=-1)
    expected = 0.7 * torch.einsum("bcd,bdn->bcn", weights, flat).reshape(x.shape) + x
    torch.testing.assert_close(attention(x), expected)


def test_cfam_layout():
    cfam = CFAM(40, 24, 16)
    assert cfam.conv1[0].kernel_size == (1, 1) and cfam.conv1[0].in_channels == 40
    assert cfam.conv2[0].kernel_size == (3, 3) and cfam.conv3[0].kernel_size == (3, 3)
    assert all(isinstance(c[1], nn.BatchNorm2d) and isinstance(c[2], nn.ReLU) for c in (cfam.conv1, cfam.conv2,
                                                                                         cfam.conv3))
    assert isinstance(cfam.dropout, nn.Dropout2d) and cfam.dropout.p == 0.1
    assert cfam.output.kernel_size == (1, 1) and cfam.output.bias is not None
    assert cfam.eval()(torch.randn(2, 40, 3, 4)).shape == (2, 24, 3, 4)


def test_forward_shape_and_anchor_major_layout():
    model = _tiny(num_classes=4).eval()
    clips = torch.randn(2, 3, 4, 64, 96)
    with torch.no_grad():
        out = model(clips)
        raw = model.final(model.forward_features(clips))
    assert out.shape == (2, 5, 2, 3, 9)
    torch.testing.assert_close(out[:, 3, :, :, 6], raw[:, 3 * 9 + 6], rtol=0, atol=0)
    assert model.final.bias is None and model.final.in_channels == 32


def test_key_frame_is_the_last_frame_and_3d_features_come_first():
    model = _tiny().eval()
    seen = {}
    model.backbone_2d.register_forward_hook(lambda m, args, out: seen.update(frame=args[0], out_2d=out))
    model.backbone_3d.register_forward_hook(lambda m, args, out: seen.update(clip=args[0], out_3d=out))
    model.cfam.register_forward_hook(lambda m, args, out: seen.update(fused=args[0]))
    clips = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        model(clips)
    assert torch.equal(seen["frame"], clips[:, :, -1]) and torch.equal(seen["clip"], clips)
    assert torch.equal(seen["fused"], torch.cat([seen["out_3d"], seen["out_2d"]], dim=1))
    assert seen["out_2d"].shape[1] == 425


def test_input_errors():
    model = _tiny()
    with pytest.raises(ValueError, match=r"got \(1, 4, 3, 32, 32\): this looks like \(B, T, 3, H, W\); use "
                                         r"clips.permute\(0, 2, 1, 3, 4\)"):
        model(torch.randn(1, 4, 3, 32, 32))
    with pytest.raises(ValueError, match="frame size 48x32 is not a multiple of 32"):
        model(torch.randn(1, 3, 4, 48, 32))
    with pytest.raises(ValueError, match="expected float clips"):
        model(torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        YOWO(0, UCF24_ANCHORS)
    with pytest.raises(ValueError, match=r"anchors must be an \(A, 2\) array"):
        YOWO(3, [1.0, 2.0])
    with pytest.raises(ValueError, match="passthrough_order must be one of"):
        _tiny(passthrough_order="caffe")


def test_full_size_parameter_count():
    with torch.device("meta"):
        model = YOWO(24, UCF24_ANCHORS)
    groups = {name: sum(p.numel() for p in params) for name, params in model.parameter_groups().items()}
    yolo_cfg = sum(i * o * k * k + (2 * o if bn else o) for i, o, k, bn in YOLO_CFG_CONVS)
    hidden = 1024
    cfam = (2473 * hidden + 2 * hidden) + 2 * (hidden * hidden * 9 + 2 * hidden) + (hidden * hidden + hidden) + 1
    assert groups == {"backbone_2d": yolo_cfg, "backbone_3d": 47_521_216, "head": cfam + hidden * 5 * (5 + 24)}
    # The YOWO paper reports ~121M parameters for ResNeXt-101 + Darknet-19.
    assert sum(groups.values()) == sum(p.numel() for p in model.parameters()) == 121_095_050


def test_freezing_keeps_frozen_batchnorm_in_eval():
    model = _tiny().train()
    model.freeze_2d()
    assert model.frozen == {"backbone_2d": True, "backbone_3d": False}
    assert not any(p.requires_grad for p in model.backbone_2d.parameters())
    model.train()  # as Lightning does at every training epoch
    assert not any(m.training for m in model.backbone_2d.modules())
    assert all(m.training for m in model.backbone_3d.modules()) and model.cfam.training
    stats = model.backbone_2d.stride16[0].bn.running_mean.clone()
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    assert torch.equal(model.backbone_2d.stride16[0].bn.running_mean, stats)
    assert all(p.grad is None for p in model.backbone_2d.parameters())
    assert all(p.grad is not None for p in model.backbone_3d.parameters())

    model.freeze_2d(False)
    model.freeze_3d()
    assert all(p.requires_grad for p in model.backbone_2d.parameters())
    assert model.backbone_2d.training and not model.backbone_3d.training
    model.eval().train()
    assert model.backbone_2d.training and not any(m.training for m in model.backbone_3d.modules())
    model.eval()
    model.freeze_3d(False)
    assert not model.backbone_3d.training  # unfreezing follows the model's mode


def test_parameter_groups_partition_the_parameters():
    model = _tiny()
    groups = model.parameter_groups()
    assert list(groups) == ["backbone_2d", "backbone_3d", "head"]
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    assert any(p is model.cfam.attention.gamma for p in groups["head"])
    assert any(p is model.final.weight for p in groups["head"])


def test_load_official_checkpoint_round_trip(tmp_path, caplog):
    source = _tiny(seed=0, passthrough_order="pytorch-yolo2").eval()
    state = _official_state(source)
    for key in ("module.backbone_2d.models.0.conv1.weight", "module.backbone_2d.models.29.bn22.running_var",
                "module.backbone_2d.models.30.conv23.bias", "module.backbone_3d.layer1.0.conv1.weight",
                "module.cfam.conv_bn_relu1.0.weight", "module.cfam.sc.gamma", "module.cfam.conv_out.1.bias",
                "module.conv_final.weight"):
        assert key in state
    path = tmp_path / "yowo_ucf101-24_16f_best.pth"
    torch.save({"epoch": 5, "state_dict": state, "fscore": 0.8}, path)

    target = _tiny(seed=1).eval()
    assert target.passthrough_order == "darknet"
    with caplog.at_level(logging.INFO):
        load_yowo_checkpoint(target, path)
    assert target.passthrough_order == "pytorch-yolo2" and "pytorch-yolo2" in caplog.text
    assert isinstance(target.backbone_2d.passthrough[1], SpaceToDepth)
    clips = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(clips), source(clips), rtol=0, atol=0)


def test_load_checkpoint_of_another_class_count(caplog):
    source = _tiny(num_classes=3, seed=0)
    target = _tiny(num_classes=5, seed=1)
    with caplog.at_level(logging.WARNING):
        load_yowo_checkpoint(target, _official_state(source))
    assert "conv_final has 40 output channels, the model 50" in caplog.text
    assert target.final.weight.shape == (50, 32, 1, 1)
    ours = target.state_dict()
    for key, value in source.state_dict().items():
        if key != "final.weight":
            assert torch.equal(ours[key], value), key


def test_load_checkpoint_errors_leave_the_model_untouched():
    target = _tiny(seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=r"backbone_2d.models.0.conv1.weight has shape \(16, 3, 3, 3\) but the model's "
                                         r"backbone_2d.stride16.0.conv.weight has \(8, 3, 3, 3\)"):
        load_yowo_checkpoint(target, _official_state(_tiny(width_2d=0.5)))
    state = _official_state(_tiny())
    state["module.extra_head.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 unexpected keys \['extra_head.weight'\]"):
        load_yowo_checkpoint(target, state)
    with pytest.raises(ValueError, match=r"missing keys \['backbone_3d.layer2.0.downsample"):
        load_yowo_checkpoint(target, _official_state(_tiny(backbone_3d=build_backbone3d("resnet18", 0.125,
                                                                                          shortcut="A"))))
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    assert target.passthrough_order == "darknet"
    with pytest.raises(ValueError, match="build YOWO with channels_2d=425"):
        load_yowo_checkpoint(_tiny(channels_2d=None), state)


def test_yolo_weights_load_into_the_2d_branch(tmp_path):
    source, target = _tiny(seed=0), _tiny(seed=1)
    save_darknet_weights(source.backbone_2d, tmp_path / "yolo.weights")
    load_darknet_weights(target.backbone_2d, tmp_path / "yolo.weights")
    assert len(target.backbone_2d.darknet_layers()) == 23
    for key, value in source.backbone_2d.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(target.backbone_2d.state_dict()[key], value), key


def _region_output() -> torch.Tensor:
    """2 images, anchors 32×32 and 64×96, a 4×4 grid (stride 32), 3 classes; background everywhere
    except image 0 (anchor 1, row 1, column 2: box (48, 0, 112, 96), class 1, and a duplicate at
    anchor 0, weaker) and image 1 (anchor 0, row 3, column 0: box (0, 96, 32, 128), class 2).
    """
    out = torch.zeros(2, 2, 4, 4, 8)
    out[..., 4] = -20.0
    out[0, 1, 1, 2, 4], out[0, 1, 1, 2, 5:] = 5.0, torch.tensor([0.0, 4.0, 0.0])
    out[0, 0, 1, 2, 2:4] = torch.tensor([math.log(2.0), math.log(3.0)])
    out[0, 0, 1, 2, 4], out[0, 0, 1, 2, 5:] = 3.0, torch.tensor([0.0, 4.0, 0.0])
    out[1, 0, 3, 0, 4], out[1, 0, 3, 0, 5:] = 2.0, torch.tensor([0.0, 1.0, 3.0])
    return out


def test_decode_region_uses_softmax_classes():
    anchors = torch.tensor([[32.0, 32.0], [64.0, 96.0]])
    boxes, objectness, class_probs = decode_region(_region_output(), anchors, 32)
    assert boxes.shape == (2, 32, 4) and objectness.shape == (2, 32) and class_probs.shape == (2, 32, 3)
    torch.testing.assert_close(class_probs.sum(-1), torch.ones(2, 32))
    index = 16 + 1 * 4 + 2  # anchor 1, row 1, column 2
    torch.testing.assert_close(boxes[0, index], torch.tensor([48.0, 0.0, 112.0, 96.0]))
    torch.testing.assert_close(class_probs[0, index], torch.softmax(torch.tensor([0.0, 4.0, 0.0]), 0))


def test_postprocess_region_scores_and_nms():
    anchors = torch.tensor([[32.0, 32.0], [64.0, 96.0]])
    detections = postprocess_region(_region_output(), anchors, 32, score_threshold=0.2)
    first, second = detections
    assert first["labels"].tolist() == [1]  # the duplicate is suppressed
    torch.testing.assert_close(first["boxes"], torch.tensor([[48.0, 0.0, 112.0, 96.0]]))
    expected = torch.sigmoid(torch.tensor(5.0)) * torch.softmax(torch.tensor([0.0, 4.0, 0.0]), 0)[1]
    torch.testing.assert_close(first["scores"], expected.view(1))
    assert second["labels"].tolist() == [2]
    torch.testing.assert_close(second["boxes"], torch.tensor([[0.0, 96.0, 32.0, 128.0]]))
    torch.testing.assert_close(second["scores"], (torch.sigmoid(torch.tensor(2.0))
                                                  * torch.softmax(torch.tensor([0.0, 1.0, 3.0]), 0)[2]).view(1))
    both = postprocess_region(_region_output(), anchors, 32, score_threshold=0.2, iou_threshold=1.0)[0]
    assert both["labels"].tolist() == [1, 1]


def test_roi_head_probabilities_multiply_the_region_heads_at_every_decoded_box():
    model = _tiny(num_classes=4, roi_stride=8).eval()
    clips = torch.randn(2, 3, 4, 64, 96)
    with torch.no_grad():
        out = model(clips)
        region, stage, frame_stage = model.forward_region(clips)
        assert frame_stage is None
        assert stage.shape == (2, model.backbone_3d.stage_channels(8), 8, 12)
        boxes, _, _ = decode_region(region, model.anchors, model.stride)
        image = torch.arange(2).repeat_interleave(boxes.shape[1]).float().unsqueeze(1)
        roi_probs = model.roi_head(stage, torch.cat([image, boxes.flatten(0, 1)], dim=1)).softmax(dim=-1)
    assert out.shape == region.shape == (2, 5, 2, 3, 9)
    torch.testing.assert_close(out[..., :5], region[..., :5])
    product = region[..., 5:].softmax(dim=-1).flatten(0, 3) * roi_probs
    torch.testing.assert_close(out[..., 5:].softmax(dim=-1).flatten(0, 3), product / product.sum(dim=-1, keepdim=True))
    groups = model.parameter_groups()
    assert any(p is model.roi_head.classifier.weight for p in groups["head"])
    assert sum(len(p) for p in groups.values()) == len(list(model.parameters()))


def test_yowo_checkpoints_load_into_a_model_with_a_roi_head_which_keeps_its_weights(tmp_path, caplog):
    source = _tiny(seed=0, passthrough_order="pytorch-yolo2").eval()
    path = tmp_path / "yowo_ucf101-24_16f_best.pth"
    torch.save({"state_dict": _official_state(source)}, path)
    target = _tiny(seed=1, roi_stride=16).eval()
    roi_before = {k: v.clone() for k, v in target.roi_head.state_dict().items()}
    with caplog.at_level(logging.INFO):
        load_yowo_checkpoint(target, path)
    assert "has no roi_head" in caplog.text
    assert all(torch.equal(v, roi_before[k]) for k, v in target.roi_head.state_dict().items())
    clips = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target.forward_region(clips).region, source(clips), rtol=0, atol=0)


def test_an_untrained_box_refiner_changes_nothing():
    plain = _tiny(num_classes=4, roi_stride=8).eval()
    refined = _tiny(num_classes=4, roi_stride=8, roi_refine=True).eval()
    refined.load_state_dict(plain.state_dict(), strict=False)
    clips = torch.randn(2, 3, 4, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(refined(clips), plain(clips))
        for ours, theirs in zip(refined.predict(clips), plain.predict(clips)):
            torch.testing.assert_close(ours, theirs)


def test_the_refiner_corrects_the_boxes_that_predict_returns_and_the_roi_head_reads():
    model = _tiny(num_classes=4, roi_stride=8, roi_refine=True).eval()
    with torch.no_grad():
        model.box_refiner.regressor[-1].weight.normal_(0, 0.05)
        model.box_refiner.regressor[-1].bias.copy_(torch.tensor([2.0, -1.0, 1.0, 0.5]))
    clips = torch.randn(2, 3, 4, 64, 96)
    with torch.no_grad():
        out = model(clips)
        boxes, objectness, class_probs = model.predict(clips)
        region_pass = model.forward_region(clips)
        assert region_pass.frame_stage.shape == (2, model.backbone_2d.stage_channels(8), 8, 12)
        region_boxes, region_objectness, _ = decode_region(region_pass.region, model.anchors, model.stride)
        image = torch.arange(2).repeat_interleave(boxes.shape[1]).float().unsqueeze(1)
        rois = torch.cat([image, region_boxes.flatten(0, 1)], dim=1)
        expected = model.box_refiner.refine(torch.cat([region_pass.frame_stage, region_pass.clip_stage], dim=1), rois)
        roi_probs = model.roi_head(region_pass.clip_stage, torch.cat([image, expected], dim=1)).softmax(dim=-1)
    torch.testing.assert_close(boxes.flatten(0, 1), expected)
    assert not torch.allclose(boxes, region_boxes, atol=1.0)
    torch.testing.assert_close(out[..., :5], region_pass.region[..., :5])
    torch.testing.assert_close(objectness, region_objectness)
    product = region_pass.region[..., 5:].softmax(dim=-1).flatten(0, 3) * roi_probs
    torch.testing.assert_close(class_probs.flatten(0, 1), product / product.sum(dim=-1, keepdim=True))
    groups = model.parameter_groups()
    assert any(p is model.box_refiner.regressor[0].weight for p in groups["head"])
    assert sum(len(p) for p in groups.values()) == len(list(model.parameters()))


def test_yowo_checkpoints_load_into_a_model_with_a_box_refiner_which_keeps_its_weights(tmp_path, caplog):
    source = _tiny(seed=0, passthrough_order="pytorch-yolo2").eval()
    path = tmp_path / "yowo_ucf101-24_16f_best.pth"
    torch.save({"state_dict": _official_state(source)}, path)
    target = _tiny(seed=1, roi_stride=8, roi_refine=True).eval()
    before = {k: v.clone() for k, v in target.state_dict().items() if k.startswith(("roi_head.", "box_refiner."))}
    with caplog.at_level(logging.INFO):
        load_yowo_checkpoint(target, path)
    assert "has no roi_head" in caplog.text and "has no box_refiner" in caplog.text
    after = target.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_the_box_refiner_needs_the_roi_head():
    with pytest.raises(ValueError, match="roi_refine .* needs roi_stride"):
        YOWO(3, UCF24_ANCHORS, backbone_3d="resnet18", width_2d=0.125, width_3d=0.125, cfam_channels=32,
             roi_refine=True)


def test_roi_head_needs_a_backbone_with_that_stage():
    with pytest.raises(ValueError, match="s3d has no declared stage at stride 8"):
        YOWO(3, UCF24_ANCHORS, backbone_3d="s3d", width_2d=0.125, cfam_channels=32, roi_stride=8)
