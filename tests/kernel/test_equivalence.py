"""The C++ kernel equals the PyTorch step form (StepLMUFormer) frame by frame.

Non-spiking: per-frame and running logits within 1e-4 of the float32 step form and of the
float64 one (no drift) over utterances pushed as audio in random chunks of 1 sample to 1 s,
with and without flush between utterances. Spiking: the spike trains of every LIF layer are
identical (flip rate <= 1e-5) and the logits agree to 1e-4. Long streams (>= 100,000 frames,
paper size) are measured by benchmarks/kernel_equivalence.py.
"""

import numpy as np
import pytest
import torch

from lmustream import _kernel
from lmustream.stream import Kernel
from tests.kernel.helpers import audio, features, make_model, push_in_chunks, reference, save

TOL = 1e-4
MAX_FLIP_RATE = 1e-5


def test_plain_audio_stream_equals_step_form(plain):
    """Three utterances as audio in random chunks: flush after the first (a new utterance starts),
    none between the second and the third (the kernel sees one continuous stream)."""
    model, path = plain
    kernel = Kernel(path)
    stream = kernel.open()
    rng = np.random.default_rng(0)
    first, second, third = audio(4.0, 1), audio(2.5, 2), audio(6.0, 3)
    got_first = np.concatenate([push_in_chunks(stream, first, rng), stream.flush()])
    running_first = stream.running
    got_rest = np.concatenate([push_in_chunks(stream, np.concatenate([second, third]), rng), stream.flush()])
    running_rest = stream.running
    for dtype in (torch.float32, torch.float64):
        want_first, want_running_first, _ = reference(model, features(model, first), dtype)
        want_rest, want_running_rest, _ = reference(model, features(model, np.concatenate([second, third])), dtype)
        assert got_first.shape == want_first.shape and got_rest.shape == want_rest.shape
        assert np.abs(got_first - want_first).max() < TOL, dtype
        assert np.abs(got_rest - want_rest).max() < TOL, dtype
        assert np.abs(running_first - want_running_first).max() < TOL
        assert np.abs(running_rest - want_running_rest).max() < TOL
    assert len(got_first) + len(got_rest) > 1200


def test_spiking_spike_trains_identical(spiking):
    model, path = spiking
    feats = features(model, audio(12.0, 4))
    want, want_running, want_spikes = reference(model, feats, spikes=True)
    stream = Kernel(path).open()
    stream.record_spikes(True)
    got = np.concatenate([stream.push_features(feats[:777]), stream.push_features(feats[777:]), stream.flush()])
    spikes = stream.take_spikes()
    assert set(spikes) == set(want_spikes)
    flips = sum(int((spikes[name] != want_spikes[name]).sum()) for name in want_spikes)
    compared = sum(want_spikes[name].size for name in want_spikes)
    assert compared > 300_000
    assert flips / compared <= MAX_FLIP_RATE, f"{flips} of {compared} spikes differ"
    rates = stream.spike_rates()
    assert all(rate > 0.01 for rate in rates.values()), rates  # every layer is exercised
    if flips == 0:
        assert np.abs(got - want).max() < TOL
        assert np.abs(stream.running - want_running).max() < TOL


@pytest.mark.parametrize("spiking_model", [False, True])
@pytest.mark.parametrize("overrides", [
    dict(causal=True),
    dict(kernel_size=5, embed_convs=1, depth=2),
    dict(embed_convs=3, dim=24, memory_size=40, mlp_ratio=3, n_classes=3),
], ids=["causal", "k5-e1-depth2", "odd-sizes"])
def test_any_configured_size(tmp_path, spiking_model, overrides):
    model = make_model(spiking=spiking_model, seed=5, **overrides)
    path = save(model, tmp_path / "m.safetensors")
    kernel = Kernel(path)
    assert kernel.lookahead == model.config.lookahead
    feats = features(model, audio(3.0, 6))
    want, _, want_spikes = reference(model, feats, spikes=spiking_model)
    stream = kernel.open()
    stream.record_spikes(spiking_model)
    got = np.concatenate([stream.push_features(feats), stream.flush()])
    assert got.shape == want.shape
    if spiking_model:
        spikes = stream.take_spikes()
        flips = sum(int((spikes[n] != want_spikes[n]).sum()) for n in want_spikes)
        assert flips == 0
    assert np.abs(got - want).max() < TOL


def _simd_paths():
    return _kernel.simd_levels().split()


@pytest.mark.parametrize("fixture", ["plain", "spiking"])
def test_every_simd_path_agrees_with_scalar(request, fixture):
    model, path = request.getfixturevalue(fixture)
    wave = audio(3.0, 7)
    outs = {}
    for simd in _simd_paths():
        stream = Kernel(path, simd=simd).open()
        outs[simd] = np.concatenate([stream.push(wave), stream.flush()])
    assert len(outs) >= 1
    for simd, out in outs.items():
        assert np.abs(out - outs["scalar"]).max() < 1e-5, simd


@pytest.mark.parametrize("int8", [False, True])
def test_add_only_equals_dense_bitwise(spiking, int8):
    _, path = spiking
    wave = audio(3.0, 8)
    outs = []
    for spike_path in ("add-only", "dense"):
        stream = Kernel(path, int8=int8, spike_path=spike_path).open()
        outs.append(np.concatenate([stream.push(wave), stream.flush()]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_forced_unknown_simd_path_is_an_error(plain):
    with pytest.raises(ValueError, match="not available"):
        Kernel(plain[1], simd="sse9")


@pytest.mark.parametrize("fixture", ["plain", "spiking"])
@pytest.mark.parametrize("int8", [False, True])
def test_frames_pushed_together_equal_one_at_a_time_bitwise(request, fixture, int8):
    """A push of many frames steps them as lanes of one batch (weights read once per few frames);
    the memory, windows, membranes and running mean still advance frame by frame, so every
    output, the running mean and every spike equal pushing the frames one at a time, bit for bit."""
    _, path = request.getfixturevalue(fixture)
    kernel = Kernel(path, int8=int8)
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((61, kernel.config["n_mels"])).astype(np.float32)
    one, many = kernel.open(), kernel.open()
    for stream in (one, many):
        if kernel.spiking:
            stream.record_spikes()
    want = [one.push_features(feats[i:i + 1]) for i in range(len(feats))] + [one.flush()]
    got, start = [], 0
    for size in (1, 2, 7, 8, 9, 17, 17):  # within, at and across the lane count; 61 frames in all
        got.append(many.push_features(feats[start:start + size]))
        start += size
    got.append(many.flush())
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(want))
    np.testing.assert_array_equal(many.running, one.running)
    if kernel.spiking:
        want_spikes, got_spikes = one.take_spikes(), many.take_spikes()
        assert want_spikes.keys() == got_spikes.keys()
        for name, spikes in want_spikes.items():
            assert spikes.shape[0] > 0
            np.testing.assert_array_equal(got_spikes[name], spikes, err_msg=name)
        assert many.spike_rates() == one.spike_rates()
