"""The multi-step LIF scan as two Triton kernels (CUDA only): one program per block of neurons
walks the frames in order, so a whole layer costs one launch forward and one backward instead
of several per frame.

Same arithmetic as ``LIF.step`` (IEEE-rounded division, no fused multiply-add across the
threshold test), so spikes equal the PyTorch loop's. Used by ``spiking._MultiStepLIF`` when the
input is on a CUDA device and Triton imports; everything else uses the PyTorch loop.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the PyTorch loop is used
    triton = None

BLOCK = 256


def available(x: torch.Tensor) -> bool:
    # half-precision inputs (autocast) are integrated in float32; spikes are exact in any dtype
    return triton is not None and x.is_cuda and x.dtype in (torch.float32, torch.bfloat16, torch.float16)


if triton is not None:

    @triton.jit
    def _lif_forward(x_ptr, v0_ptr, s_ptr, h_ptr, n, T, tau, v_th, v_reset, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
        for t in range(T):
            x = tl.load(x_ptr + t * n + offs, mask=mask, other=0.0)
            h = v + tl.math.div_rn(x - v, tau)  # eq. 2
            s = tl.where(h - v_th >= 0, 1.0, 0.0).to(h.dtype)  # eq. 3
            v = h * (1.0 - s) + v_reset * s  # eq. 4
            tl.store(h_ptr + t * n + offs, h, mask=mask)
            tl.store(s_ptr + t * n + offs, s, mask=mask)

    @triton.jit
    def _lif_backward(gs_ptr, h_ptr, s_ptr, gx_ptr, gv0_ptr, n, T, tau, v_th, v_reset, alpha,
                      DETACH: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        gv = tl.zeros((BLOCK,), dtype=tl.float32)
        for i in range(T):
            t = T - 1 - i
            gs = tl.load(gs_ptr + t * n + offs, mask=mask, other=0.0).to(tl.float32)
            h = tl.load(h_ptr + t * n + offs, mask=mask, other=0.0).to(tl.float32)
            s = tl.load(s_ptr + t * n + offs, mask=mask, other=0.0).to(tl.float32)
            sg = tl.sigmoid(alpha * (h - v_th))
            dsdh = alpha * sg * (1.0 - sg)
            dvdh = 1.0 - s
            if not DETACH:
                dvdh = dvdh + (v_reset - h) * dsdh
            gh = gs * dsdh + gv * dvdh
            tl.store(gx_ptr + t * n + offs, gh / tau, mask=mask)
            gv = gh * (1.0 - 1.0 / tau)
        tl.store(gv0_ptr + offs, gv, mask=mask)


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """[..., T] -> contiguous [T, n] (n = neurons), so that each frame is one coalesced row."""
    return x.movedim(-1, 0).reshape(x.shape[-1], -1).contiguous()


def _back(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[T, n] -> the layout of ``like`` [..., T]."""
    return y.reshape(like.shape[-1], *like.shape[:-1]).movedim(0, -1)


def forward(x, v0, tau, v_threshold, v_reset):
    """(spikes [..., T], membrane before the threshold h [..., T]) for input x [..., T]."""
    xt = _time_major(x.float())
    T, n = xt.shape
    s, h = torch.empty_like(xt), torch.empty_like(xt)
    v0 = v0.reshape(-1).contiguous().float()
    _lif_forward[(triton.cdiv(n, BLOCK),)](xt, v0, s, h, n, T, float(tau), float(v_threshold), float(v_reset),
                                           BLOCK=BLOCK)
    return _back(s, x).to(x.dtype), _back(h, x)


def backward(grad_s, h, s, tau, v_threshold, v_reset, alpha, detach_reset):
    """(grad of x [..., T], grad of the initial membrane [...]) by the scan run backwards."""
    gst, ht, st = _time_major(grad_s.float()), _time_major(h), _time_major(s.float())
    T, n = gst.shape
    gx = torch.empty_like(gst)
    gv0 = torch.empty(n, dtype=torch.float32, device=gst.device)
    _lif_backward[(triton.cdiv(n, BLOCK),)](gst, ht, st, gx, gv0, n, T, float(tau), float(v_threshold),
                                            float(v_reset), float(alpha), DETACH=bool(detach_reset), BLOCK=BLOCK)
    return _back(gx, grad_s).to(grad_s.dtype), gv0.reshape(grad_s.shape[:-1]).to(grad_s.dtype)
