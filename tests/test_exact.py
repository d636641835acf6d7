"""The float64-accumulated affine maps of spiking models (lmustream/models/exact.py)."""

import copy

import pytest
import torch
from torch import nn

from lmustream.models import LMUFormer, get_config
from lmustream.models import exact
from lmustream.models.lmuformer import FrameConv
from lmustream.selftest import randomize_batchnorm
from lmustream.stream.step import StepLMUFormer


def bn(channels, seed=0):
    g = torch.Generator().manual_seed(seed)
    layer = nn.BatchNorm1d(channels)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(channels, generator=g) + 0.5)
        layer.bias.copy_(torch.randn(channels, generator=g))
        layer.running_mean.copy_(torch.randn(channels, generator=g))
        layer.running_var.copy_(torch.rand(channels, generator=g) + 0.2)
    return layer.eval()


@pytest.mark.parametrize("causal", [False, True])
def test_conv_bn_is_the_composition_rounded_once(causal):
    torch.manual_seed(0)
    conv, norm = FrameConv(6, 5, 3, causal).eval(), bn(5)
    x = torch.randn(2, 6, 40)
    want = norm(conv(x))
    got = exact.conv_bn(conv, norm, x, left_pad=2 if causal else None)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max() <= 1e-5
    # what it computes: the float64 composition, rounded to float32 once
    conv64, norm64 = copy.deepcopy(conv).double(), copy.deepcopy(norm).double()
    ref = norm64(conv64(x.double()))
    assert ((got.double() - ref).abs() <= ref.abs() * 2.0 ** -24 * 1.01).all()  # within float32 rounding


def test_linear_bn_and_batch_norm():
    torch.manual_seed(1)
    linear, norm = nn.Linear(7, 4).eval(), bn(4, seed=1)
    x = torch.randn(3, 20, 7)  # [B, N, in]
    assert (exact.linear_bn(linear, norm, x) - norm(linear(x).transpose(1, 2))).abs().max() <= 1e-5
    assert (exact.linear_bn(linear, None, x) - linear(x).transpose(1, 2)).abs().max() <= 1e-5
    y = torch.randn(3, 4, 20)
    assert (exact.batch_norm(norm, y) - norm(y)).abs().max() <= 1e-5


def test_training_mode_uses_the_ordinary_layers():
    torch.manual_seed(2)
    conv, norm = FrameConv(4, 4, 3, False), nn.BatchNorm1d(4)  # training: batch statistics
    x = torch.randn(5, 4, 30, requires_grad=True)
    y = exact.conv_bn(conv, norm, x)
    assert torch.equal(y, norm(conv(x)))
    y.sum().backward()
    assert x.grad is not None and conv.weight.grad is not None


def test_wrapped_layers_run_their_own_forward():
    """An adapter-wrapped layer is not a plain Conv1d: its extra path must not be skipped."""

    class Wrapped(nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.base = conv
            self.kernel_size = conv.kernel_size

        def forward(self, x):
            return self.base(x) + 1.0

    conv = FrameConv(3, 3, 3, False).eval()
    x = torch.randn(1, 3, 10)
    assert torch.allclose(exact.conv_bn(Wrapped(conv), None, x), conv(x) + 1.0)


def test_step_form_keeps_the_spiking_folds_in_float64():
    torch.manual_seed(0)
    model = randomize_batchnorm(LMUFormer(get_config("slmuformer-tiny", n_classes=4)), 0).eval()
    step = StepLMUFormer(model).float()
    assert step.embed0_W.dtype == torch.float64 and step.block0_in_bn_scale.dtype == torch.float64
    assert step.head_W.dtype == torch.float32  # the head feeds no threshold
    plain = StepLMUFormer(randomize_batchnorm(LMUFormer(get_config("lmuformer-tiny", n_classes=4)), 0).eval())
    assert plain.embed0_W.dtype == torch.float32
    # the same bits as the parallel model's float64 fold
    W, b = exact.fold_into_linear(model.embed.convs[0].weight, None, model.embed.bns[0], torch.float64)
    assert torch.equal(step.embed0_W, W) and torch.equal(step.embed0_b, b)
