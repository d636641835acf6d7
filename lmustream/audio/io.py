"""Audio file I/O, sample validation and resampling (numpy only: no torch on this path).

Every problem with a file or an array raises :class:`lmustream.errors.AudioError` whose
message names the file (or argument) and what is wrong with it.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import soxr

from lmustream.arrays import as_numpy
from lmustream.errors import AudioError

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_SAMPLE_RATE = 16000  # Hz: what the keyword-spotting models are trained on
INT16_SCALE = 1.0 / 32768.0  # int16 full scale -> [-1, 1), the convention libsndfile uses too
RESAMPLE_QUALITIES = ("HQ", "VHQ")  # soxr presets; lower ones alias audibly at KWS bandwidths
DEFAULT_RESAMPLE_QUALITY = "HQ"
DEFAULT_SUBTYPE = "PCM_16"  # write_audio default: 16-bit PCM, what KWS corpora ship as
# The C++ kernel's bound too; far higher "rates" are typos, and soxr allocates by the rate.
MAX_SAMPLE_RATE = 768000
# soxr's filter design grows with the ratio and never finishes past ~2^19 (sooner with VHQ);
# 8 kHz <-> 768 kHz is 96, so this leaves every real conversion room.
MAX_RESAMPLE_RATIO = 1024

# RIFF data-chunk sizes that mean "length unknown" (written by recorders streaming to a
# pipe or that never went back to patch the header): not evidence of truncation.
_RIFF_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)
# Formats whose header frame count is exact, so reading fewer frames means the file is cut.
_EXACT_LENGTH_FORMATS = ("FLAC",)


class AudioTruncatedWarning(UserWarning):
    """A file was shorter than its header declares and ``allow_truncated=True`` returned what was there."""


def refuse_undecoded(x, name: str) -> None:
    """Raise AudioError for samples passed as raw bytes or as text, saying how to pass them instead."""
    if isinstance(x, (bytes, bytearray, memoryview)):  # what PyAudio-style callbacks hand over
        raise AudioError(f"{name}: got raw bytes, whose sample format is unknown; decode them first, e.g. "
                         "numpy.frombuffer(data, numpy.int16) for 16-bit PCM")
    if isinstance(x, str):
        raise AudioError(f"{name}: got text; pass an array of samples (read a file with lmustream.audio.read_audio)")


def check_sample_dtype(dtype, name: str) -> None:
    """AudioError unless ``dtype`` holds float samples (int16 is scaled by the caller): the full scale
    of other integers is ambiguous (int32 may hold 24-bit or 32-bit PCM), bool is no audio."""
    if not np.issubdtype(dtype, np.floating):
        raise AudioError(f"{name}: unsupported sample dtype {dtype}; pass float samples in "
                         "[-1, 1] or int16 PCM")


def validate_samples(x, name: str = "samples", dtype=np.float32) -> np.ndarray:
    """Return ``x`` as a 1-D finite ``dtype`` array, or raise AudioError naming ``name``.

    Accepts floating-point arrays (any precision) and int16 PCM, scaled by 1/32768 to
    [-1, 1). Other integer types are rejected because their full scale is ambiguous
    (int32 may hold 24-bit or 32-bit PCM). The result may share memory with ``x`` when no
    conversion is needed: copy it before keeping it.
    """
    refuse_undecoded(x, name)
    arr = x if isinstance(x, np.ndarray) else as_numpy(x)
    if arr.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D array of samples (mono), got shape {arr.shape}")
    if arr.dtype == np.int16:
        return arr.astype(dtype) * INT16_SCALE  # exact: a power of two
    check_sample_dtype(arr.dtype, name)
    arr = arr.astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr))
        raise AudioError(f"{name}: {bad.size} non-finite sample(s) (NaN or Inf), first at index {bad[0]}")
    return arr


def check_sample_rate(rate, name: str) -> int:
    """A sample rate as an ``int`` in [1, MAX_SAMPLE_RATE] Hz (numpy integers and integral floats accepted)."""
    rule = f"a positive integer in Hz, at most {MAX_SAMPLE_RATE}"
    if isinstance(rate, (bool, np.bool_)):
        raise AudioError(f"{name}: sample rate must be {rule}, got {rate!r}")
    if isinstance(rate, (float, np.floating)):
        if not math.isfinite(rate) or not float(rate).is_integer():
            raise AudioError(f"{name}: sample rate must be {rule}, got {rate!r} (non-integer rates are not "
                             "supported)")
        rate = int(rate)
    if not isinstance(rate, (int, np.integer)) or rate <= 0 or rate > MAX_SAMPLE_RATE:
        raise AudioError(f"{name}: sample rate must be {rule}, got {rate!r}")
    return int(rate)


def check_resample_ratio(orig: int, target: int, name: str) -> None:
    """AudioError when converting ``orig`` Hz to ``target`` Hz is beyond MAX_RESAMPLE_RATIO either way."""
    if max(orig, target) > MAX_RESAMPLE_RATIO * min(orig, target):
        raise AudioError(f"{name}: cannot resample {orig} Hz to {target} Hz: a ratio of "
                         f"{max(orig, target) / min(orig, target):g}, above the {MAX_RESAMPLE_RATIO} supported "
                         "either way")


def resample(samples, orig_sr: int, target_sr: int, quality: str = DEFAULT_RESAMPLE_QUALITY) -> np.ndarray:
    """Band-limited resampling of 1-D ``samples`` from ``orig_sr`` to ``target_sr`` Hz (float32 out).

    Uses soxr (``quality`` "HQ" or "VHQ": linear phase, stop band well above 100 dB), so
    content above the new Nyquist is removed rather than aliased. The output holds
    ``ceil(n * target_sr / orig_sr)`` samples; equal rates return a float32 copy. Rates must be
    integers in [1, MAX_SAMPLE_RATE] Hz and their ratio at most MAX_RESAMPLE_RATIO either way
    (AudioError otherwise).
    """
    x = validate_samples(samples, "resample input")
    orig = check_sample_rate(orig_sr, "resample orig_sr")
    target = check_sample_rate(target_sr, "resample target_sr")
    if quality not in RESAMPLE_QUALITIES:
        raise AudioError(f"resample quality must be one of {RESAMPLE_QUALITIES}, got {quality!r}")
    check_resample_ratio(orig, target, "resample")
    if orig == target:
        return x.copy()
    if x.size == 0:
        return np.zeros(0, np.float32)
    return np.asarray(soxr.resample(x, orig, target, quality=quality), dtype=np.float32)


def _riff_data_shortfall(path: str) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a RIFF/WAVE data chunk cut short, else None.

    libsndfile quietly shrinks a WAV's data length to what the file holds, so a cut file
    would otherwise read as a shorter, valid one.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
            return None
        fmt = "<4sI" if head[:4] == b"RIFF" else ">4sI"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack(fmt, f.read(8))
            if chunk_id == b"data":
                present = size - (pos + 8)
                if chunk_size in _RIFF_UNKNOWN_SIZES or present >= chunk_size:
                    return None
                return chunk_size, present
            pos += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    return None


def truncation(path: str, fmt: str, declared: int, decoded: int) -> str | None:
    """What a file shorter than its header declares lacks (``fmt``, ``declared`` frames: libsndfile's
    view of it; ``decoded``: the frames read), or None when it is whole."""
    shortfall = _riff_data_shortfall(path) if fmt in ("WAV", "WAVEX") else None
    if shortfall is not None:
        return f"data chunk declares {shortfall[0]} bytes, only {shortfall[1]} present"
    if fmt in _EXACT_LENGTH_FORMATS and decoded < declared:
        return f"header declares {declared} frames, only {decoded} decoded"
    return None


def _truncated(path: str, detail: str, allow_truncated: bool) -> None:
    """Raise (default) or warn about a file that is shorter than its header says."""
    message = f"{path!r}: truncated file: {detail}"
    if not allow_truncated:
        raise AudioError(message + " (pass allow_truncated=True to use the samples present)")
    warnings.warn(message + "; using the samples present", AudioTruncatedWarning, stacklevel=3)


def check_audio_file(path: PathLike) -> str:
    """``path`` as a string if it names a non-empty readable file; AudioError saying what it is otherwise."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise AudioError(f"{name!r}: no such file")
    if os.path.isdir(name):
        raise AudioError(f"{name!r}: is a folder (a directory), not an audio file")
    if os.path.getsize(name) == 0:
        raise AudioError(f"{name!r}: empty file (0 bytes)")
    if not os.access(name, os.R_OK):
        raise AudioError(f"{name!r}: cannot read: permission denied")
    return name


def read_audio(path: PathLike, *, allow_truncated: bool = False) -> tuple[np.ndarray, int]:
    """Read any libsndfile format into ``(samples float32 [n] mono, sample_rate Hz)``.

    Integer PCM is scaled to [-1, 1); multichannel audio is averaged to mono. Raises
    AudioError for a missing path, a directory, an empty (0-byte) file, an unsupported or
    corrupt file, zero samples, or NaN/Inf samples. A file shorter than its header
    declares (WAV data chunk, FLAC stream info) raises too, unless ``allow_truncated``
    (default False), which warns (:class:`AudioTruncatedWarning`) and returns the whole
    frames present: a cut-off recording is silently missing its end otherwise.
    """
    name = check_audio_file(path)
    try:
        with sf.SoundFile(name) as f:
            declared, rate, fmt = f.frames, f.samplerate, f.format
            data = f.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{name!r}: unsupported format or corrupt/truncated file ({e})") from e
    missing = truncation(name, fmt, declared, data.shape[0])
    if missing is not None:
        _truncated(name, missing, allow_truncated)
    if data.shape[0] == 0:
        raise AudioError(f"{name!r}: contains no samples")
    # Average in float64 so downmixing adds no rounding beyond the final cast.
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float64).astype(np.float32)
    if not np.isfinite(mono).all():
        bad = np.flatnonzero(~np.isfinite(mono))
        raise AudioError(f"{name!r}: {bad.size} non-finite sample(s) (NaN or Inf), first at frame {bad[0]}")
    return np.ascontiguousarray(mono), int(rate)


def load_audio(path: PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE, *,
               allow_truncated: bool = False) -> np.ndarray:
    """Read ``path`` as float32 mono at ``sample_rate`` Hz (default 16000), resampling with soxr HQ."""
    target = check_sample_rate(sample_rate, f"load_audio({os.fspath(path)!r}) sample_rate")
    samples, rate = read_audio(path, allow_truncated=allow_truncated)
    if rate == target:
        return samples
    # the file's header states its rate: blame the file, not resample's arguments
    name = f"load_audio({os.fspath(path)!r})"
    check_sample_rate(rate, f"{name}: the file's header")
    check_resample_ratio(rate, target, name)
    return resample(samples, rate, target)


def write_audio(path: PathLike, samples, sample_rate: int = DEFAULT_SAMPLE_RATE,
                subtype: str = DEFAULT_SUBTYPE) -> Path:
    """Write ``samples`` (float in [-1, 1] or int16; [n] mono or [n, channels]) and return the path.

    The container follows the extension (.wav, .flac, ...); ``subtype`` is libsndfile's
    (default "PCM_16"; "PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", ...). Integer
    subtypes clip values outside [-1, 1] (libsndfile's behaviour).
    """
    name = os.fspath(path)
    arr = np.asarray(samples)
    if arr.ndim == 2:
        channels = [validate_samples(arr[:, c], f"{name!r} channel {c}", np.float64) for c in range(arr.shape[1])]
        data = np.stack(channels, axis=1) if channels else arr.astype(np.float64)
    else:
        data = validate_samples(arr, f"{name!r} samples", np.float64)
    rate = check_sample_rate(sample_rate, f"{name!r} sample_rate")
    try:
        sf.write(name, data, rate, subtype=subtype)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{name!r}: cannot write audio ({e})") from e
    return Path(name)
