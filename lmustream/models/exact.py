"""Batch-norm folding, and the float64 accumulation of the spiking LMUFormer's threshold inputs.

A LIF neuron turns its charge into a spike by a comparison with a threshold, so a charge that
lands within float32 rounding of the threshold spikes or not depending on the order in which
its dot product was summed. The parallel model (convolutions over all frames) and the step form
(one matrix-vector product per frame) sum in different orders; in float32 a rare such tie flips
a spike, and the Legendre memory then carries the difference for about theta frames, so one
tie becomes thousands of differing spikes.

Both forms of a spiking model in eval mode therefore compute every affine map of the network
(convolution or linear layer with the batch norm that follows it folded in, or a batch norm
alone) the same way: the folded weights in float64, made by the functions below from the same
float32 parameters (so both forms hold the same bits), products summed in float64, and the
result rounded once to the model's dtype. Two float64 sums of the same terms differ by about
1e-16 relative, so the rounded float32 values are the same bits except when the exact value
sits within 1e-16 of a float32 rounding boundary, and spikes agree. Weights, activations and
state stay in the model's dtype; only the accumulators are wider, as the Legendre memory's are.
Training (batch statistics) uses the ordinary layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACCUMULATOR = torch.float64


def fold_bn(bn: nn.BatchNorm1d, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as a per-channel affine ``y = scale * x + shift`` (in ``dtype``, default
    the batch norm's own)."""
    dtype = dtype or bn.weight.dtype
    weight, bias = bn.weight.detach().to(dtype), bn.bias.detach().to(dtype)
    mean, var = bn.running_mean.to(dtype), bn.running_var.to(dtype)
    scale = weight / torch.sqrt(var + bn.eps)
    return scale, bias - mean * scale


def fold_into_linear(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d | None,
                     dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``BN(W x + b)`` as one ``W' x + b'`` in ``dtype`` (default the weight's); ``weight`` is
    [out, in, (k)], returned flattened to [out, in*k]."""
    dtype = dtype or weight.dtype
    W = weight.detach().to(dtype).reshape(weight.shape[0], -1)
    b = torch.zeros(W.shape[0], dtype=dtype, device=W.device) if bias is None else bias.detach().to(dtype)
    if bn is None:
        return W.clone(), b.clone()
    scale, shift = fold_bn(bn, dtype)
    return W * scale[:, None], b * scale + shift


def _eval(*modules: nn.Module | None) -> bool:
    return not any(m is not None and m.training for m in modules)


def _plain(layer: nn.Module, kind: type) -> bool:
    # An adapter-wrapped layer (lmustream.adapters) computes its own extra path: run it as it is.
    return isinstance(layer, kind)


def conv_bn(conv: nn.Conv1d, bn: nn.BatchNorm1d | None, x: torch.Tensor, left_pad: int | None = None) -> torch.Tensor:
    """``bn(conv(x))`` over ``x [B, Cin, N]``; in eval mode accumulated in float64 and rounded once.

    ``left_pad``: frames of zeros before the first frame (causal convolutions); None: the conv's own
    symmetric padding.
    """
    if not (_eval(conv, bn) and _plain(conv, nn.Conv1d)):
        y = conv(x)
        return y if bn is None else bn(y)
    W, b = fold_into_linear(conv.weight, conv.bias, bn, ACCUMULATOR)
    k = conv.kernel_size[0]
    pad = (left_pad, 0) if left_pad is not None else (conv.padding[0], conv.padding[0])
    x64 = F.pad(x.to(ACCUMULATOR), pad)
    return F.conv1d(x64, W.view(W.shape[0], -1, k), b).to(x.dtype)


def linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d | None, x: torch.Tensor) -> torch.Tensor:
    """``bn(linear(x))`` with ``x [B, N, in]`` -> ``[B, out, N]`` (channels first, as batch norms
    and LIF layers take them); in eval mode accumulated in float64 and rounded once."""
    if not (_eval(linear, bn) and _plain(linear, nn.Linear)):
        y = linear(x).transpose(1, 2)
        return y if bn is None else bn(y)
    W, b = fold_into_linear(linear.weight, linear.bias, bn, ACCUMULATOR)
    return F.linear(x.to(ACCUMULATOR), W, b).transpose(1, 2).to(x.dtype)


def batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` over ``x [B, C, N]``; in eval mode as ``scale * x + shift`` in float64, rounded once."""
    if not _eval(bn):
        return bn(x)
    scale, shift = fold_bn(bn, ACCUMULATOR)
    return (x.to(ACCUMULATOR) * scale[:, None] + shift[:, None]).to(x.dtype)
