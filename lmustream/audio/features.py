"""Kaldi-compatible log-mel filterbank: batched torch for training, streaming numpy for deployment.

Both reproduce ``torchaudio.compliance.kaldi.fbank`` (Kaldi's ``compute-fbank-feats``) with
the LMUFormer/AST recipe: snip edges, per-frame DC removal, pre-emphasis, Hann window,
power spectrum, HTK mel scale, ``log(max(energy, float32 eps))``, no dither, no energy
term. Per frame of ``window_length`` samples, every ``hop_length`` samples::

    x -= mean(x)                         # remove_dc_offset
    x[i] -= preemphasis * x[i-1]         # with x[-1] := x[0] (Kaldi replicates the edge)
    x *= window                          # Hann: 0.5 - 0.5 cos(2 pi n / (N - 1))
    power = |rfft(x zero-padded to n_fft)|^2
    fbank = log(max(power @ mel_filterbank.T, log_floor))

torch is imported only inside :func:`fbank`: the streaming path runs on numpy alone.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from lmustream.audio.io import MAX_SAMPLE_RATE, refuse_undecoded, validate_samples
from lmustream.errors import AudioError, ConfigError

if TYPE_CHECKING:  # annotations only: the deployed runtime has no torch
    import torch

FLOAT32_EPS = 1.1920928955078125e-07  # torch.finfo(torch.float32).eps: Kaldi/torchaudio's log floor
HTK_MEL_FACTOR = 1127.0  # mel(f) = 1127 ln(1 + f / 700), the HTK scale Kaldi uses
HTK_MEL_BREAK_HZ = 700.0
MS_PER_S = 1000.0
POVEY_EXPONENT = 0.85  # Kaldi's "povey" window: Hann ** 0.85
HAMMING_ALPHA = 0.54
BLACKMAN_COEFF = 0.42  # Kaldi's default --blackman-coeff
WINDOWS = ("hanning", "hamming", "povey", "rectangular", "blackman")
# Samples per frame are truncated to an integer as Kaldi does, but a product like
# 16000 * 25 ms that lands within this of an integer is that integer (float noise).
_INTEGRAL_TOLERANCE = 1e-6
# The C++ kernel's bounds (csrc/artifact.h; MAX_SAMPLE_RATE too), so a frontend Python accepts
# is one the kernel runs.
MAX_FRAME_MS = 10000.0
MAX_MELS = 1 << 16
MAX_FFT_SIZE = 1 << 16


@dataclass(frozen=True)
class FbankConfig:
    """Log-mel frontend settings; defaults are the LMUFormer/AST recipe (Kaldi fbank, 128 mels).

    Fields (unit, default):
      sample_rate: input rate in Hz (16000).
      frame_length_ms: analysis window in ms (25.0 -> 400 samples at 16 kHz).
      frame_shift_ms: hop between frames in ms (10.0 -> 160 samples).
      n_mels: number of triangular mel bins (128).
      low_freq: lower edge of the first mel bin in Hz (20.0).
      high_freq: upper edge of the last mel bin in Hz; <= 0 means Nyquist + high_freq, as
        Kaldi (0.0 -> Nyquist).
      preemphasis: pre-emphasis coefficient, 0 disables (0.97).
      remove_dc_offset: subtract each frame's mean before pre-emphasis (True).
      window: one of "hanning" (symmetric Hann), "hamming", "povey", "rectangular",
        "blackman" ("hanning").
      round_to_power_of_two: zero-pad each frame to the next power of two for the FFT (True).
      log_floor: energies are clamped to at least this before the log (float32 eps,
        1.1920928955078125e-07).
      mean, std: normalization statistics in log-energy units; ``normalize`` returns
        ``(fbank - mean) / (2 * std)`` (-6.845978, 5.5654526).
    """

    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    n_mels: int = 128
    low_freq: float = 20.0
    high_freq: float = 0.0
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    window: str = "hanning"
    round_to_power_of_two: bool = True
    log_floor: float = FLOAT32_EPS
    mean: float = -6.845978
    std: float = 5.5654526

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(f.name, value, f.type))
        nyquist = self.sample_rate / 2
        checks = [
            (0 < self.sample_rate <= MAX_SAMPLE_RATE, f"sample_rate must be in [1, {MAX_SAMPLE_RATE}] Hz"),
            (0 < self.frame_length_ms <= MAX_FRAME_MS, f"frame_length_ms must be in (0, {MAX_FRAME_MS:g}]"),
            (0 < self.frame_shift_ms <= MAX_FRAME_MS, f"frame_shift_ms must be in (0, {MAX_FRAME_MS:g}]"),
            (1 <= self.n_mels <= MAX_MELS, f"n_mels must be in [1, {MAX_MELS}]"),
            (0.0 <= self.preemphasis <= 1.0, "preemphasis must be in [0, 1]"),
            (self.window in WINDOWS, f"window must be one of {WINDOWS}"),
            (0.0 < self.log_floor < math.inf, "log_floor must be a positive finite number"),
            (math.isfinite(self.mean), "mean must be finite"),
            (0.0 < self.std < math.inf, "std must be a positive finite number"),
            (0.0 <= self.low_freq < nyquist, f"low_freq must be in [0, Nyquist = {nyquist:g}) Hz"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"FbankConfig: {message}, got {self._describe(message)}")
        if self.window_length < 2:  # the symmetric windows divide by N - 1
            raise ConfigError(f"FbankConfig: frame_length_ms={self.frame_length_ms} gives "
                              f"{self.window_length} samples at {self.sample_rate} Hz; need >= 2")
        if self.hop_length < 1:
            raise ConfigError(f"FbankConfig: frame_shift_ms={self.frame_shift_ms} gives "
                              f"{self.hop_length} samples at {self.sample_rate} Hz; need >= 1")
        if self.n_fft > MAX_FFT_SIZE:
            raise ConfigError(f"FbankConfig: frame_length_ms={self.frame_length_ms} gives an FFT of {self.n_fft} "
                              f"points at {self.sample_rate} Hz; at most {MAX_FFT_SIZE}")
        if not self.low_freq < self.upper_freq <= nyquist:
            raise ConfigError(f"FbankConfig: high_freq={self.high_freq} gives an upper edge of "
                              f"{self.upper_freq:g} Hz; need low_freq ({self.low_freq:g}) < edge <= "
                              f"Nyquist ({nyquist:g})")

    def _describe(self, message: str) -> str:
        """``name=value`` of the field a validation message starts with."""
        name = message.split()[0]
        return f"{name}={getattr(self, name)!r}"

    @property
    def window_length(self) -> int:
        """Samples per frame (400 by default)."""
        return _ms_to_samples(self.sample_rate, self.frame_length_ms)

    @property
    def hop_length(self) -> int:
        """Samples between frame starts (160 by default)."""
        return _ms_to_samples(self.sample_rate, self.frame_shift_ms)

    @property
    def n_fft(self) -> int:
        """FFT size: window_length, rounded up to a power of two if round_to_power_of_two (512)."""
        n = self.window_length
        return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n

    @property
    def upper_freq(self) -> float:
        """Upper edge of the last mel bin in Hz, with high_freq <= 0 resolved against Nyquist."""
        return self.high_freq if self.high_freq > 0 else self.sample_rate / 2 + self.high_freq

    def num_frames(self, n_samples: int) -> int:
        """Frames Kaldi's snip-edges framing makes from ``n_samples``: 1 + (n - window) // hop, or 0."""
        if n_samples < self.window_length:
            return 0
        return 1 + (n_samples - self.window_length) // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-serialisable values (stored in model files)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FbankConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"FbankConfig.from_dict: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"FbankConfig.from_dict: unknown key(s) {unknown}; known keys are {sorted(known)}")
        return cls(**data)


def _ms_to_samples(sample_rate: int, ms: float) -> int:
    """``int(sample_rate * ms / 1000)`` as Kaldi truncates it, immune to float noise near integers."""
    exact = sample_rate * ms / MS_PER_S
    nearest = round(exact)
    return int(nearest) if abs(exact - nearest) < _INTEGRAL_TOLERANCE else int(exact)


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """``value`` as the field's type (ints accepted for floats, as JSON writes 20.0 as 20), or ConfigError."""
    kind = kind if isinstance(kind, str) else kind.__name__  # annotations are strings here
    wrong = ConfigError(f"FbankConfig: {name} must be {kind}, got {value!r} ({type(value).__name__})")
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise wrong
        return bool(value)
    if kind == "str":
        if not isinstance(value, str):
            raise wrong
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise wrong
    if kind == "int":
        if not float(value).is_integer():
            raise wrong
        return int(value)
    value = float(value)
    if math.isnan(value):
        raise ConfigError(f"FbankConfig: {name} must not be NaN")
    return value


def mel_filterbank(config: FbankConfig | None = None) -> np.ndarray:
    """Triangular HTK-mel filters ``[n_mels, n_fft // 2 + 1]`` float64 applied to a power spectrum.

    Bins are equally spaced in mel between low_freq and the upper edge; bin m rises from
    mel edge m to m+1 and falls to m+2. They are evaluated on the FFT bin frequencies
    ``k * sample_rate / n_fft`` for k < n_fft / 2, and the Nyquist column is zero: exactly
    Kaldi's (and torchaudio's) matrix.
    """
    return _mel_filterbank(config or FbankConfig()).copy()


@functools.lru_cache(maxsize=16)
def _mel_filterbank(config: FbankConfig) -> np.ndarray:
    def mel(freq):
        return HTK_MEL_FACTOR * np.log1p(np.asarray(freq, dtype=np.float64) / HTK_MEL_BREAK_HZ)

    low, high = mel(config.low_freq), mel(config.upper_freq)
    delta = (high - low) / (config.n_mels + 1)
    edges = low + delta * np.arange(config.n_mels + 2)  # left edge of bin m is edges[m]
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    n_bins = config.n_fft // 2
    bin_mel = mel(np.arange(n_bins) * (config.sample_rate / config.n_fft))[None, :]
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    bank = np.zeros((config.n_mels, n_bins + 1))
    bank[:, :n_bins] = np.maximum(0.0, np.minimum(rising, falling))
    bank.setflags(write=False)
    return bank


def mel_centre_hz(config: FbankConfig | None = None) -> np.ndarray:
    """Centre frequency (Hz) of each mel bin, ``[n_mels]`` float64 (the peaks of :func:`mel_filterbank`)."""
    config = config or FbankConfig()
    low = HTK_MEL_FACTOR * math.log1p(config.low_freq / HTK_MEL_BREAK_HZ)
    high = HTK_MEL_FACTOR * math.log1p(config.upper_freq / HTK_MEL_BREAK_HZ)
    centre_mel = low + (high - low) / (config.n_mels + 1) * np.arange(1, config.n_mels + 1)
    return HTK_MEL_BREAK_HZ * np.expm1(centre_mel / HTK_MEL_FACTOR)


def window_function(config: FbankConfig | None = None) -> np.ndarray:
    """The analysis window ``[window_length]`` float64 (symmetric, as Kaldi's)."""
    return _window(config or FbankConfig()).copy()


@functools.lru_cache(maxsize=16)
def _window(config: FbankConfig) -> np.ndarray:
    n = config.window_length
    phase = 2.0 * np.pi * np.arange(n) / (n - 1)
    hann = 0.5 - 0.5 * np.cos(phase)
    window = {
        "hanning": lambda: hann,
        "hamming": lambda: HAMMING_ALPHA - (1.0 - HAMMING_ALPHA) * np.cos(phase),
        "povey": lambda: hann ** POVEY_EXPONENT,
        "rectangular": lambda: np.ones(n),
        "blackman": lambda: BLACKMAN_COEFF - 0.5 * np.cos(phase) + (0.5 - BLACKMAN_COEFF) * np.cos(2 * phase),
    }[config.window]()
    window.setflags(write=False)
    return window


def normalize(features, config: FbankConfig | None = None):
    """``(features - mean) / (2 * std)`` with the config's statistics; numpy or torch in, same type out
    (a list comes back as a numpy array)."""
    config = config or FbankConfig()
    if not isinstance(config, FbankConfig):
        raise ConfigError(f"normalize config must be an FbankConfig, got {type(config).__name__}")
    if not (isinstance(features, np.ndarray) or hasattr(features, "detach")):
        features = np.asarray(features)
        if features.dtype.kind not in "iuf":
            raise AudioError(f"normalize: expected numeric features, got dtype {features.dtype}")
    return (features - config.mean) / (2.0 * config.std)


def fbank(waveform, config: FbankConfig | None = None) -> "torch.Tensor":
    """Log-mel fbank: ``[batch, samples]`` -> ``[batch, frames, n_mels]``, ``[samples]`` -> ``[frames, n_mels]``.

    Torch, on the waveform's device; float64 input is computed in float64, everything else
    in float32 (int16 is scaled by 1/32768). float32 FFT rounding leaves bins more than
    ~80 dB below their frame's max off by up to a few 1e-3 from the float64 result. ``frames = 1 + (samples - window_length) //
    hop_length``, or 0 (an empty tensor) for fewer than window_length samples.
    Differentiable. Raises AudioError for other shapes, dtypes or non-finite samples.
    """
    import torch  # here, not at module level: StreamingFbank must import without torch

    config = config or FbankConfig()
    if not isinstance(config, FbankConfig):
        raise ConfigError(f"fbank config must be an FbankConfig, got {type(config).__name__}")
    x = _as_float_tensor(waveform)
    squeeze = x.ndim == 1
    if squeeze:
        x = x.unsqueeze(0)
    elif x.shape[0] == 0:
        raise AudioError(f"fbank waveform: an empty batch, shape {list(x.shape)}")
    elif x.shape[1] < config.window_length <= x.shape[0]:
        # every row too short for a frame while the columns are long enough: read whole, this
        # would be an empty result of one "clip" per sample
        raise AudioError(f"fbank waveform: shape {list(x.shape)} would be {x.shape[0]} clips of {x.shape[1]} "
                         f"sample(s), each shorter than one {config.window_length}-sample window; it looks like "
                         "[samples, channels] audio: fbank takes mono [samples] (average the channels) or "
                         "[batch, samples]")
    frames_out = config.num_frames(x.shape[-1])
    if frames_out == 0:
        empty = x.new_zeros(x.shape[0], 0, config.n_mels)
        return empty[0] if squeeze else empty
    frames = x.unfold(-1, config.window_length, config.hop_length)  # [B, F, W], a view
    if config.remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    if config.preemphasis:
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - config.preemphasis * previous
    window = torch.tensor(_window(config), dtype=x.dtype, device=x.device)
    spectrum = torch.fft.rfft(frames * window, n=config.n_fft, dim=-1)
    power = spectrum.real.square() + spectrum.imag.square()
    bank = torch.tensor(_mel_filterbank(config), dtype=x.dtype, device=x.device)
    energies = torch.matmul(power, bank.T)
    out = torch.clamp_min(energies, config.log_floor).log()
    return out[0] if squeeze else out


def _as_float_tensor(waveform) -> "torch.Tensor":
    """The waveform as a float32/float64 tensor, validated: 1-D or 2-D, finite."""
    import torch

    if isinstance(waveform, torch.Tensor):
        x = waveform
    else:
        refuse_undecoded(waveform, "fbank waveform")
        array = np.asarray(waveform)
        if array.dtype.kind not in "biuf":  # torch.as_tensor would raise a bare TypeError on these
            raise AudioError(f"fbank waveform: unsupported dtype {array.dtype}; pass float or int16 samples")
        x = torch.as_tensor(array)
    if x.ndim not in (1, 2):
        raise AudioError(f"fbank waveform: expected [samples] or [batch, samples], got shape {list(x.shape)}")
    if x.dtype == torch.int16:
        x = x.to(torch.float32) * (1.0 / 32768.0)
    elif x.dtype in (torch.float16, torch.bfloat16):
        x = x.to(torch.float32)  # half-precision FFTs lose most of the 80 dB range
    elif x.dtype not in (torch.float32, torch.float64):
        raise AudioError(f"fbank waveform: unsupported dtype {x.dtype}; pass float or int16 samples")
    if not bool(torch.isfinite(x).all()):
        raise AudioError("fbank waveform: contains non-finite samples (NaN or Inf)")
    return x


def _log_mel_frames(frames: np.ndarray, config: FbankConfig) -> np.ndarray:
    """Log-mel of framed samples ``[F, window_length]`` float64 -> ``[F, n_mels]`` float64 (numpy)."""
    if config.remove_dc_offset:
        frames = frames - frames.mean(axis=1, keepdims=True)
    if config.preemphasis:
        previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
        frames = frames - config.preemphasis * previous
    spectrum = np.fft.rfft(frames * _window(config), n=config.n_fft, axis=1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    energies = power @ _mel_filterbank(config).T
    return np.log(np.maximum(energies, config.log_floor))


class StreamingFbank:
    """Push samples in chunks of any size, get the frames they complete: equal to :func:`fbank` on the whole signal.

    numpy only (no torch), computed in float64, returned as float32 ``[n_new_frames,
    n_mels]``. State between pushes is the tail not yet consumed by a frame: fewer than
    window_length samples (the last window_length - hop_length plus any partial hop).

    Args:
      config: frontend settings (default ``FbankConfig()``).
      normalized: return ``normalize(fbank)`` instead of raw log energies (default False).

    Attributes:
      frames_emitted: frames returned since construction or the last :meth:`reset`.
    """

    def __init__(self, config: FbankConfig | None = None, normalized: bool = False):
        self.config = config or FbankConfig()
        if not isinstance(self.config, FbankConfig):
            raise ConfigError(f"StreamingFbank config must be an FbankConfig, got {type(self.config).__name__}")
        self.normalized = bool(normalized)
        self.reset()

    def reset(self) -> None:
        """Forget buffered samples and the frame count: the next push starts a new signal."""
        self._pending = np.zeros(0, np.float64)
        self.frames_emitted = 0

    @property
    def pending_samples(self) -> int:
        """Samples buffered towards the next frame (always fewer than window_length)."""
        return int(self._pending.size)

    def push(self, samples) -> np.ndarray:
        """Append 1-D ``samples`` (float, or int16 scaled by 1/32768; any length, 0 included).

        Returns the float32 ``[n_new_frames, n_mels]`` frames they complete. Raises
        AudioError for a non-1-D, non-finite or non-float/int16 input (state unchanged).
        """
        x = validate_samples(samples, "StreamingFbank.push samples", np.float64)
        signal = np.concatenate([self._pending, x])  # also copies x: the caller may reuse it
        c = self.config
        n = c.num_frames(signal.size)
        if n == 0:
            self._pending = signal
            return np.zeros((0, c.n_mels), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(signal, c.window_length)[::c.hop_length][:n]
        features = _log_mel_frames(frames, c)
        if self.normalized:
            features = normalize(features, c)
        self._pending = signal[n * c.hop_length:].copy()  # copy so the full signal can be freed
        self.frames_emitted += n
        return features.astype(np.float32)
