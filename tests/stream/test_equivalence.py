"""The step form equals the parallel model, frame by frame, over long streams.

Worked example of the look-ahead (paper model, D = 5): frames x0, x1, ... are pushed one per
step. Steps 0..4 return valid = False (the embedding still waits for frames up to t + 5);
step 5 returns the output for frame 0, step t the output for frame t - 5. At the end of an
utterance of N frames, flush() feeds 5 padding steps that complete frames N-5 .. N-1 with the
same zero padding the parallel model applies, so the N outputs equal its all_seq output.
"""

import pytest
import torch

from lmustream.models import LMUFormer, LMUFormerConfig, get_config
from lmustream.selftest import randomize_batchnorm
from lmustream.stream.step import StepLMUFormer
from lmustream.stream.verify import compare_stream, compare_utterances

TINY = dict(dim=32, memory_size=16, mlp_ratio=2, embed_convs=2, n_classes=5, n_mels=20)
F32_TOL = 1e-4
F32_MAX_FLIP_RATE = 1e-5


def tiny(spiking=False, causal=False, dtype=torch.float32):
    torch.manual_seed(0)
    return randomize_batchnorm(LMUFormer(LMUFormerConfig(spiking=spiking, causal=causal, **TINY)), 3).eval().to(dtype)


def paper(spiking, dtype=torch.float32):
    torch.manual_seed(0)
    model = LMUFormer(get_config("slmuformer" if spiking else "lmuformer"))
    return randomize_batchnorm(model, 5).eval().to(dtype)


@pytest.mark.parametrize("spiking", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_tiny_models_all_variants(spiking, causal, dtype, tol):
    model = tiny(spiking, causal, dtype)
    step = StepLMUFormer(model)
    x = 2 * torch.randn(2, 300, 20, dtype=dtype)
    r = compare_stream(model, step, x)
    assert r.max_abs_running <= tol and r.max_abs_per_frame <= tol, r
    if spiking:
        assert r.spikes_compared == 2 * 300 * (32 * 2 + 32 + 1 + 16 + 32 + 32 + 64 + 32)
        assert r.spike_flips == 0 if dtype == torch.float64 else r.flip_rate <= F32_MAX_FLIP_RATE
    u = compare_utterances(model, step, 2 * torch.randn(6, 40, 20, dtype=dtype))
    assert u.max_abs_running <= tol and u.max_abs_per_frame <= tol, u


def test_lookahead_schedule_of_the_paper_model():
    step = StepLMUFormer(paper(False))
    assert step.lookahead == 5
    state = step.initial_state(1)
    valid = []
    for _ in range(8):
        out, state = step.step(torch.randn(1, 128), state)
        valid.append(bool(out.valid))
    assert valid == [False] * 5 + [True] * 3
    running, per_frame, state = step.flush(state)
    assert running.shape == (1, 5, 35)  # the 5 frames the look-ahead still held


@pytest.mark.parametrize("spiking", [False, True])
def test_paper_model_10000_frames_float32(spiking):
    """10,000 consecutive frames as one continuous stream (no reset), and as 80 utterances of 125
    frames with flush + reset between them."""
    model = paper(spiking)
    step = StepLMUFormer(model)
    g = torch.Generator().manual_seed(1)
    r = compare_stream(model, step, torch.randn(1, 10_000, 128, generator=g))
    u = compare_utterances(model, step, torch.randn(80, 125, 128, generator=g))
    assert u.frames == 10_000
    for result in (r, u):
        if spiking:  # a rare flip near threshold is float32 rounding; its effect on a logit is not
            assert result.spikes_compared > 10_000 * 1000 and result.flip_rate <= F32_MAX_FLIP_RATE, result
        else:
            assert result.max_abs_running <= F32_TOL and result.max_abs_per_frame <= F32_TOL, result


def test_spiking_paper_model_float64_spikes_identical():
    model = paper(True, torch.float64)
    step = StepLMUFormer(model)
    x = torch.randn(1, 10_000, 128, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    r = compare_stream(model, step, x)
    assert r.spike_flips == 0 and r.spikes_compared > 10_000 * 1000, r
    assert r.max_abs_running <= 1e-9, r


def test_streams_in_different_phases_and_partial_reset():
    """Two streams in one batch, the second started 7 frames later and reset mid-way, each
    equal to running it alone."""
    model = tiny()
    step = StepLMUFormer(model)
    a, b = torch.randn(1, 30, 20), torch.randn(1, 30, 20)
    state = step.initial_state(2)
    outs = {0: [], 1: []}
    for t in range(37):
        frame = torch.stack([a[0, t] if t < 30 else torch.zeros(20), b[0, t - 7] if t >= 7 else torch.zeros(20)])
        pad = torch.tensor([t >= 30, t < 7])
        if t == 7:  # stream 1 starts now: wipe what the zero frames did
            state = step.reset(state, torch.tensor([False, True]))
            pad = torch.tensor([False, False])
        out, state = step.step(frame, state, pad)
        for i in (0, 1):
            if out.valid[i]:
                outs[i].append(out.running[i])
    alone_a, _, _ = step.run(a, flush=True)
    alone_b, _, _ = step.run(b)
    torch.testing.assert_close(torch.stack(outs[0]), alone_a[0])
    torch.testing.assert_close(torch.stack(outs[1])[: alone_b.shape[1]], alone_b[0])


def test_chunked_step_equals_single_steps():
    model = tiny()
    step = StepLMUFormer(model)
    x = torch.randn(2, 23, 20)
    out_chunks, state = [], step.initial_state(2)
    for start in range(0, 23, 4):
        out, state = step.step(x[:, start:start + 4], state)
        out_chunks.append(out)
    single, state1 = [], step.initial_state(2)
    for t in range(23):
        out, state1 = step.step(x[:, t], state1)
        single.append(out.running)
    assert torch.equal(torch.cat([o.running for o in out_chunks], 1), torch.stack(single, 1))
    assert torch.cat([o.valid for o in out_chunks], 1).shape == (2, 23)


def test_batch_norms_are_folded():
    step = StepLMUFormer(tiny())
    names = dict(step.named_buffers())
    assert "block0_proj_W" in names and "block0_fc1_W" in names
    assert not any("running_mean" in n for n in names)


def test_bad_frames():
    step = StepLMUFormer(tiny())
    with pytest.raises(ValueError, match=r"\[batch, 20\]"):
        step.step(torch.randn(20), step.initial_state(1))
    with pytest.raises(ValueError, match="initial_state\\(3\\)"):
        step.step(torch.randn(3, 20), step.initial_state(1))
    with pytest.raises(ValueError, match="run"):
        step.run(torch.randn(3, 20))
