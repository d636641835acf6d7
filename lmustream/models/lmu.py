"""Legendre Memory Unit (Voelker et al., 2019) as used by LMUFormer (Liu et al., ICLR 2024).

The memory is the linear time-invariant system that approximates a delay of
``theta`` frames with Legendre polynomials of order ``M``:

    m_t = A m_{t-1} + B u_t                                     (eq. 1, m_{-1} = 0)

Because it is linear, all ``m_t`` of a sequence are the causal convolution of
``u`` with the impulse response ``H[:, t] = A^t B``, which the parallel (training)
path computes with an FFT; the recurrent path applies eq. 1 frame by frame.
Both paths share ``A`` and ``B`` and give the same result to float rounding.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from lmustream.errors import AudioError, ConfigError


@dataclass(frozen=True)
class LMUConfig:
    """Shape of one LMU cell."""

    input_size: int = 256  # channels of the sequence entering the cell (the block width)
    hidden_size: int = 256  # width of h_t
    memory_size: int = 256  # M: Legendre order (256 LMUFormer, 512 spiking LMUFormer)
    theta: float = 128.0  # window the memory spans, in frames (the paper's clip length)

    def __post_init__(self):
        for name in ("input_size", "hidden_size", "memory_size"):
            # int() would take 2.7 as 2 and True as 1: a typo would build another cell
            _check_order(getattr(self, name), f"LMUConfig.{name}")
        _check_theta(self.theta, "LMUConfig.theta")


def _check_theta(theta, what: str) -> None:
    if (isinstance(theta, (bool, np.bool_)) or not isinstance(theta, numbers.Real)
            or not (math.isfinite(theta) and theta > 0)):
        raise ConfigError(f"{what} must be a positive finite number of frames, got {theta!r}")


def _check_order(order, what: str) -> None:
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, numbers.Integral) or order < 1:
        raise ConfigError(f"{what} must be an integer >= 1, got {order!r}")


def legendre_delay_system(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous-time Legendre delay system ``(A_c [M, M], B_c [M])`` in float64.

    A_c[i, j] = R_i * (-1 if i < j else (-1)^(i-j+1)),  B_c[i] = R_i * (-1)^i,  R_i = (2i+1)/theta.
    ConfigError for an order that is not an integer >= 1 or a theta that is not positive and finite.
    """
    _check_order(order, "the Legendre memory order")
    _check_theta(theta, "the Legendre memory theta")
    order, theta = int(order), float(theta)
    i = torch.arange(order, dtype=torch.float64)
    R = (2 * i + 1) / theta  # (M,)
    ii, jj = torch.meshgrid(i, i, indexing="ij")
    sign = torch.where(ii < jj, -1.0, (-1.0) ** (ii - jj + 1))
    A_c = R[:, None] * sign  # (M, M)
    B_c = R * (-1.0) ** i  # (M,)
    return A_c, B_c


def lmu_state_space(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Discrete ``(A [M, M], B [M])`` of the Legendre memory, zero-order hold with dt = 1 frame, float64.

    ZOH via the augmented exponential: expm([[A_c, B_c], [0, 0]]) = [[A, B], [0, 1]],
    i.e. A = e^{A_c} and B = (int_0^1 e^{A_c s} ds) B_c.
    """
    A_c, B_c = legendre_delay_system(order, theta)
    aug = torch.zeros(order + 1, order + 1, dtype=torch.float64)
    aug[:order, :order] = A_c
    aug[:order, order] = B_c
    e = torch.linalg.matrix_exp(aug)
    return e[:order, :order].contiguous(), e[:order, order].contiguous()


def impulse_response(A: torch.Tensor, B: torch.Tensor, length: int) -> torch.Tensor:
    """``H [M, length]`` with ``H[:, t] = A^t B``, by doubling (log2(length) matrix products)."""
    H = B[:, None]  # (M, 1)
    power = A  # A^(columns of H so far)
    while H.shape[1] < length:
        H = torch.cat([H, power @ H], dim=1)  # (M, 2k): second half is A^k H
        power = power @ power
    return H[:, :length]


def _check_sequence(u, who: str) -> None:
    """AudioError unless ``u`` is a floating [batch >= 1, N >= 1] tensor (the FFT path fails obscurely otherwise)."""
    if not isinstance(u, torch.Tensor):
        raise AudioError(f"{who}: u must be a torch.Tensor [batch, N], got {type(u).__name__}")
    if u.ndim != 2 or u.shape[0] < 1 or u.shape[1] < 1:
        raise AudioError(f"{who}: u must be [batch >= 1, N >= 1], got shape {list(u.shape)}")
    if not u.is_floating_point():
        raise AudioError(f"{who}: u must be floating point, got {u.dtype}")


class LMUMemoryState(NamedTuple):
    """Recurrent state of the memory: ``m [batch, M]`` after the last frame seen."""

    m: torch.Tensor


class LegendreMemory(nn.Module):
    """The linear memory ``m_t = A m_{t-1} + B u_t`` with parallel (FFT) and recurrent paths.

    Holds no trainable parameters. ``A`` and ``B`` are derived from ``(order, theta)`` and kept
    in float64, and both paths accumulate the memory in float64 and return it in the input's
    dtype, so they agree to that dtype's rounding (what spiking thresholds need).
    """

    def __init__(self, order: int, theta: float):
        super().__init__()
        self.order = order
        self.theta = theta
        A, B = lmu_state_space(order, theta)
        self.register_buffer("A", A, persistent=False)  # (M, M) float64
        self.register_buffer("B", B, persistent=False)  # (M,)   float64
        self._H_cache: dict[tuple, torch.Tensor] = {}

    def _apply(self, fn, recurse=True):
        # Keep A and B in float64 whatever .float()/.half() does to the rest of the model:
        # they are constants, and the paths cast them on use.
        A, B = self.A, self.B
        out = super()._apply(fn, recurse)
        self.A = A.to(device=self.A.device, dtype=torch.float64)
        self.B = B.to(device=self.B.device, dtype=torch.float64)
        self._H_cache = {}
        return out

    def _fft_response(self, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """rfft of the impulse response zero-padded to 2*length, cached per (length, dtype, device)."""
        key = (length, dtype, device)
        if key not in self._H_cache:
            H = impulse_response(self.A, self.B, length)  # (M, N) float64
            spectrum = torch.fft.rfft(H, n=2 * length, dim=-1)  # (M, N+1) complex128
            complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
            self._H_cache[key] = spectrum.to(device=device, dtype=complex_dtype)
        return self._H_cache[key]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Parallel path: ``u [batch, N] -> m [batch, M, N]`` (m_{-1} = 0), any N >= 1.

        Computed in float64 and returned in u's dtype: the memory readout feeds thresholds (spiking
        models), so the parallel and the recurrent path must agree to the output's rounding.
        """
        _check_sequence(u, "LegendreMemory")
        N = u.shape[-1]
        fft_H = self._fft_response(N, torch.float64, u.device)  # (M, N+1) complex128
        U = torch.fft.rfft(u.double()[:, None, :], n=2 * N, dim=-1)  # (B, 1, N+1)
        m = torch.fft.irfft(U * fft_H, n=2 * N, dim=-1)[..., :N]  # (B, M, N)
        return m.to(u.dtype)

    def initial_state(self, batch: int, device=None) -> LMUMemoryState:
        """``m = 0``, float64 (the memory accumulates in float64 whatever the model's dtype)."""
        return LMUMemoryState(torch.zeros(batch, self.order, dtype=torch.float64, device=device))

    def step(self, u_t: torch.Tensor, state: LMUMemoryState) -> tuple[torch.Tensor, LMUMemoryState]:
        """Recurrent path, one frame: ``u_t [batch] -> m_t [batch, M]`` (eq. 1), in u_t's dtype."""
        m = state.m @ self.A.T + u_t.double()[:, None] * self.B  # (B, M) float64
        return m.to(u_t.dtype), LMUMemoryState(m)

    def recurrent(self, u: torch.Tensor, state: LMUMemoryState | None = None) -> torch.Tensor:
        """Recurrent path over a sequence: ``u [batch, N] -> m [batch, M, N]``, same contract as forward."""
        _check_sequence(u, "LegendreMemory.recurrent")
        if state is not None and tuple(state.m.shape) != (u.shape[0], self.order):
            raise ConfigError(f"LegendreMemory.recurrent: state m has shape {list(state.m.shape)}, "
                              f"expected [{u.shape[0]}, {self.order}]")
        if state is None:
            state = self.initial_state(u.shape[0], u.device)
        A_T, B, u64 = self.A.T, self.B, u.double()
        m, ms = state.m, []
        for t in range(u.shape[-1]):
            m = m @ A_T + u64[:, t, None] * B  # eq. 1, as in step()
            ms.append(m)
        return torch.stack(ms, dim=-1).to(u.dtype)  # (B, M, N)
