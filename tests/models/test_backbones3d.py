import pytest
import torch
from torch import nn

from restaurant_action.models.backbones3d import (
    BACKBONE_3D_NAMES,
    Backbone3D,
    ZeroPadShortcut,
    build_backbone3d,
    channel_shuffle,
    load_kinetics_3d,
)

TINY_WIDTH = {"mobilenetv2": 0.25, "shufflenetv2": 0.25, "r3d_18": 1.0, "r2plus1d_18": 1.0, "s3d": 1.0}


def _tiny(name: str, seed: int = 0, **options) -> Backbone3D:
    torch.manual_seed(seed)
    return build_backbone3d(name, TINY_WIDTH.get(name, 0.125), **options)


def _randomise_batchnorm(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.num_batches_tracked.fill_(seed)


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", BACKBONE_3D_NAMES)
def test_output_shape_at_stride_32(name):
    model = _tiny(name).eval()
    clips = torch.randn(2, 3, 8, 32, 64)
    with torch.no_grad():
        features = model.forward_features(clips)
        out = model(clips)
    assert features.shape == (2, model.out_channels, model.temporal_size(8), 1, 2)
    assert out.shape == (2, model.out_channels, 1, 2)
    assert model.stride == 32 and model.name == name


def test_time_axis_is_averaged_and_temporal_size_is_exact():
    model = _tiny("resnet18").eval()
    clips = torch.randn(1, 3, 40, 32, 32)
    with torch.no_grad():
        features = model.forward_features(clips)
        out = model(clips)
    assert features.shape[2] == 3 == model.temporal_size(40)  # ⌈40 / 16⌉
    torch.testing.assert_close(out, features.mean(dim=2))
    assert [model.temporal_size(t) for t in (1, 16, 17, 32)] == [1, 1, 2, 2]


def test_s3d_needs_five_frames_and_says_so():
    model = _tiny("s3d").eval()
    assert model.min_frames == 5
    assert [model.temporal_size(t) for t in (4, 5, 8, 9, 16)] == [0, 1, 1, 1, 2]
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 16, 32, 32)).shape[2] == 2
        assert model.forward_features(torch.randn(1, 3, 5, 32, 32)).shape[2] == 1
    with pytest.raises(ValueError, match=r"s3d needs clips of at least 5 frames .* got 4"):
        model(torch.randn(1, 3, 4, 32, 32))


def test_input_layout_error():
    with pytest.raises(ValueError, match=r"resnet18: expected clips of shape \(B, 3, T, H, W\), got \(1, 8, 3, 32, 32\)"):
        _tiny("resnet18")(torch.randn(1, 8, 3, 32, 32))


def test_factory_errors():
    with pytest.raises(ValueError, match="unknown 3D backbone 'resnet152'; choose one of resnet18, .*s3d"):
        build_backbone3d("resnet152")
    with pytest.raises(ValueError, match=r"shufflenetv2: width must be one of \[0.25, 0.5, 1.0, 1.5, 2.0\], got 0.3"):
        build_backbone3d("shufflenetv2", 0.3)
    with pytest.raises(ValueError, match="r3d_18 is torchvision's fixed-width model: width must be 1.0"):
        build_backbone3d("r3d_18", 0.5)
    with pytest.raises(ValueError, match="mobilenetv2: shortcut is an option of the ResNets only"):
        build_backbone3d("mobilenetv2", shortcut="A")
    with pytest.raises(ValueError, match="resnet18: shortcut must be 'A' or 'B'"):
        build_backbone3d("resnet18", 0.125, shortcut="C")
    with pytest.raises(ValueError, match="width 0.05 leaves a layer without channels"):
        build_backbone3d("mobilenetv2", 0.05)


@pytest.fixture(scope="module")
def full_size() -> dict[str, Backbone3D]:
    with torch.device("meta"):  # shapes only
        return {"resnext101": build_backbone3d("resnext101"), "resnet18A": build_backbone3d("resnet18", shortcut="A"),
                "resnet50": build_backbone3d("resnet50"), "mobilenetv2": build_backbone3d("mobilenetv2"),
                "shufflenetv2": build_backbone3d("shufflenetv2", 2.0)}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_full_size_parameter_counts_match_the_published_models(full_size):
    # With the classifiers the originals have, the totals are those their papers report:
    # Hara's ResNeXt-101 (Kinetics-400) 48.34M; Köpüklü's MobileNetV2 1.0x 3.12M and
    # ShuffleNetV2 2.0x 6.64M (Kinetics-600).
    assert _count(full_size["resnext101"]) == 47_521_216
    assert _count(full_size["resnext101"]) + 2048 * 400 + 400 == 48_340_816
    assert _count(full_size["mobilenetv2"]) + 1280 * 600 + 600 == 3_122_648
    assert _count(full_size["shufflenetv2"]) + 2048 * 600 + 600 == 6_639_816
    assert [m.out_channels for m in full_size.values()] == [2048, 512, 2048, 1280, 2048]


def test_full_size_layouts_follow_the_originals(full_size):
    resnext = {k: tuple(v.shape) for k, v in full_size["resnext101"].state_dict().items()}
    assert resnext["conv1.weight"] == (64, 3, 7, 7, 7)
    assert resnext["layer1.0.conv1.weight"] == (128, 64, 1, 1, 1)
    assert resnext["layer1.0.conv2.weight"] == (128, 4, 3, 3, 3)  # 32 groups of 4
    assert resnext["layer1.0.conv3.weight"] == (256, 128, 1, 1, 1)
    assert resnext["layer1.0.downsample.0.weight"] == (256, 64, 1, 1, 1)
    assert resnext["layer4.2.conv3.weight"] == (2048, 1024, 1, 1, 1)
    assert [len(getattr(full_size["resnext101"], f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    model = full_size["resnext101"]
    assert model.conv1.stride == (1, 2, 2) and model.layer2[0].conv2.stride == (2, 2, 2)
    assert isinstance(model.maxpool, nn.MaxPool3d) and model.maxpool.stride == 2

    resnet18 = full_size["resnet18A"].state_dict()
    assert not [k for k in resnet18 if "downsample" in k]
    assert isinstance(full_size["resnet18A"].layer2[0].downsample, ZeroPadShortcut)
    assert tuple(full_size["resnet50"].state_dict()["layer1.0.conv3.weight"].shape) == (256, 64, 1, 1, 1)

    mobilenet = {k: tuple(v.shape) for k, v in full_size["mobilenetv2"].state_dict().items()}
    assert len(full_size["mobilenetv2"].features) == 19
    assert mobilenet["features.0.0.weight"] == (32, 3, 3, 3, 3)
    assert mobilenet["features.1.conv.0.weight"] == (32, 1, 3, 3, 3)  # expand ratio 1: depthwise first
    assert mobilenet["features.2.conv.0.weight"] == (96, 16, 1, 1, 1)
    assert mobilenet["features.18.0.weight"] == (1280, 320, 1, 1, 1)

    shufflenet = {k: tuple(v.shape) for k, v in full_size["shufflenetv2"].state_dict().items()}
    assert len(full_size["shufflenetv2"].features) == 16
    assert shufflenet["conv1.0.weight"] == (24, 3, 3, 3, 3)
    assert shufflenet["features.0.branch1.0.weight"] == (24, 1, 3, 3, 3)
    assert shufflenet["features.1.branch2.0.weight"] == (112, 112, 1, 1, 1)
    assert shufflenet["conv_last.0.weight"] == (2048, 976, 1, 1, 1)


def test_zero_pad_shortcut_subsamples_and_pads():
    x = torch.randn(2, 3, 5, 6, 7)
    out = ZeroPadShortcut(8, 2)(x)
    assert out.shape == (2, 8, 3, 3, 4)
    torch.testing.assert_close(out[:, :3], x[:, :, ::2, ::2, ::2], rtol=0, atol=0)
    assert (out[:, 3:] == 0).all()


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def _official(model: Backbone3D, rename=lambda key: key, head: dict | None = None, drop_batches=False) -> dict:
    """A checkpoint as Hara's/Köpüklü's DataParallel training writes it."""
    state = {f"module.{rename(k)}": v.clone() for k, v in model.state_dict().items()
             if not (drop_batches and k.endswith("num_batches_tracked"))}
    state.update({f"module.{k}": v for k, v in (head or {}).items()})
    return {"epoch": 200, "arch": model.name, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


def test_load_hara_resnext_checkpoint(tmp_path):
    source = _tiny("resnext101", seed=1)
    _randomise_batchnorm(source, 3)
    path = tmp_path / "resnext-101-kinetics.pth"
    torch.save(_official(source, head={"fc.weight": torch.randn(400, 256), "fc.bias": torch.zeros(400)}), path)
    target = _tiny("resnext101", seed=2)
    assert not _states_equal(source, target)
    load_kinetics_3d(target, path)
    assert _states_equal(source, target)
    clips = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(clips), source.eval()(clips), rtol=0, atol=0)


def test_load_efficient_3d_checkpoints_of_old_pytorch(tmp_path):
    for name, rename in (("shufflenetv2", lambda k: k.replace(".branch", ".banch")), ("mobilenetv2", lambda k: k)):
        source = _tiny(name, seed=1)
        _randomise_batchnorm(source, 3)
        checkpoint = _official(source, rename, head={"classifier.1.weight": torch.randn(600, source.out_channels),
                                                     "classifier.1.bias": torch.zeros(600)}, drop_batches=True)
        if name == "shufflenetv2":
            assert "module.features.0.banch1.0.weight" in checkpoint["state_dict"]
        else:
            assert "module.features.18.0.weight" in checkpoint["state_dict"]
        torch.save(checkpoint, tmp_path / f"{name}.pth")
        target = _tiny(name, seed=2)
        load_kinetics_3d(target, tmp_path / f"{name}.pth")
        for key, value in source.state_dict().items():
            if not key.endswith("num_batches_tracked"):  # absent from the file: ours kept
                assert torch.equal(target.state_dict()[key], value), key


def test_load_torchvision_state_dict():
    source = _tiny("s3d", seed=1)
    state = {**source.state_dict(), "classifier.1.weight": torch.zeros(400, 1024, 1, 1, 1)}
    target = _tiny("s3d", seed=2)
    load_kinetics_3d(target, state)
    assert _states_equal(source, target)


def test_load_errors_name_the_key_and_leave_the_model_untouched(tmp_path):
    target = _tiny("resnet18", seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}

    wider = build_backbone3d("resnet18", 0.25)
    torch.save(_official(wider), tmp_path / "wide.pth")
    with pytest.raises(ValueError, match=r"wide.pth: conv1.weight has shape \(16, 3, 7, 7, 7\) but the model's "
                                         r"conv1.weight has \(8, 3, 7, 7, 7\)"):
        load_kinetics_3d(target, tmp_path / "wide.pth")

    shortcut_a = _tiny("resnet18", shortcut="A")
    torch.save(_official(shortcut_a), tmp_path / "a.pth")
    with pytest.raises(ValueError, match=r"a.pth: does not fit ResNet3D: \d+ missing keys \['layer2.0.downsample"):
        load_kinetics_3d(target, tmp_path / "a.pth")

    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(8, 3, 7, 7, 7)}, "extra": 1}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="missing keys"):
        load_kinetics_3d(target, tmp_path / "x.pth")

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth: cannot be read as a plain PyTorch checkpoint"):
        load_kinetics_3d(target, tmp_path / "garbage.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        load_kinetics_3d(target, tmp_path / "list.pth")
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


@pytest.mark.parametrize("name", [name for name in BACKBONE_3D_NAMES if name != "s3d"])
def test_stage_features_at_strides_8_and_16_come_from_the_same_pass(name):
    model = _tiny(name).eval()
    clips = torch.randn(2, 3, 8, 64, 32)
    with torch.no_grad():
        out = model(clips)
        for stride in (8, 16):
            output, stage = model.forward_with_stage(clips, stride)
            assert stage.shape == (2, model.stage_channels(stride), 64 // stride, 32 // stride)
            torch.testing.assert_close(output, out)
    module_name, _ = model.stages[16]
    assert not model.get_submodule(module_name)._forward_hooks  # the capture hook is removed


def test_stage_features_are_the_named_module_averaged_over_time():
    model = _tiny("resnet18").eval()
    clips = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(clips))))
        expected = model.layer2(model.layer1(x)).mean(dim=2)
        _, stage = model.forward_with_stage(clips, 8)
    torch.testing.assert_close(stage, expected)


def test_missing_stage_names_the_backbone_and_the_strides_it_offers():
    with pytest.raises(ValueError, match=r"s3d has no declared stage at stride 8 \(offers none\)"):
        _tiny("s3d").stage_channels(8)
    with pytest.raises(ValueError, match=r"resnet18 has no declared stage at stride 4 \(offers strides \[8, 16\]\)"):
        _tiny("resnet18").forward_with_stage(torch.randn(1, 3, 4, 32, 32), 4)
