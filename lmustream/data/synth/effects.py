"""Signal effects that turn one TTS voice into many speakers and rooms (numpy + soxr only).

Every function takes and returns 1-D float32 arrays and never returns NaN/Inf for finite
input. Where a function promises to keep the length, the output has exactly as many
samples as the input.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

from lmustream.errors import AudioError, ConfigError

# WSOLA time stretching (pitch-preserving). A 32 ms frame at 16 kHz spans at least two
# periods of a 100 Hz voice, so the overlap search can lock onto the waveform's period.
WSOLA_FRAME_SECONDS = 0.032
# How far (each way) a frame may slide to match the previous one: one period of a 100 Hz voice.
WSOLA_TOLERANCE_SECONDS = 0.010

# Formant (vocal-tract length) factors outside this range stop sounding like a human voice.
FORMANT_FACTOR_LIMITS = (0.5, 2.0)

# 60 dB of decay is an amplitude factor of 1e-3, i.e. exp(-ln(1000)) over RT60 seconds.
_LN_1000 = math.log(1000.0)
# Delay of the first reflection after the direct sound (a small room's first wall bounce).
REVERB_PREDELAY_SECONDS = 0.003

FADE_SECONDS = 0.005  # fades at cut points, long enough to avoid an audible click
PEAK_LIMIT = 0.99  # leave headroom below int16 full scale so writing never clips


def _as_audio(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 1:
        raise AudioError(f"{name}: expected 1-D mono samples, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise AudioError(f"{name}: samples contain NaN or Inf")
    return arr


def resample(x, orig_sr: float, target_sr: float) -> np.ndarray:
    """``x`` resampled from ``orig_sr`` to ``target_sr`` Hz (rates may be fractional), float32."""
    arr = _as_audio(x, "resample input")
    if orig_sr <= 0 or target_sr <= 0:
        raise ConfigError(f"resample: rates must be positive, got {orig_sr} -> {target_sr}")
    if arr.size == 0 or orig_sr == target_sr:
        return arr.copy()
    return np.asarray(soxr.resample(arr, float(orig_sr), float(target_sr), quality="HQ"), dtype=np.float32)


def trim_silence(x, sample_rate: int, threshold_db: float = -40.0, frame_seconds: float = 0.010,
                 pad_seconds: float = 0.020) -> np.ndarray:
    """``x`` without its leading and trailing silence: frames quieter than ``threshold_db`` below the loudest.

    ``pad_seconds`` of context is kept on each side so soft onsets ("f", "h") survive.
    An all-zero input gives an empty array.
    """
    arr = _as_audio(x, "trim_silence input")
    frame = max(1, int(round(frame_seconds * sample_rate)))
    n_frames = arr.size // frame + (arr.size % frame > 0)
    if n_frames == 0:
        return arr.copy()
    padded = np.zeros(n_frames * frame, np.float64)
    padded[:arr.size] = arr
    rms = np.sqrt(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1))
    if rms.max() <= 0.0:
        return np.zeros(0, np.float32)
    active = np.flatnonzero(rms >= rms.max() * 10.0 ** (threshold_db / 20.0))
    pad = int(round(pad_seconds * sample_rate))
    start = max(0, active[0] * frame - pad)
    end = min(arr.size, (active[-1] + 1) * frame + pad)
    return arr[start:end].copy()


def stretch_to_length(x, n_out: int, sample_rate: int) -> np.ndarray:
    """``x`` time-stretched to exactly ``n_out`` samples with its pitch kept (WSOLA).

    Each output frame is taken near its nominal input position, slid by up to
    ``WSOLA_TOLERANCE_SECONDS`` to line up with the waveform continuing the previous
    frame, so overlapping frames add in phase instead of beating. Inputs shorter than
    two frames are simply resampled (which also shifts their pitch, inaudibly so short).
    """
    arr = _as_audio(x, "stretch_to_length input")
    if not isinstance(n_out, (int, np.integer)) or n_out < 0:
        raise ConfigError(f"stretch_to_length: n_out must be a non-negative integer, got {n_out!r}")
    n_in = arr.size
    if n_out == n_in:
        return arr.copy()
    if n_out == 0 or n_in == 0:
        return np.zeros(n_out, np.float32)
    frame = int(round(WSOLA_FRAME_SECONDS * sample_rate))
    if n_in < 2 * frame or n_out < 2 * frame:
        return _resample_to_count(arr, n_out)
    tol = int(round(WSOLA_TOLERANCE_SECONDS * sample_rate))
    hop_out = frame // 2
    hop_in = hop_out * n_in / n_out
    n_frames = int(math.ceil((n_out - frame) / hop_out)) + 2
    # Zero padding lets every search window stay inside the array.
    lead = tol
    source = np.zeros(lead + n_in + frame + 2 * tol + int(math.ceil(hop_in)) * 2, np.float64)
    source[lead:lead + n_in] = arr
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(frame) / frame)  # periodic Hann: sums to 1 at 50 %
    out = np.zeros(n_frames * hop_out + frame, np.float64)
    weight = np.zeros_like(out)
    previous = lead
    for k in range(n_frames):
        nominal = lead + int(round(k * hop_in))
        if k == 0:
            start = nominal
        else:
            natural = source[previous + hop_out:previous + hop_out + frame]
            low = max(0, nominal - tol)
            region = source[low:nominal + tol + frame]
            if region.size < frame or natural.size < frame:
                start = min(nominal, source.size - frame)
            else:
                start = low + int(np.argmax(np.correlate(region, natural, mode="valid")))
        out[k * hop_out:k * hop_out + frame] += source[start:start + frame] * window
        weight[k * hop_out:k * hop_out + frame] += window
        previous = start
    result = np.divide(out, weight, out=np.zeros_like(out), where=weight > 1e-6)
    return result[:n_out].astype(np.float32)


def _resample_to_count(x: np.ndarray, n_out: int) -> np.ndarray:
    """``x`` resampled to exactly ``n_out`` samples (cut or zero-padded by the last rounding sample)."""
    y = resample(x, x.size, n_out)
    if y.size >= n_out:
        return y[:n_out]
    return np.concatenate([y, np.zeros(n_out - y.size, np.float32)])


def _check_factor(factor: float, name: str) -> float:
    low, high = FORMANT_FACTOR_LIMITS
    if not isinstance(factor, (int, float, np.floating)) or not low <= float(factor) <= high:
        raise ConfigError(f"{name} must be a number in [{low}, {high}], got {factor!r}")
    return float(factor)


def scale_spectrum(x, sample_rate: int, factor: float) -> np.ndarray:
    """``x`` played ``factor`` times faster: every frequency (pitch and formants) x ``factor``, length / ``factor``."""
    arr = _as_audio(x, "scale_spectrum input")
    factor = _check_factor(factor, "scale_spectrum factor")
    return resample(arr, sample_rate, sample_rate / factor)


def change_vocal_tract(x, sample_rate: int, factor: float) -> np.ndarray:
    """``x`` with pitch and formants scaled by ``factor`` and the length kept (resample, then WSOLA back).

    ``factor`` > 1 sounds like a shorter vocal tract (smaller speaker), < 1 a longer one.
    The pitch moves with the formants; callers wanting only the formants to move ask the
    TTS engine for a pitch ``-12 * log2(factor)`` semitones lower beforehand.
    """
    arr = _as_audio(x, "change_vocal_tract input")
    factor = _check_factor(factor, "change_vocal_tract factor")
    if factor == 1.0 or arr.size == 0:
        return arr.copy()
    return stretch_to_length(scale_spectrum(arr, sample_rate, factor), arr.size, sample_rate)


def reverberate(x, sample_rate: int, rt60: float, direct_to_reverb_db: float,
                rng: np.random.Generator) -> np.ndarray:
    """``x`` in a synthetic room, same length: convolved with direct sound + exponentially decaying noise.

    ``rt60`` (seconds) is the time the tail takes to decay by 60 dB; ``direct_to_reverb_db``
    is the energy ratio of the direct sound to the whole tail. The tail beyond the end of
    ``x`` is cut, as a recording that stops would cut it.
    """
    arr = _as_audio(x, "reverberate input")
    if not 0.0 < rt60 <= 5.0:
        raise ConfigError(f"reverberate: rt60 must be in (0, 5] seconds, got {rt60!r}")
    if arr.size == 0:
        return arr.copy()
    n_ir = max(2, int(round(rt60 * sample_rate)))
    t = np.arange(n_ir) / sample_rate
    tail = rng.standard_normal(n_ir) * np.exp(-_LN_1000 * t / rt60)
    tail[:max(1, int(round(REVERB_PREDELAY_SECONDS * sample_rate)))] = 0.0
    tail *= math.sqrt(1.0 / (np.sum(tail ** 2) * 10.0 ** (direct_to_reverb_db / 10.0)))
    impulse = tail
    impulse[0] = 1.0
    n_fft = 1 << int(math.ceil(math.log2(arr.size + n_ir - 1)))
    wet = np.fft.irfft(np.fft.rfft(arr, n_fft) * np.fft.rfft(impulse, n_fft), n_fft)[:arr.size]
    return wet.astype(np.float32)


def fade_edges(x, sample_rate: int, seconds: float = FADE_SECONDS) -> np.ndarray:
    """``x`` with a raised-cosine fade-in and fade-out of ``seconds`` (shorter for very short ``x``)."""
    arr = _as_audio(x, "fade_edges input").copy()
    n = min(int(round(seconds * sample_rate)), arr.size // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)).astype(np.float32)
        arr[:n] *= ramp
        arr[arr.size - n:] *= ramp[::-1]
    return arr


def fit_length(x, max_samples: int, sample_rate: int, max_compression: float) -> tuple[np.ndarray, str]:
    """``x`` made at most ``max_samples`` long, and how: "kept", "compressed" or "compressed+cropped".

    Too-long words are time-compressed (pitch kept) by up to ``max_compression``, since
    cropping would cut off a phoneme (the "d" of "forward"); only what is still too long
    after that is cropped from the end, with a fade-out.
    """
    arr = _as_audio(x, "fit_length input")
    if arr.size <= max_samples:
        return arr.copy(), "kept"
    if arr.size <= max_samples * max_compression:
        return stretch_to_length(arr, max_samples, sample_rate), "compressed"
    squeezed = stretch_to_length(arr, int(math.ceil(arr.size / max_compression)), sample_rate)
    return fade_edges(squeezed[:max_samples], sample_rate), "compressed+cropped"


def rms_dbfs(x) -> float:
    """RMS level of ``x`` in dB relative to full scale (-inf for silence)."""
    arr = _as_audio(x, "rms_dbfs input")
    power = float(np.mean(arr.astype(np.float64) ** 2)) if arr.size else 0.0
    return 10.0 * math.log10(power) if power > 0.0 else -math.inf


def set_level(x, target_dbfs: float) -> np.ndarray:
    """``x`` scaled to an RMS of ``target_dbfs``; silence stays silence."""
    arr = _as_audio(x, "set_level input")
    level = rms_dbfs(arr)
    if not math.isfinite(level):
        return arr.copy()
    return (arr * 10.0 ** ((target_dbfs - level) / 20.0)).astype(np.float32)


def limit_peak(x, peak: float = PEAK_LIMIT) -> np.ndarray:
    """``x`` scaled down (never up) so its largest magnitude is at most ``peak``."""
    arr = _as_audio(x, "limit_peak input")
    top = float(np.max(np.abs(arr))) if arr.size else 0.0
    return (arr * (peak / top)).astype(np.float32) if top > peak else arr.copy()
