"""The Python face of the kernel: Kernel / stream behaviour, multi-stream calls, threads, errors."""

import threading

import numpy as np
import pytest

from lmustream.errors import AudioError, CheckpointError
from lmustream.stream import Kernel, kernel_info
from tests.kernel.helpers import audio


@pytest.fixture(scope="module")
def kernel(plain):
    return Kernel(plain[1])


def test_attributes(kernel, plain):
    model = plain[0]
    assert kernel.labels == [f"class{i}" for i in range(model.config.n_classes)]
    assert kernel.lookahead == model.config.lookahead == 3
    assert kernel.sample_rate == 16000 and kernel.hop_length == 160
    assert kernel.simd == kernel_info()["simd"] and kernel.simd in {"avx512", "avx2", "neon", "scalar"}
    assert kernel.config["dim"] == model.config.dim and not kernel.spiking
    assert kernel.weight_bytes > 0 and kernel.macs_per_frame > 0
    assert "Kernel(" in repr(kernel)


def test_frames_and_shapes(kernel):
    stream = kernel.open()
    assert stream.push(np.zeros(399, np.float32)).shape == (0, 5)  # not one whole 25 ms window yet
    # 1 s completes 98 frames; the look-ahead holds back the last 3 until flush
    out = stream.push(audio(1.0)[399:])
    assert out.shape == (98 - 3, 5) and out.dtype == np.float32
    assert stream.flush().shape == (3, 5)
    assert stream.frames_emitted == 0  # flush ended the utterance
    assert stream.push(np.zeros(0, np.float32)).shape == (0, 5)


def test_int16_equals_scaled_float(kernel):
    pcm = (audio(1.5, 3) * 32767).astype(np.int16)
    a, b = kernel.open(), kernel.open()
    got = np.concatenate([a.push(pcm), a.flush()])
    want = np.concatenate([b.push(pcm.astype(np.float32) / 32768), b.flush()])
    np.testing.assert_array_equal(got, want)


def test_reset_and_flush_start_afresh(kernel):
    wave = audio(2.0, 4)
    fresh = kernel.open()
    want = np.concatenate([fresh.push(wave), fresh.flush()])
    stream = kernel.open()
    stream.push(audio(1.3, 5))
    stream.reset()
    np.testing.assert_array_equal(np.concatenate([stream.push(wave), stream.flush()]), want)
    np.testing.assert_array_equal(stream.running, fresh.running)
    # after flush, the next push is a new utterance
    np.testing.assert_array_equal(np.concatenate([stream.push(wave), stream.flush()]), want)
    stream.reset()
    np.testing.assert_array_equal(stream.running, np.zeros(5, np.float32))


def test_running_is_the_mean_of_what_the_head_saw(kernel):
    stream = kernel.open()
    stream.push(audio(1.0, 6))
    first = stream.running.copy()
    stream.push(audio(0.5, 7))
    assert not np.array_equal(first, stream.running)


def test_push_many_equals_separate_pushes(kernel):
    blocks = [audio(1.0 + 0.3 * i, i) for i in range(6)]
    blocks[2] = (blocks[2] * 32767).astype(np.int16)
    blocks[4] = blocks[4][:100]  # completes no frame
    solo = [kernel.open() for _ in blocks]
    streams = [kernel.open() for _ in blocks]
    for _ in range(2):  # twice: the streams carry their state from one call to the next
        want = [s.push(block) for s, block in zip(solo, blocks)]
        got = kernel.push_many(streams, blocks)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)  # same bits: a batch reads each weight once for all
    assert sum(len(g) for g in got) > 400


def test_push_many_rejects_bad_calls(kernel, plain):
    s = kernel.open()
    with pytest.raises(AudioError, match="appears twice"):
        kernel.push_many([s, s], [np.zeros(10, np.float32)] * 2)
    with pytest.raises(AudioError, match="2 sample blocks"):
        kernel.push_many([s], [np.zeros(10, np.float32)] * 2)
    other = Kernel(plain[1]).open()
    with pytest.raises(ValueError, match="not a stream opened by this kernel"):
        kernel.push_many([other], [np.zeros(10, np.float32)])


def test_threads_on_distinct_streams(kernel):
    waves = [audio(2.0, 10 + i) for i in range(4)]
    want = []
    for w in waves:
        s = kernel.open()
        want.append(np.concatenate([s.push(w), s.flush()]))
    got = [None] * 4

    def work(i):
        s = kernel.open()
        parts = [s.push(waves[i][j:j + 1600]) for j in range(0, waves[i].size, 1600)]
        got[i] = np.concatenate(parts + [s.flush()])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 100), np.float32), "1-D"),
    (np.zeros(100, np.int32), "unsupported sample dtype"),
    (np.zeros(100, np.complex64), "unsupported sample dtype"),
    (np.array(["a", "b"]), "unsupported sample dtype"),
    (np.array([0.0, np.nan, 0.0], np.float32), "non-finite sample .* index 1"),
    (np.array([0.0, 0.0, np.inf]), "non-finite sample .* index 2"),
])
def test_bad_samples_raise_audio_error(kernel, bad, match):
    stream = kernel.open()
    with pytest.raises(AudioError, match=match):
        stream.push(bad)
    assert stream.push(np.zeros(0, np.float32)).shape == (0, 5)  # the stream still works


def test_bad_features_raise(kernel):
    stream = kernel.open()
    with pytest.raises(AudioError, match=r"\[frames, 20\]"):
        stream.push_features(np.zeros((3, 21), np.float32))
    with pytest.raises(AudioError, match="non-finite"):
        stream.push_features(np.full((2, 20), np.nan, np.float32))


def test_float64_samples_are_accepted(kernel):
    wave = audio(1.0, 9)
    a, b = kernel.open(), kernel.open()
    np.testing.assert_array_equal(a.push(wave.astype(np.float64)), b.push(wave))


def test_missing_model_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Kernel(tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="no shipped model"):
        Kernel("no-such-shipped-model")


def test_spike_rates_of_a_spiking_model(spiking):
    stream = Kernel(spiking[1]).open()
    stream.push(audio(2.0, 11))
    rates = stream.spike_rates()
    assert list(rates)[0] == "embed0" and "block0.fc2" in rates and "head" in rates
    assert all(0.0 < r < 1.0 for r in rates.values())


def test_frame_lanes_option(plain):
    """frame_lanes=1 steps strictly frame by frame; any lane count gives the same bits."""
    wave = audio(1.5, 9)
    outs = []
    for lanes in (1, 3, 8, 64):
        kernel = Kernel(plain[1], frame_lanes=lanes)
        assert kernel.frame_lanes == lanes
        stream = kernel.open()
        outs.append(np.concatenate([stream.push(wave), stream.flush()]))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    for bad in (0, 65, 2.5, True):
        with pytest.raises(ValueError, match="frame_lanes"):
            Kernel(plain[1], frame_lanes=bad)
