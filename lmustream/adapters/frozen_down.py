"""One product for an adapted layer whose down-projection is frozen: ``y = (W0 + U A) x + b``.

An adapted layer computes ``W0 x + U (A x)``: ``A [r, in]`` the down-projection, ``U [out, r]``
the up side (LoRA's ``s B``, AFLoRA's ``Lambda_u B Lambda_d``). While A trains, its gradient
``U^T g x^T`` needs the whole input again (for a convolution, unfolded), and the path costs two
extra activation-sized products each way. Once A is frozen (AFLoRA after its freezing score
says so; VeRA's shared A always), nothing of the path needs x beyond the r channels ``z = A x``:

    forward   y  = conv(x, W0 + U A) + b       one product, as the frozen model alone
              z  = A x                         r channels, kept for the backward pass
    backward  dx = conv_input_grad(g, W0 + U A)
              dU = sum over frames of g z^T    [out, r]

so a step costs what the frozen model's own forward and backward passes cost, plus the r-channel
``A x``. This is where adaptive freezing saves time, not only trainable parameters. The result
equals the two-path form to float rounding (tests/adapters/test_frozen_down.py).

Under autocast (bfloat16 fine-tuning on a CPU that computes it natively) the products run in the
autocast dtype: ``W0 + U A`` is formed in float32 and then rounded, and U's gradient is summed in
float32, as autocast's own convolutions would treat the two-path form.
"""

from __future__ import annotations

import torch


class FrozenDownProduct(torch.autograd.Function):
    """``(x, U) -> (W0 + U A) x + b`` for an adapted layer ``layer`` with frozen ``W0``, ``b`` and ``A``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, U: torch.Tensor, layer, A: torch.Tensor) -> torch.Tensor:
        # The products run in x's dtype (float32, or the autocast dtype x was cast to).
        weight = merged_weight(layer, A, U).to(x.dtype)
        A = A.to(x.dtype)
        with torch.no_grad():  # (B, r, N) or (..., r); for a pointwise convolution a matrix product is
            # several times faster than the convolution kernels at so few output channels
            z = torch.matmul(A, x) if layer.is_conv and layer.kernel == 1 else layer.down(x, A)
        ctx.layer = layer
        ctx.x_shape = x.shape
        ctx.U_dtype = U.dtype
        ctx.save_for_backward(weight, z)
        bias = None if layer.base.bias is None else layer.base.bias.to(x.dtype)
        return layer.apply_like_base(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, z = ctx.saved_tensors
        layer = ctx.layer
        grad_x = grad_U = None
        if ctx.needs_input_grad[0]:
            grad_x = input_gradient(layer, grad, weight, ctx.x_shape)
        if ctx.needs_input_grad[1]:
            if layer.is_conv:  # sum over batch and frames of g z^T
                grad_U = torch.bmm(grad, z.transpose(1, 2)).sum(0, dtype=torch.float32)
            else:
                grad_U = grad.reshape(-1, grad.shape[-1]).T @ z.reshape(-1, z.shape[-1])
            grad_U = grad_U.to(ctx.U_dtype)
        return grad_x, grad_U, None, None


def merged_weight(layer, A: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """``W0 + U A`` in the base weight's shape ([out, in] or [out, in_ch, k])."""
    return layer.base.weight + (U @ A).view_as(layer.base.weight)


def input_gradient(layer, grad: torch.Tensor, weight: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
    """dL/dx of ``apply_like_base(x, weight)`` (centred or causal convolution, or linear)."""
    if not layer.is_conv:
        return grad @ weight
    if getattr(layer.base, "causal", False):  # the input was left-padded by k - 1 frames
        k = layer.kernel
        padded = (*x_shape[:-1], x_shape[-1] + k - 1)
        return torch.nn.grad.conv1d_input(padded, weight, grad)[..., k - 1:]
    return torch.nn.grad.conv1d_input(x_shape, weight, grad, padding=layer.base.padding)


def frozen_down_forward(layer, x: torch.Tensor, A: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """``W0 x + b + U A x`` through :class:`FrozenDownProduct` (A must not require a gradient)."""
    if not torch.is_grad_enabled() or torch.jit.is_tracing():
        # Evaluation, or tracing (ONNX export): the merged weight alone, no A x to keep, plain operators.
        return layer.apply_like_base(x, merged_weight(layer, A, U), layer.base.bias)
    device = x.device.type
    if torch.is_autocast_enabled(device):  # the Function runs in the autocast dtype, autocast off inside
        with torch.autocast(device, enabled=False):
            return FrozenDownProduct.apply(x.to(torch.get_autocast_dtype(device)), U, layer, A)
    return FrozenDownProduct.apply(x, U, layer, A)


def usable(layer, A: torch.Tensor) -> bool:
    """Whether the single product applies: A and the base layer frozen (the Function forms no gradient
    for them)."""
    frozen = [A, layer.base.weight] + ([] if layer.base.bias is None else [layer.base.bias])
    return not any(t.requires_grad for t in frozen)
