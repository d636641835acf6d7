"""LMUFormer and spiking LMUFormer (Liu et al., ICLR 2024).

    x [B, N, n_mels]  (log-mel frames)
      -> patch embedding: a stack of Conv1d over time (mel bins as channels) + a residual
         "relative position" conv                                   z [B, C, N]
      -> depth x block:  z = z + LMUMixer(z);  z = z + ChannelMixer(z)
      -> head: per-frame Linear(C, classes), averaged over frames (mode "mean"), or applied
         to the running mean of the features at every prefix (mode "all_seq").

The spiking variant puts LIF neurons after the batch norms so that every convolution and
linear layer inside the network receives 0/1 spikes; the embedding output, the block
residual stream and the logits stay real-valued. Internal layout is [B, C, N] throughout
(channels, frames) so that LIF neurons integrate along the last axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmustream.errors import AudioError, ConfigError
from lmustream.models import exact
from lmustream.models.lmu import LegendreMemory
from lmustream.models.spiking import LIF, LIFConfig
from lmustream.ranges import check_flag

OUTPUT_MODES = ("mean", "all_seq", "frames")
MEMORY_PATHS = ("fft", "recurrent")

# Bounds of the C++ kernel's reader (csrc/artifact.h, validate_config), so that every config
# Python accepts also loads there.
MAX_WIDTH = 1 << 16  # n_mels, n_classes, dim, mlp_ratio * dim
MIN_THETA, MAX_THETA = 1e-3, 1e9
_INT_LIMITS = {"n_mels": MAX_WIDTH, "n_classes": MAX_WIDTH, "dim": MAX_WIDTH, "depth": 64, "mlp_ratio": 64,
               "memory_size": 4096, "embed_convs": 64, "kernel_size": 63, "frames": 2**31 - 1}
_BOOL_FIELDS = ("causal", "spiking")


@dataclass(frozen=True)
class LMUFormerConfig:
    """Everything that defines an LMUFormer's shape; stored inside every model file."""

    n_mels: int = 128  # input channels: log-mel bins per frame
    n_classes: int = 35  # output logits (35 = Speech Commands v2 words)
    dim: int = 256  # C: width of the residual stream
    depth: int = 1  # number of (LMU mixer + channel mixer) blocks
    mlp_ratio: int = 4  # channel mixer hidden width = mlp_ratio * dim
    memory_size: int = 256  # M: Legendre memory order (paper: 256, spiking 512)
    theta: float = 128.0  # frames the Legendre memory spans (paper: the 128-frame clip)
    embed_convs: int = 4  # convolutions in the patch embedding (before the residual one)
    kernel_size: int = 3  # temporal kernel of every embedding convolution (odd)
    causal: bool = False  # True: left-padded embedding convs, no look-ahead (D = 0)
    spiking: bool = False  # LIF neurons after the batch norms (spiking LMUFormer)
    lif_tau: float = 2.0  # LIF membrane time constant, frames
    lif_threshold: float = 1.0  # LIF threshold of every neuron ...
    lmu_input_threshold: float = 0.5  # ... except those feeding the LMU mixer
    frames: int = 128  # training clip length in frames (data pipeline pads/crops to it; the model takes any N)

    def __post_init__(self):
        # Bools are ints to Python and any object is truthy, so True as a width or "false" as a flag
        # would build another model than the C++ kernel builds from the same file: types are exact.
        for name, value in ((f.name, getattr(self, f.name)) for f in fields(self)):
            if name in _BOOL_FIELDS:
                object.__setattr__(self, name, check_flag(f"LMUFormerConfig.{name}", value))
            elif name in _INT_LIMITS:
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                    raise ConfigError(f"LMUFormerConfig.{name} must be an integer, got {value!r}")
                object.__setattr__(self, name, int(value))
            else:
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                    raise ConfigError(f"LMUFormerConfig.{name} must be a number, got {value!r}")
                try:
                    object.__setattr__(self, name, float(value))
                except OverflowError:  # an int beyond float range
                    raise ConfigError(f"LMUFormerConfig.{name} is beyond the float range") from None
        # The C++ kernel's limits (csrc/artifact.h): a model outside them could be trained but not deployed.
        for name, high in _INT_LIMITS.items():
            value = getattr(self, name)
            if not 1 <= value <= high:
                raise ConfigError(f"LMUFormerConfig.{name} must be an integer in [1, {high}], got {value}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"LMUFormerConfig.kernel_size must be odd, got {self.kernel_size}")
        if self.mlp_ratio * self.dim > MAX_WIDTH:
            raise ConfigError(f"LMUFormerConfig: mlp_ratio * dim = {self.mlp_ratio * self.dim} exceeds {MAX_WIDTH}")
        for name in ("theta", "lif_tau", "lif_threshold", "lmu_input_threshold"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"LMUFormerConfig.{name} must be a positive finite number, got {value!r}")
        if not MIN_THETA <= self.theta <= MAX_THETA:
            raise ConfigError(f"LMUFormerConfig.theta must be in [{MIN_THETA:g}, {MAX_THETA:g}] frames, "
                              f"got {self.theta!r}")

    @property
    def lookahead(self) -> int:
        """D: frames of future input the output at frame t depends on (0 when causal)."""
        return 0 if self.causal else (self.embed_convs + 1) * (self.kernel_size // 2)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LMUFormerConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"LMUFormerConfig.from_dict: expected a mapping of fields, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown LMUFormerConfig keys: {', '.join(unknown)}")
        return cls(**d)


# Named configurations. "paper" sizes are those of the LMUFormer paper (Speech Commands v2,
# 35 words, 128 mel x 128 frames); the edge sizes keep the architecture and shrink the width.
NAMED_CONFIGS: dict[str, LMUFormerConfig] = {
    "lmuformer": LMUFormerConfig(),
    "slmuformer": LMUFormerConfig(spiking=True, memory_size=512),
    "lmuformer-small": LMUFormerConfig(dim=128, memory_size=128),
    "slmuformer-small": LMUFormerConfig(dim=128, memory_size=256, spiking=True),
    "lmuformer-tiny": LMUFormerConfig(dim=64, memory_size=64, mlp_ratio=2, embed_convs=2),
    "slmuformer-tiny": LMUFormerConfig(dim=64, memory_size=128, mlp_ratio=2, embed_convs=2, spiking=True),
}


def get_config(name: str, **overrides) -> LMUFormerConfig:
    """A named configuration with fields overridden, e.g. ``get_config("lmuformer-small", n_classes=12)``."""
    if not isinstance(name, str) or name not in NAMED_CONFIGS:
        raise ConfigError(f"unknown model configuration {name!r}; known: {', '.join(NAMED_CONFIGS)}")
    unknown = sorted(set(overrides) - {f.name for f in fields(LMUFormerConfig)})
    if unknown:
        raise ConfigError(f"unknown LMUFormerConfig keys: {', '.join(unknown)}")
    return replace(NAMED_CONFIGS[name], **overrides)


class FrameConv(nn.Conv1d):
    """Conv1d over frames without bias; centred ("same") padding, or left padding when causal."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, causal: bool):
        super().__init__(in_channels, out_channels, kernel_size, bias=False,
                         padding=0 if causal else kernel_size // 2)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:
            x = F.pad(x, (self.kernel_size[0] - 1, 0))
        return super().forward(x)


def frame_conv_bn(conv: nn.Module, bn: nn.BatchNorm1d | None, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))`` of a spiking model (see :mod:`lmustream.models.exact`)."""
    causal = getattr(conv, "causal", False)
    return exact.conv_bn(conv, bn, x, left_pad=conv.kernel_size[0] - 1 if causal else None)


def pointwise(in_channels: int, out_channels: int) -> nn.Conv1d:
    """1x1 convolution (a per-frame linear map on [B, C, N]) with bias."""
    return nn.Conv1d(in_channels, out_channels, kernel_size=1)


def _lif(config: LMUFormerConfig, threshold: float | None = None) -> LIF:
    v_th = config.lif_threshold if threshold is None else threshold
    return LIF(LIFConfig(tau=config.lif_tau, v_threshold=v_th))


class PatchEmbedding(nn.Module):
    """E x [Conv -> ReLU -> BN], then z + rpe(z).  [B, n_mels, N] -> [B, C, N]."""

    def __init__(self, c: LMUFormerConfig):
        super().__init__()
        widths = [c.n_mels] + [c.dim] * c.embed_convs
        self.convs = nn.ModuleList(FrameConv(a, b, c.kernel_size, c.causal) for a, b in zip(widths, widths[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(c.dim) for _ in range(c.embed_convs))
        self.rpe = FrameConv(c.dim, c.dim, c.kernel_size, c.causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns):
            x = bn(F.relu(conv(x)))  # (B, C, N)
        return x + self.rpe(x)


class SpikingPatchEmbedding(nn.Module):
    """Conv, then (E-1) x [BN -> LIF -> Conv]; z = y + rpe(LIF(BN(y))).  [B, n_mels, N] -> [B, C, N].

    The output is real-valued (spikes only inside).
    """

    def __init__(self, c: LMUFormerConfig):
        super().__init__()
        widths = [c.n_mels] + [c.dim] * c.embed_convs
        self.convs = nn.ModuleList(FrameConv(a, b, c.kernel_size, c.causal) for a, b in zip(widths, widths[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(c.dim) for _ in range(c.embed_convs))
        self.lifs = nn.ModuleList(_lif(c) for _ in range(c.embed_convs))
        self.rpe = FrameConv(c.dim, c.dim, c.kernel_size, c.causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv_i -> BN_i -> LIF_i for all but the last conv, whose output y is also the residual
        for conv, bn, lif in zip(self.convs[:-1], self.bns, self.lifs):
            x = lif(frame_conv_bn(conv, bn, x))  # spikes (B, C, N)
        y = frame_conv_bn(self.convs[-1], None, x)  # (B, C, N)
        return y + frame_conv_bn(self.rpe, None, self.lifs[-1](exact.batch_norm(self.bns[-1], y)))


class LMUMixer(nn.Module):
    """Token mixing by a Legendre memory.  [B, C, N] -> [B, C, N].

        u_t = ReLU(W_u x_t)                  (B, N, 1)
        m_t = A m_{t-1} + B u_t              (B, M, N)
        h_t = ReLU(W_h [m_t ; x_t])          (B, N, C)
        out = BN(proj(h))                    (B, C, N)
    """

    def __init__(self, c: LMUFormerConfig):
        super().__init__()
        self.W_u = nn.Linear(c.dim, 1)
        self.W_h = nn.Linear(c.memory_size + c.dim, c.dim)
        self.memory = LegendreMemory(c.memory_size, c.theta)
        self.proj = pointwise(c.dim, c.dim)
        self.proj_bn = nn.BatchNorm1d(c.dim)

    def forward(self, x: torch.Tensor, memory_path: str = "fft") -> torch.Tensor:
        x_t = x.transpose(1, 2)  # (B, N, C)
        u = F.relu(self.W_u(x_t))[..., 0]  # (B, N)
        m = run_memory(self.memory, u, memory_path)  # (B, M, N)
        h = F.relu(self.W_h(torch.cat([m.transpose(1, 2), x_t], dim=-1)))  # (B, N, C)
        return self.proj_bn(self.proj(h.transpose(1, 2)))  # (B, C, N)


class SpikingLMUMixer(nn.Module):
    """The LMU mixer with LIF neurons (spiking LMUFormer).  [B, C, N] -> [B, C, N].

        s   = LIF_0.5(BN(x))                 spikes (B, C, N)
        u_t = LIF(BN_u(W_u s_t))             spikes (B, 1, N)
        m_t = LIF(BN_m(A m_{t-1} + B u_t))   the memory itself stays real; its readout spikes
        h_t = LIF(BN_h(W_h [m_t ; s_t]))     spikes (B, C, N)
        out = BN(proj(h))                    real (B, C, N)
    """

    def __init__(self, c: LMUFormerConfig):
        super().__init__()
        self.input_bn = nn.BatchNorm1d(c.dim)
        self.input_lif = _lif(c, c.lmu_input_threshold)
        self.W_u = nn.Linear(c.dim, 1)
        self.bn_u = nn.BatchNorm1d(1)
        self.lif_u = _lif(c)
        self.memory = LegendreMemory(c.memory_size, c.theta)
        self.bn_m = nn.BatchNorm1d(c.memory_size)
        self.lif_m = _lif(c)
        self.W_h = nn.Linear(c.memory_size + c.dim, c.dim)
        self.bn_h = nn.BatchNorm1d(c.dim)
        self.lif_h = _lif(c)
        self.proj = pointwise(c.dim, c.dim)
        self.proj_bn = nn.BatchNorm1d(c.dim)

    def forward(self, x: torch.Tensor, memory_path: str = "fft") -> torch.Tensor:
        s = self.input_lif(exact.batch_norm(self.input_bn, x))  # (B, C, N)
        s_t = s.transpose(1, 2)  # (B, N, C)
        u = self.lif_u(exact.linear_bn(self.W_u, self.bn_u, s_t))  # (B, 1, N)
        m = run_memory(self.memory, u[:, 0], memory_path)  # (B, M, N)
        m = self.lif_m(exact.batch_norm(self.bn_m, m))  # (B, M, N)
        h = self.lif_h(exact.linear_bn(self.W_h, self.bn_h, torch.cat([m.transpose(1, 2), s_t], dim=-1)))  # (B, C, N)
        return exact.conv_bn(self.proj, self.proj_bn, h)


def run_memory(memory: LegendreMemory, u: torch.Tensor, path: str) -> torch.Tensor:
    """``u [B, N] -> m [B, M, N]`` by the chosen path (identical results to float rounding)."""
    if path == "fft":
        return memory(u)
    if path == "recurrent":
        return memory.recurrent(u)
    raise ConfigError(f"memory_path must be one of {MEMORY_PATHS}, got {path!r}")


class ChannelMixer(nn.Module):
    """1x1-conv FFN: fc1 -> BN -> GELU -> fc2 -> BN -> ReLU.  [B, C, N] -> [B, C, N]."""

    def __init__(self, c: LMUFormerConfig):
        super().__init__()
        hidden = c.mlp_ratio * c.dim
        self.fc1 = pointwise(c.dim, hidden)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc2 = pointwise(hidden, c.dim)
        self.fc2_bn = nn.BatchNorm1d(c.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.fc1_bn(self.fc1(x)))  # (B, 4C, N)
        return F.relu(self.fc2_bn(self.fc2(x)))  # (B, C, N)


class SpikingChannelMixer(nn.Module):
    """Spiking FFN: BN -> LIF -> fc1 -> BN -> LIF -> fc2.  [B, C, N] -> [B, C, N]."""

    def __init__(self, c: LMUFormerConfig):
        super().__init__()
        hidden = c.mlp_ratio * c.dim
        self.fc1_bn = nn.BatchNorm1d(c.dim)
        self.fc1_lif = _lif(c)
        self.fc1 = pointwise(c.dim, hidden)
        self.fc2_bn = nn.BatchNorm1d(hidden)
        self.fc2_lif = _lif(c)
        self.fc2 = pointwise(hidden, c.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc1_lif(exact.batch_norm(self.fc1_bn, x))  # (B, C, N)
        s = self.fc2_lif(exact.conv_bn(self.fc1, self.fc2_bn, s))  # (B, 4C, N)
        return exact.conv_bn(self.fc2, None, s)  # (B, C, N)


class Block(nn.Module):
    """z = z + LMUMixer(z);  z = z + ChannelMixer(z)."""

    def __init__(self, c: LMUFormerConfig):
        super().__init__()
        self.lmu = (SpikingLMUMixer if c.spiking else LMUMixer)(c)
        self.ffn = (SpikingChannelMixer if c.spiking else ChannelMixer)(c)

    def forward(self, z: torch.Tensor, memory_path: str = "fft") -> torch.Tensor:
        z = z + self.lmu(z, memory_path)
        return z + self.ffn(z)


class LMUFormer(nn.Module):
    """LMUFormer (``config.spiking=False``) or spiking LMUFormer (``True``).

    ``forward(x)`` with ``x [B, N, n_mels]`` returns
      - mode "mean" (default; the reference's "normal"): ``[B, classes]``, per-frame logits averaged;
      - mode "all_seq": ``[N, B, classes]``, the head applied to the running mean of the features
        up to each frame (what a streaming model outputs at frame t, given the look-ahead);
      - mode "frames": ``[B, N, classes]``, the head applied to each frame's features.
    Any N >= 1 is accepted. ``memory_path="recurrent"`` runs the Legendre memory frame by frame
    instead of by FFT (same result to float rounding). ``x`` of any floating dtype is cast to the
    model's; integer, bool or complex input, a wrong shape, another device and (in eval mode)
    NaN/Inf raise AudioError; a bad ``mode`` or ``memory_path`` raises ConfigError.
    """

    def __init__(self, config: LMUFormerConfig):
        super().__init__()
        if not isinstance(config, LMUFormerConfig):
            raise ConfigError(f"LMUFormer needs an LMUFormerConfig (LMUFormerConfig.from_dict reads a dict), "
                              f"got {type(config).__name__}")
        self.config = config
        self.embed = (SpikingPatchEmbedding if config.spiking else PatchEmbedding)(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        if config.spiking:
            self.head_bn = nn.BatchNorm1d(config.dim)
            self.head_lif = _lif(config)
        self.head = nn.Linear(config.dim, config.n_classes)

    def features(self, x: torch.Tensor, memory_path: str = "fft") -> torch.Tensor:
        """``x [B, N, n_mels] -> [B, C, N]``: what the head sees at each frame (spikes if spiking)."""
        x = self._check_input(x)
        z = self.embed(x.transpose(1, 2))  # (B, C, N)
        for block in self.blocks:
            z = block(z, memory_path)
        if self.config.spiking:
            z = self.head_lif(exact.batch_norm(self.head_bn, z))
        return z

    def forward(self, x: torch.Tensor, mode: str = "mean", memory_path: str = "fft") -> torch.Tensor:
        if mode == "normal":  # the reference's name for "mean"
            mode = "mean"
        if mode not in OUTPUT_MODES:
            raise ConfigError(f"mode must be one of {OUTPUT_MODES}, got {mode!r}")
        f = self.features(x, memory_path).transpose(1, 2)  # (B, N, C)
        if mode == "frames":
            return self.head(f)  # (B, N, K)
        if mode == "mean":
            return self.head(f).mean(dim=1)  # (B, K)
        f = f.transpose(0, 1)  # (N, B, C)
        counts = torch.arange(1, f.shape[0] + 1, dtype=f.dtype, device=f.device)[:, None, None]
        return self.head(f.cumsum(dim=0) / counts)  # (N, B, K)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the model's dtype, or AudioError naming what is wrong with it.

        Any floating dtype is cast to the weights' (one copy; float64 features give the float32
        model's result, not a dtype error from deep in conv1d). Under autocast the weights stay
        float32, so inputs stay float32 and autocast picks the compute dtype as before.
        Non-finite values are refused in eval mode; training skips that check, since reading
        the result would stall the accelerator every step (a NaN input shows in the loss there).
        """
        n = self.config.n_mels
        if not isinstance(x, torch.Tensor):
            raise AudioError(f"LMUFormer input must be a torch.Tensor [batch, frames, {n}], got {type(x).__name__}")
        if x.ndim != 3 or x.shape[-1] != n or x.shape[0] < 1 or x.shape[1] < 1:
            raise AudioError(f"LMUFormer input must be [batch >= 1, frames >= 1, {n} mel bins], "
                             f"got shape {list(x.shape)}")
        if not x.is_floating_point():
            raise AudioError(f"LMUFormer input must be floating point log-mel features, got {x.dtype}")
        weight = next(self.parameters())
        if x.device != weight.device:
            raise AudioError(f"LMUFormer input is on {x.device}, the model on {weight.device}: move one to the other")
        given = x.dtype
        if given != weight.dtype:
            x = x.to(weight.dtype)
        if not self.training and not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            finite = torch.isfinite(x)
            if not bool(finite.all()):
                clip, frame = (int(i) for i in (~finite.all(-1)).nonzero()[0])
                cast = f" (after the cast from {given} to {weight.dtype})" if given != weight.dtype else ""
                raise AudioError(f"LMUFormer input has a non-finite value (NaN or Inf) in clip {clip}, "
                                 f"frame {frame}{cast}")
        return x

    def num_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def macs_per_frame(config: LMUFormerConfig) -> dict[str, int]:
    """Multiply-accumulates per frame of the step form (batch norms folded), per layer.

    The spiking model's layers that receive spikes could use additions only; they are
    counted here as dense MACs (an upper bound).
    """
    c, k = config, config.kernel_size
    hidden = c.mlp_ratio * c.dim
    table = {"embed.conv0": k * c.n_mels * c.dim}
    for i in range(1, c.embed_convs):
        table[f"embed.conv{i}"] = k * c.dim * c.dim
    table["embed.rpe"] = k * c.dim * c.dim
    for b in range(c.depth):
        table[f"blocks.{b}.lmu.W_u"] = c.dim
        table[f"blocks.{b}.lmu.memory"] = c.memory_size * c.memory_size + c.memory_size
        table[f"blocks.{b}.lmu.W_h"] = (c.memory_size + c.dim) * c.dim
        table[f"blocks.{b}.lmu.proj"] = c.dim * c.dim
        table[f"blocks.{b}.ffn.fc1"] = c.dim * hidden
        table[f"blocks.{b}.ffn.fc2"] = hidden * c.dim
    table["head"] = c.dim * c.n_classes
    return table
