"""Leaky integrate-and-fire neurons, multi-step over the frame axis.

Per neuron, with membrane ``v`` (v = 0 before the first frame) and input ``x_t``:

    h_t = v_{t-1} + (x_t - v_{t-1}) / tau        (charge, decay_input)      (eq. 2)
    s_t = 1 if h_t - v_th >= 0 else 0             (fire, Heaviside H(0) = 1)  (eq. 3)
    v_t = h_t (1 - s_t) + v_reset s_t             (hard reset)                (eq. 4)

These are the semantics of the LMUFormer reference (spikingjelly's MultiStepLIFNode with
tau = 2, v_reset = 0, detach_reset = True and a Sigmoid(alpha = 4) surrogate gradient).
The membrane is explicit state: ``forward`` starts from rest unless given a state, and
``step`` carries it from frame to frame; nothing is remembered between calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lmustream.errors import ConfigError
from lmustream.models import lif_triton


class _SigmoidSurrogateSpike(torch.autograd.Function):
    """Heaviside forward; derivative of sigmoid(alpha * x) backward (spikingjelly's Sigmoid surrogate)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad_out * ctx.alpha * sg * (1 - sg), None


def lif_update(x_t, v, tau, v_threshold, v_reset):
    """Eqs. 2-4 for one frame, no gradient semantics: ``(spikes s_t, membrane v_t, charge h_t)``."""
    h = v + (x_t - v) / tau  # eq. 2
    s = (h - v_threshold >= 0).to(x_t.dtype)  # eq. 3
    return s, h * (1 - s) + v_reset * s, h  # eq. 4


class _MultiStepLIF(torch.autograd.Function):
    """Eqs. 2-4 over all frames in one autograd node, with a hand-written backward through time.

    Same arithmetic as :meth:`LIF.step` frame by frame (so the same spikes, bit for bit), but
    the backward pass is one loop instead of an autograd graph of ~6 nodes per frame, which
    is what makes spiking training slow.
    """

    @staticmethod
    def forward(ctx, x, v0, tau, v_threshold, v_reset, alpha, detach_reset):
        ctx.constants = (tau, v_threshold, v_reset, alpha, detach_reset)
        if lif_triton.available(x):
            s, h = lif_triton.forward(x, v0, tau, v_threshold, v_reset)
            ctx.save_for_backward(h, s)
            return s
        v, hs, spikes = v0, [], []
        for t in range(x.shape[-1]):
            s, v, h = lif_update(x[..., t], v, tau, v_threshold, v_reset)
            hs.append(h)
            spikes.append(s)
        h, s = torch.stack(hs, -1), torch.stack(spikes, -1)
        ctx.save_for_backward(h, s)
        return s

    @staticmethod
    def backward(ctx, grad_s):
        h, s = ctx.saved_tensors
        tau, v_threshold, v_reset, alpha, detach_reset = ctx.constants
        if lif_triton.available(h):
            grad_x, grad_v = lif_triton.backward(grad_s, h, s, tau, v_threshold, v_reset, alpha, detach_reset)
            return grad_x, grad_v, None, None, None, None, None
        sg = torch.sigmoid(alpha * (h - v_threshold))
        dsdh = alpha * sg * (1 - sg)  # surrogate dS/dH for every frame at once
        grad_x = torch.empty_like(grad_s)
        grad_v = torch.zeros_like(grad_s[..., 0])
        for t in range(grad_s.shape[-1] - 1, -1, -1):
            # v_t = h_t (1 - s_t) + v_reset s_t; s_t = S(h_t)
            dv_dh = 1 - s[..., t]
            if not detach_reset:
                dv_dh = dv_dh + (v_reset - h[..., t]) * dsdh[..., t]
            grad_h = grad_s[..., t] * dsdh[..., t] + grad_v * dv_dh
            grad_x[..., t] = grad_h / tau  # dh_t/dx_t
            grad_v = grad_h * (1 - 1 / tau)  # dh_t/dv_{t-1}
        return grad_x, grad_v, None, None, None, None, None


def spike(x: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    """Heaviside step ``x >= 0`` with a sigmoid surrogate gradient of steepness ``alpha``."""
    return _SigmoidSurrogateSpike.apply(x, alpha)


@dataclass(frozen=True)
class LIFConfig:
    tau: float = 2.0  # membrane time constant, in frames
    v_threshold: float = 1.0  # firing threshold (the LMU block's input neurons use 0.5)
    v_reset: float = 0.0  # hard reset value
    surrogate_alpha: float = 4.0  # steepness of the sigmoid surrogate gradient
    detach_reset: bool = True  # the reset does not propagate gradient (reference behaviour)

    def __post_init__(self):
        for name in ("tau", "v_threshold", "v_reset", "surrogate_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"LIFConfig.{name} must be a finite number, got {value!r}")
        # tau <= 0 divides by zero or makes the membrane grow without bound; alpha <= 0 kills the surrogate gradient
        for name in ("tau", "surrogate_alpha"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"LIFConfig.{name} must be positive, got {getattr(self, name)!r}")
        if not isinstance(self.detach_reset, bool):  # "no" would be truthy
            raise ConfigError(f"LIFConfig.detach_reset must be True or False, got {self.detach_reset!r}")


class LIF(nn.Module):
    """Multi-step LIF layer over the last axis: ``x [..., N] -> spikes [..., N]`` (0/1, x's dtype).

    Every other entry (batch, channel) is an independent neuron.
    """

    def __init__(self, config: LIFConfig = LIFConfig()):
        super().__init__()
        if not isinstance(config, LIFConfig):
            raise ConfigError(f"LIF needs a LIFConfig, got {type(config).__name__}")
        self.config = config

    def extra_repr(self) -> str:
        c = self.config
        return f"tau={c.tau}, v_threshold={c.v_threshold}, v_reset={c.v_reset}"

    def initial_state(self, like: torch.Tensor) -> torch.Tensor:
        """Membrane at rest, shaped like one frame of the input (``x[..., 0]``)."""
        return torch.full_like(like, self.config.v_reset)

    def step(self, x_t: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: ``(x_t, v_{t-1}) -> (s_t, v_t)``, eqs. 2-4."""
        c = self.config
        h = v + (x_t - v) / c.tau  # eq. 2
        s = spike(h - c.v_threshold, c.surrogate_alpha)  # eq. 3
        s_reset = s.detach() if c.detach_reset else s
        v = h * (1 - s_reset) + c.v_reset * s_reset  # eq. 4
        return s, v

    def forward(self, x: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        if x.dtype in (torch.bfloat16, torch.float16) and not lif_triton.available(x):
            x = x.float()  # the membrane integrates in float32 under autocast, as the Triton kernel does
        if v is None:
            v = self.initial_state(x[..., 0])
        c = self.config
        return _MultiStepLIF.apply(x, v, c.tau, c.v_threshold, c.v_reset, c.surrogate_alpha, c.detach_reset)
