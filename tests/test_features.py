"""lmustream.audio.features: config, filterbank, batch fbank, streaming == batch, torchaudio conformance."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lmustream.audio import FbankConfig, StreamingFbank, fbank, mel_filterbank, normalize, window_function
from lmustream.errors import AudioError, ConfigError
from tests.conftest import REPO, shared_dir

N_MELS = 128
# Conformance to torchaudio (see the brief / lmustream.conformance): bins within RANGE_DB of
# their frame's max must match to TOL, the rest (float32 noise in near-silent bins) to LOW_TOL.
TOL, LOW_TOL, RANGE_DB = 2e-3, 0.1, 80.0
MAX_CHUNK = 4000  # samples: streaming is fed random chunks of 1..MAX_CHUNK
STREAM_VS_BATCH64_TOL = 1e-5  # float64 both ways, float32 output: a few float32 ulps of |fbank| ~ 20
CONFORMANCE = sorted((shared_dir() / "conformance" / "fbank").glob("*.npz"))


def push_in_chunks(stream: StreamingFbank, wave: np.ndarray, rng: np.random.Generator,
                   max_chunk: int = MAX_CHUNK) -> np.ndarray:
    pieces, start = [np.zeros((0, stream.config.n_mels), np.float32)], 0
    while start < wave.size:
        size = int(rng.integers(1, max_chunk + 1))
        pieces.append(stream.push(wave[start:start + size]))
        start += size
    return np.concatenate(pieces)


def errors(ours: np.ndarray, gold: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    err = np.abs(ours.astype(np.float64) - gold)
    return float(err[mask].max(initial=0.0)), float(err[~mask].max(initial=0.0))


@pytest.fixture
def speechlike(rng):
    """1.3 s of chirp + noise + DC offset: exercises every mel bin and the DC removal."""
    t = np.arange(int(1.3 * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * (100 + 3000 * t) * t) + 0.02 * rng.standard_normal(t.size) + 0.1).astype(
        np.float32)


# --- config ----------------------------------------------------------------------------

def test_config_defaults():
    c = FbankConfig()
    assert (c.window_length, c.hop_length, c.n_fft, c.upper_freq) == (400, 160, 512, 8000.0)
    assert c.log_floor == np.finfo(np.float32).eps
    assert FbankConfig(round_to_power_of_two=False).n_fft == 400
    assert FbankConfig(sample_rate=8000).window_length == 200
    assert [c.num_frames(n) for n in (0, 399, 400, 559, 560)] == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("kwargs, match", [
    ({"sample_rate": 0}, "sample_rate"),
    ({"sample_rate": 16000.5}, "sample_rate must be int"),
    ({"frame_length_ms": 0.0}, "frame_length_ms"),
    ({"frame_length_ms": 0.1}, "frame_length_ms"),  # 1.6 samples
    ({"frame_shift_ms": -1.0}, "frame_shift_ms"),
    ({"n_mels": 0}, "n_mels"),
    ({"n_mels": 1.5}, "n_mels must be int"),
    ({"low_freq": 8000.0}, "low_freq"),
    ({"low_freq": -1.0}, "low_freq"),
    ({"high_freq": 9000.0}, "high_freq"),
    ({"high_freq": -8000.0}, "high_freq"),
    ({"low_freq": 300.0, "high_freq": 200.0}, "high_freq"),
    ({"preemphasis": 1.5}, "preemphasis"),
    ({"window": "kaiser"}, "window"),
    ({"log_floor": 0.0}, "log_floor"),
    ({"std": 0.0}, "std"),
    ({"mean": float("nan")}, "mean"),
    ({"remove_dc_offset": "yes"}, "remove_dc_offset must be bool"),
    ({"n_mels": True}, "n_mels must be int"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FbankConfig(**kwargs)


def test_config_dict_round_trip():
    c = FbankConfig(n_mels=80, window="povey", high_freq=-400.0, mean=-4.0, std=4.0)
    d = json.loads(json.dumps(c.to_dict()))
    assert FbankConfig.from_dict(d) == c
    assert FbankConfig.from_dict({}) == FbankConfig()
    assert FbankConfig.from_dict({"low_freq": 20}).low_freq == 20.0  # JSON may write 20.0 as 20
    assert isinstance(FbankConfig.from_dict({"low_freq": 20}).low_freq, float)
    assert hash(c) == hash(FbankConfig.from_dict(d))


def test_config_from_dict_rejects_unknown_keys_and_non_mappings():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['nmels'\]"):
        FbankConfig.from_dict({"nmels": 64})
    with pytest.raises(ConfigError, match="mapping"):
        FbankConfig.from_dict([("n_mels", 64)])


# --- filterbank and window -------------------------------------------------------------

def test_mel_filterbank_shape_and_kaldi_properties():
    bank = mel_filterbank()
    assert bank.shape == (N_MELS, 257) and bank.dtype == np.float64
    assert (bank >= 0).all() and bank.max() <= 1.0
    assert (bank[:, -1] == 0).all()  # Kaldi leaves the Nyquist bin out
    assert (bank[:, 0] == 0).all()  # 0 Hz is below low_freq = 20 Hz
    peaks = bank[bank.any(axis=1)].argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()
    bank[0, 0] = 5.0  # a copy: the cached matrix is unaffected
    assert mel_filterbank()[0, 0] == 0.0


def test_window_is_symmetric_hann():
    w = window_function()
    n = np.arange(400)
    np.testing.assert_allclose(w, 0.5 - 0.5 * np.cos(2 * np.pi * n / 399), atol=1e-15)
    assert w[0] == 0.0 and w[-1] == pytest.approx(0.0, abs=1e-15)


# --- batch fbank -----------------------------------------------------------------------

@pytest.mark.parametrize("n, frames", [(0, 0), (1, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98)])
def test_fbank_frame_count(n, frames):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n))
    assert fbank(x).shape == (frames, N_MELS)
    assert fbank(x.repeat(3, 1)).shape == (3, frames, N_MELS)


def test_fbank_batch_rows_equal_single(speechlike):
    x = torch.from_numpy(speechlike)
    batch = fbank(torch.stack([x, 0.5 * x]))
    torch.testing.assert_close(batch[0], fbank(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(batch[1], fbank(0.5 * x), rtol=0, atol=1e-5)
    assert batch.dtype == torch.float32


def test_fbank_dtypes(speechlike):
    pcm = np.round(speechlike * 32767).astype(np.int16)
    x64 = torch.from_numpy(pcm.astype(np.float64) / 32768)
    out64 = fbank(x64)
    assert out64.dtype == torch.float64
    x32 = torch.from_numpy(pcm.astype(np.float32) / 32768)
    torch.testing.assert_close(fbank(torch.from_numpy(pcm)), fbank(x32), rtol=0, atol=0)
    # float32 vs float64 differ by float32 rounding, relatively more in the faint bins
    assert (fbank(x32) - out64).abs().max() < 1e-2
    torch.testing.assert_close(fbank(pcm), fbank(torch.from_numpy(pcm)))  # numpy accepted too


def test_fbank_rejects_bad_input():
    with pytest.raises(AudioError, match="shape"):
        fbank(torch.zeros(1, 1, 800))
    with pytest.raises(AudioError, match="dtype"):
        fbank(torch.zeros(800, dtype=torch.int32))
    with pytest.raises(AudioError, match="non-finite"):
        fbank(torch.tensor([0.0, float("nan")] * 400))


def test_fbank_is_differentiable():
    x = torch.randn(2, 1000, dtype=torch.float64, requires_grad=True)
    fbank(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_silence_hits_the_log_floor():
    out = fbank(torch.zeros(800))
    torch.testing.assert_close(out, torch.full_like(out, float(np.log(np.float32(FbankConfig().log_floor)))))


def test_normalize_numpy_and_torch():
    c = FbankConfig()
    x = np.array([[c.mean, c.mean + 2 * c.std]], np.float32)
    np.testing.assert_allclose(normalize(x, c), [[0.0, 1.0]], atol=1e-6)
    assert normalize(x).dtype == np.float32
    torch.testing.assert_close(normalize(torch.from_numpy(x)), torch.tensor([[0.0, 1.0]]), atol=1e-6, rtol=0)


# --- streaming -------------------------------------------------------------------------

@pytest.mark.parametrize("window", ["hanning", "povey", "hamming"])
def test_streaming_equals_batch_random_chunks(speechlike, rng, window):
    config = FbankConfig(window=window)
    batch = fbank(torch.from_numpy(speechlike.astype(np.float64)), config).numpy()
    stream = StreamingFbank(config)
    out = push_in_chunks(stream, speechlike, rng)
    assert out.dtype == np.float32 and out.shape == batch.shape
    np.testing.assert_allclose(out, batch, rtol=0, atol=STREAM_VS_BATCH64_TOL)
    assert stream.frames_emitted == batch.shape[0]
    assert 0 <= stream.pending_samples < config.window_length


def test_streaming_one_sample_at_a_time(speechlike):
    wave = speechlike[:1500]
    stream = StreamingFbank()
    pieces = [stream.push(wave[i:i + 1]) for i in range(wave.size)]
    assert [len(p) for p in pieces].count(1) == FbankConfig().num_frames(wave.size)
    np.testing.assert_allclose(np.concatenate(pieces), StreamingFbank().push(wave), rtol=0, atol=0)


def test_streaming_empty_pushes(speechlike):
    stream = StreamingFbank()
    for chunk in (speechlike[:0], np.zeros(0, np.int16), [], speechlike[:399], speechlike[:0]):
        out = stream.push(chunk)
        assert out.shape == (0, N_MELS) and out.dtype == np.float32
    assert stream.push(speechlike[399:400]).shape == (1, N_MELS)
    assert stream.push(np.zeros(0, np.float32)).shape == (0, N_MELS)


def test_streaming_int16_and_normalized(speechlike, rng):
    pcm = np.round(speechlike * 32767).astype(np.int16)
    batch = fbank(torch.from_numpy(pcm.astype(np.float64) / 32768)).numpy()
    raw = push_in_chunks(StreamingFbank(), pcm, rng)
    np.testing.assert_allclose(raw, batch, rtol=0, atol=STREAM_VS_BATCH64_TOL)
    norm = push_in_chunks(StreamingFbank(normalized=True), pcm, rng)
    np.testing.assert_allclose(norm, normalize(batch), rtol=0, atol=STREAM_VS_BATCH64_TOL)


def test_streaming_reset_and_counter(speechlike):
    stream = StreamingFbank()
    first = stream.push(speechlike[:1000])
    assert stream.frames_emitted == len(first) == 4
    stream.reset()
    assert stream.frames_emitted == 0 and stream.pending_samples == 0
    np.testing.assert_array_equal(stream.push(speechlike[:1000]), first)


def test_streaming_does_not_keep_a_reference_to_the_callers_buffer(speechlike):
    stream, reference = StreamingFbank(), StreamingFbank()
    chunk = speechlike[:300].astype(np.float64)
    stream.push(chunk)
    reference.push(chunk.copy())
    chunk[:] = 0.0  # a caller reusing its audio buffer
    np.testing.assert_array_equal(stream.push(speechlike[300:800]), reference.push(speechlike[300:800]))


def test_streaming_rejects_bad_input_and_keeps_state(speechlike):
    stream = StreamingFbank()
    stream.push(speechlike[:300])
    with pytest.raises(AudioError, match="1-D"):
        stream.push(np.zeros((10, 2), np.float32))
    with pytest.raises(AudioError, match="dtype"):
        stream.push(np.zeros(10, np.int32))
    with pytest.raises(AudioError, match="non-finite"):
        stream.push(np.array([np.inf], np.float32))
    assert stream.pending_samples == 300


def test_streaming_runs_without_torch(tmp_path):
    # The deployed runtime has no torch: importing and streaming must not touch it.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from lmustream.audio import StreamingFbank, read_audio, write_audio, load_audio\n"
        f"p = write_audio({str(tmp_path / 'a.wav')!r}, np.zeros(800, np.float32) + 0.1, 8000)\n"
        "print(StreamingFbank(normalized=True).push(load_audio(p)).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(8, 128)"


# --- conformance to torchaudio's Kaldi fbank -------------------------------------------

@pytest.mark.parametrize("path", CONFORMANCE or [None], ids=[p.stem for p in CONFORMANCE] or ["absent"])
def test_conformance_torchaudio(path: Path | None):
    if path is None:
        pytest.skip(f"conformance vectors not found under {shared_dir() / 'conformance' / 'fbank'}")
    case = np.load(path)
    wave, gold, gold_norm = case["waveform"], case["fbank"].astype(np.float64), case["normalized"]
    in_range = gold >= gold.max(axis=1, keepdims=True) - RANGE_DB * np.log(10) / 10
    rng = np.random.default_rng(sum(path.stem.encode()))
    outputs = {
        "batch": fbank(torch.from_numpy(wave)).numpy(),
        "streaming": push_in_chunks(StreamingFbank(), wave, rng),
        "batch normalized": normalize(fbank(torch.from_numpy(wave))).numpy(),
        "streaming normalized": push_in_chunks(StreamingFbank(normalized=True), wave, rng),
    }
    for label, ours in outputs.items():
        assert ours.shape == gold.shape, label
        reference = gold_norm if "normalized" in label else gold
        high, low = errors(ours, reference, in_range)
        print(f"{path.stem} {label}: max err in range {high:.2e}, low-energy {low:.2e}")
        assert high <= TOL, f"{label}: {high}"
        assert low <= LOW_TOL, f"{label}: {low}"


def test_mel_centre_hz_lies_between_the_band_edges_and_rises():
    from lmustream.audio.features import FbankConfig, mel_centre_hz

    config = FbankConfig()
    centres = mel_centre_hz(config)
    assert centres.shape == (config.n_mels,)
    assert (np.diff(centres) > 0).all()
    assert config.low_freq < centres[0] and centres[-1] < config.upper_freq


# --- bad input: lmustream's errors, not torch's --------------------------------------------

def test_fbank_refuses_samples_by_channels_audio():
    with pytest.raises(AudioError, match=r"\[16000, 2\].*looks like \[samples, channels\] audio"):
        fbank(np.zeros((16000, 2), np.float32))
    with pytest.raises(AudioError, match="samples, channels"):
        fbank(torch.zeros(400, 1))
    assert fbank(np.zeros((3, 399), np.float32)).shape == (3, 0, N_MELS)  # a batch of short clips stays one


@pytest.mark.parametrize("shape", [(0, 1000), (0, 10), (0, 0)])
def test_fbank_refuses_an_empty_batch(shape):
    with pytest.raises(AudioError, match="empty batch"):
        fbank(torch.zeros(shape))


@pytest.mark.parametrize("bad, match", [
    (np.array([0.0, None] * 400, dtype=object), "dtype object"),
    (np.array(["a", "b"]), "dtype <U1"),
    (b"\x00\x01" * 400, "raw bytes"),
    ("clip.wav", "got text"),
], ids=["object", "str-array", "bytes", "text"])
def test_fbank_refuses_what_is_no_audio(bad, match):
    with pytest.raises(AudioError, match=match):
        fbank(bad)


def test_configs_of_another_type_are_refused():
    with pytest.raises(ConfigError, match="must be an FbankConfig, got dict"):
        fbank(np.zeros(800, np.float32), {"n_mels": 64})
    with pytest.raises(ConfigError, match="must be an FbankConfig, got dict"):
        StreamingFbank({"n_mels": 64})
    np.testing.assert_allclose(normalize([1.0]), normalize(np.array([1.0])))


@pytest.mark.parametrize("kwargs, match", [
    ({"frame_length_ms": float("inf")}, r"frame_length_ms must be in \(0, 10000\]"),
    ({"frame_shift_ms": float("inf")}, r"frame_shift_ms must be in \(0, 10000\]"),
    ({"frame_length_ms": 1e6}, "frame_length_ms"),
    ({"frame_length_ms": 5000.0}, "FFT of 131072 points"),
    ({"n_mels": 10 ** 6}, r"n_mels must be in \[1, 65536\]"),
    ({"sample_rate": 10 ** 12}, r"sample_rate must be in \[1, 768000\]"),
])
def test_config_upper_bounds(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FbankConfig(**kwargs)
