import pytest
import torch
from torch import nn

from restaurant_action.models.layers import ConvBNAct, ResidualBlock, fuse_conv_bn, scale_channels, scale_depth


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)


def test_conv_bn_act_shape_and_leaky_slope():
    block = ConvBNAct(4, 8, kernel_size=3, stride=2).eval()
    assert block(torch.randn(2, 4, 16, 12)).shape == (2, 8, 8, 6)
    assert block.conv.bias is None and block.conv.padding == (1, 1)
    assert block.act.negative_slope == 0.1


def test_residual_block_adds_its_input():
    block = ResidualBlock(8, 4).eval()
    with torch.no_grad():
        block.conv2.bn.weight.zero_()
        block.conv2.bn.bias.zero_()
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(block(x), x)


def test_fuse_conv_bn_keeps_outputs_and_removes_batchnorm():
    torch.manual_seed(0)
    model = nn.Sequential(ConvBNAct(3, 8, 3), ResidualBlock(8, 4), ConvBNAct(8, 16, 3, stride=2)).eval()
    _randomise_batchnorm(model)
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    assert fuse_conv_bn(model) is model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.fused and m.conv.bias is not None for m in model.modules() if isinstance(m, ConvBNAct))
    torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=0)


def test_fuse_conv_bn_refuses_training_mode():
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(ConvBNAct(3, 8))


def test_scale_channels_and_depth():
    assert [scale_channels(c, 1.0) for c in (32, 64, 1024)] == [32, 64, 1024]
    assert [scale_channels(c, 0.125) for c in (32, 64, 1024)] == [8, 8, 128]
    assert scale_channels(100, 0.5) == 56
    assert [scale_depth(n, 0.34) for n in (1, 2, 8, 4)] == [1, 1, 3, 1]
    with pytest.raises(ValueError):
        scale_channels(32, 0.0)
    with pytest.raises(ValueError):
        scale_depth(8, -1.0)
