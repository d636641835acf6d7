"""lmustream.audio.io: reading every WAV/FLAC flavour, resampling, and a clear error for each bad input."""

import os
import struct

import numpy as np
import pytest
import soundfile as sf

from lmustream.audio import (
    AudioTruncatedWarning,
    load_audio,
    read_audio,
    resample,
    validate_samples,
    write_audio,
)
from lmustream.errors import AudioError

RATE = 16000
TONE_HZ = 440.0
AMPLITUDE = 0.8


def tone(rate: int, seconds: float = 1.0, freq: float = TONE_HZ, amplitude: float = AMPLITUDE) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    """Peak of the zero-padded spectrum (0.1 Hz resolution for 1 s at 16 kHz after padding x10)."""
    n = 10 * x.size
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), n=n))
    return float(np.argmax(spectrum) * rate / n)


# --- reading ---------------------------------------------------------------------------

# subtype -> worst-case quantisation error of a [-1, 1] signal
SUBTYPES = {"PCM_U8": 1 / 128, "PCM_16": 1 / 32768, "PCM_24": 2 ** -23, "PCM_32": 2 ** -31,
            "FLOAT": 1e-7, "DOUBLE": 1e-7}


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_read_wav_subtypes(tmp_path, subtype):
    x = tone(RATE, 0.1)
    path = write_audio(tmp_path / f"{subtype}.wav", x, RATE, subtype=subtype)
    assert sf.info(str(path)).subtype == subtype
    y, rate = read_audio(path)
    assert rate == RATE and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=SUBTYPES[subtype] + 1e-7)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_read_flac(tmp_path, subtype):
    x = tone(RATE, 0.1)
    y, rate = read_audio(write_audio(tmp_path / "a.flac", x, RATE, subtype=subtype))
    assert rate == RATE and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=SUBTYPES[subtype] + 1e-7)


def test_stereo_is_downmixed_by_mean(tmp_path):
    left, right = tone(RATE, 0.1), -0.5 * tone(RATE, 0.1, freq=1000.0)
    path = write_audio(tmp_path / "stereo.wav", np.stack([left, right], axis=1), RATE, subtype="FLOAT")
    y, _ = read_audio(path)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-7)


def test_read_int16_matches_soundfile_scale(tmp_path):
    pcm = np.array([0, 1, -1, 16384, -32768, 32767], np.int16)
    y, _ = read_audio(write_audio(tmp_path / "i.wav", pcm, RATE))
    np.testing.assert_array_equal(y, pcm / 32768.0)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_load_audio_resamples_to_16k(tmp_path, rate):
    path = write_audio(tmp_path / f"{rate}.wav", tone(rate), rate, subtype="FLOAT")
    y = load_audio(path)
    assert y.dtype == np.float32 and abs(y.size - RATE) <= 1
    middle = y[1000:-1000]  # away from the resampler's edge transients
    assert abs(dominant_frequency(middle, RATE) - TONE_HZ) < 0.5
    assert np.sqrt(2 * np.mean(middle.astype(np.float64) ** 2)) == pytest.approx(AMPLITUDE, rel=5e-3)


def test_resample_removes_content_above_new_nyquist():
    # A 12 kHz tone at 44.1 kHz has no place at 16 kHz: it must vanish, not alias to 4 kHz.
    y = resample(tone(44100, freq=12000.0), 44100, RATE)
    assert np.sqrt(np.mean(y[1000:-1000].astype(np.float64) ** 2)) < 1e-3 * AMPLITUDE


def test_resample_same_rate_and_empty():
    x = tone(RATE, 0.01)
    y = resample(x, RATE, RATE)
    np.testing.assert_array_equal(y, x)
    assert y is not x
    assert resample(np.zeros(0, np.float32), 8000, RATE).shape == (0,)


def test_load_audio_native_rate_is_untouched(tmp_path):
    x = tone(RATE, 0.05)
    np.testing.assert_array_equal(load_audio(write_audio(tmp_path / "a.wav", x, RATE, subtype="FLOAT")), x)


def test_unknown_length_wav_header_is_accepted(tmp_path):
    # Recorders streaming to a pipe write 0xFFFFFFFF as the data size: not a truncation.
    x = tone(RATE, 0.1)
    path = write_audio(tmp_path / "stream.wav", x, RATE)
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[4:8] = data[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    y, _ = read_audio(path)
    np.testing.assert_allclose(y, x, atol=1 / 32768)


# --- bad files -------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="no such file") as e:
        read_audio(path)
    assert str(path) in str(e.value)


def test_directory(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        read_audio(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as e:
        read_audio(path)
    assert str(path) in str(e.value)


def test_zero_samples(tmp_path):
    path = write_audio(tmp_path / "zero.wav", np.zeros(0, np.float32), RATE)
    with pytest.raises(AudioError, match="no samples"):
        read_audio(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioError, match="corrupt") as e:
        read_audio(path)
    assert str(path) in str(e.value)


def test_unsupported_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not audio at all\n" * 20)
    with pytest.raises(AudioError, match="unsupported format"):
        read_audio(path)


def test_truncated_wav_raises_or_warns_on_request(tmp_path):
    x = tone(RATE, 0.5)
    path = write_audio(tmp_path / "cut.wav", x, RATE)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2 + 1])  # odd cut: half a sample at the end
    with pytest.raises(AudioError, match="truncated") as e:
        read_audio(path)
    assert str(path) in str(e.value) and "allow_truncated" in str(e.value)
    with pytest.warns(AudioTruncatedWarning, match="truncated"):
        y, rate = read_audio(path, allow_truncated=True)
    assert rate == RATE and 0 < y.size < x.size
    np.testing.assert_allclose(y, x[:y.size], atol=1 / 32768)
    with pytest.raises(AudioError, match="truncated"):
        load_audio(path)


def test_truncated_flac(tmp_path):
    path = write_audio(tmp_path / "cut.flac", tone(RATE, 0.5) + 0.01 * np.random.default_rng(0).standard_normal(
        RATE // 2).astype(np.float32), RATE)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(AudioError, match="truncated"):
        read_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    x = tone(RATE, 0.01)
    x[7] = bad
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, RATE, subtype="FLOAT")  # write_audio itself refuses NaN/Inf
    with pytest.raises(AudioError, match="non-finite") as e:
        read_audio(path)
    assert "frame 7" in str(e.value)


def test_write_audio_refuses_non_finite(tmp_path):
    with pytest.raises(AudioError, match="non-finite"):
        write_audio(tmp_path / "x.wav", np.array([0.0, np.nan]), RATE)


# --- arrays and rates ------------------------------------------------------------------

def test_resample_rejects_2d():
    with pytest.raises(AudioError, match="1-D"):
        resample(np.zeros((2, 100), np.float32), 8000, RATE)


def test_resample_rejects_non_finite():
    with pytest.raises(AudioError, match="non-finite"):
        resample(np.array([0.0, np.inf], np.float32), 8000, RATE)


@pytest.mark.parametrize("rate", [0, -8000, 1.5, True, "8000", None])
def test_resample_rejects_bad_rates(rate):
    with pytest.raises(AudioError, match="sample rate"):
        resample(np.zeros(10, np.float32), rate, RATE)
    with pytest.raises(AudioError, match="sample rate"):
        resample(np.zeros(10, np.float32), RATE, rate)


def test_resample_accepts_integral_rates_of_other_types():
    x = tone(8000, 0.1)
    np.testing.assert_array_equal(resample(x, np.int64(8000), 16000.0), resample(x, 8000, RATE))


def test_resample_bad_quality():
    with pytest.raises(AudioError, match="quality"):
        resample(np.zeros(10, np.float32), 8000, RATE, quality="LQ")


def test_validate_samples():
    pcm = np.array([-32768, 0, 16384], np.int16)
    out = validate_samples(pcm)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-1.0, 0.0, 0.5])
    assert validate_samples(np.zeros(3), dtype=np.float64).dtype == np.float64
    assert validate_samples([0.5, 0.25]).dtype == np.float32
    with pytest.raises(AudioError, match="dtype int32"):
        validate_samples(np.zeros(3, np.int32), "mic")
    with pytest.raises(AudioError, match=r"mic: expected a 1-D"):
        validate_samples(np.zeros((3, 1)), "mic")
    with pytest.raises(AudioError, match="non-finite"):
        validate_samples(np.array([np.nan]))
    with pytest.raises(AudioError, match=r"mic: got raw bytes.*numpy.frombuffer\(data, numpy.int16\)"):
        validate_samples(b"\x00\x01" * 8, "mic")
    with pytest.raises(AudioError, match="got text"):
        validate_samples("clip.wav")


def test_load_audio_bad_target_rate(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(RATE, 0.01), RATE)
    with pytest.raises(AudioError, match="sample rate") as e:
        load_audio(path, sample_rate=0)
    assert str(path) in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(RATE, 0.01), RATE)
    path.chmod(0)
    with pytest.raises(AudioError, match="permission"):
        read_audio(path)


# --- sample-rate bounds (soxr hangs or runs out of memory beyond them) ----------------------

@pytest.mark.parametrize("orig, target", [(1, 530000), (1, 768000), (768000, 1), (16000, 15), (15, 16000)])
def test_resample_refuses_ratios_soxr_cannot_finish(orig, target):
    with pytest.raises(AudioError, match="ratio .* above the 1024 supported"):
        resample(np.zeros(10, np.float32), orig, target)


def test_resample_at_the_ratio_bound_is_quick():
    assert resample(np.zeros(10, np.float32), 1, 1024).shape == (10240,)
    assert resample(tone(768000, 0.01), 768000, 750).shape == (8,)


@pytest.mark.parametrize("rate", [768001, 10 ** 12, float("inf"), float("nan")])
def test_rates_above_768_khz_are_refused(rate):
    with pytest.raises(AudioError, match="at most 768000"):
        resample(np.zeros(10, np.float32), RATE, rate)


def test_load_audio_with_a_huge_rate_is_an_audio_error_not_a_memory_error(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(RATE, 0.01), RATE)
    with pytest.raises(AudioError, match=r"at most 768000, got 1000000000000") as e:
        load_audio(path, sample_rate=10 ** 12)
    assert str(path) in str(e.value)
    with pytest.raises(AudioError, match="load_audio.*ratio"):
        load_audio(path, sample_rate=8)


def test_non_integer_rates_say_they_are_not_supported():
    with pytest.raises(AudioError, match=r"got 16000\.5 \(non-integer rates are not supported\)"):
        resample(np.zeros(10, np.float32), 16000.5, RATE)


def test_tensors_requiring_grad_are_samples():
    torch = pytest.importorskip("torch")
    x = tone(8000, 0.1)
    got = resample(torch.from_numpy(x).requires_grad_(True), 8000, RATE)
    np.testing.assert_array_equal(got, resample(x, 8000, RATE))
    np.testing.assert_array_equal(validate_samples(torch.from_numpy(x).to(torch.bfloat16)),
                                  torch.from_numpy(x).to(torch.bfloat16).float().numpy())
