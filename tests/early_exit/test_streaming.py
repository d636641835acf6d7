"""The early-exit figures are what the step form outputs: equality of the parallel running-mean
outputs with the step form, and of the vectorized sweep's decisions with the Recognizer's,
which runs the step form frame by frame and asks the same policy after every output."""

import numpy as np
import pytest
import torch

from lmustream.audio.features import FbankConfig
from lmustream.errors import AudioError, ConfigError
from lmustream.models import LMUFormer, LMUFormerConfig
from lmustream.models.artifact import ModelArtifact
from lmustream.selftest import randomize_batchnorm
from lmustream.stream.early_exit import (MarginThreshold, NeverExit, PosteriorThreshold, Recognizer, StableArgmax,
                                         StableThreshold, audio_frames, decide, padding_row, prefix_outputs,
                                         step_check)

N_MELS, FRAMES, CLASSES = 16, 24, 4
LABELS = ["a", "b", "c", "d"]


def tiny_artifact(spiking=False, causal=False, dtype=torch.float64):
    torch.manual_seed(3)
    config = LMUFormerConfig(n_mels=N_MELS, n_classes=CLASSES, dim=16, memory_size=8, mlp_ratio=2, embed_convs=2,
                             spiking=spiking, causal=causal, frames=FRAMES)
    model = randomize_batchnorm(LMUFormer(config), 1).eval().to(dtype)
    return ModelArtifact(model, LABELS, FbankConfig(n_mels=N_MELS))


def clips(n, audio_lengths, seed=0):
    """n clips of random frames, each padded at the end (like the data pipeline) after its audio frames."""
    g = torch.Generator().manual_seed(seed)
    pad = padding_row(FbankConfig(n_mels=N_MELS))
    x = torch.full((n, FRAMES, N_MELS), pad, dtype=torch.float64)
    for i, length in enumerate(audio_lengths):
        x[i, :length] = 1.5 * torch.randn(length, N_MELS, generator=g, dtype=torch.float64)
    return x


@pytest.mark.parametrize("spiking,causal", [(False, False), (True, False), (False, True)])
def test_parallel_running_outputs_equal_the_step_form(spiking, causal):
    art = tiny_artifact(spiking, causal)
    report = step_check(art.model, clips(3, [24, 15, 9]))
    assert report["frames"] == FRAMES and report["clips"] == 3
    assert report["max_abs_logit_difference"] < 1e-10 and report["argmax_agreement"] == 1.0


def test_step_check_catches_a_different_model():
    art, other = tiny_artifact(), tiny_artifact()
    with torch.no_grad():
        other.model.head.bias += 0.5 * torch.arange(CLASSES, dtype=torch.float64)
    from lmustream.stream import early_exit
    x = clips(2, [20, 20])
    ok = early_exit.step_check(art.model, x)["max_abs_logit_difference"]
    # step form of one model against the parallel outputs of the other: the check must see it
    from lmustream.stream.step import StepLMUFormer
    running, _, _ = StepLMUFormer(art.model).run(x, flush=True)
    wrong = (running - other.model(x, mode="all_seq").transpose(0, 1)).abs().max()
    assert ok < 1e-10 and wrong > 0.1


def test_audio_frames_found_before_the_padding():
    x = clips(3, [24, 15, 1])
    assert audio_frames(x, padding_row(FbankConfig(n_mels=N_MELS))).tolist() == [24, 15, 1]


POLICIES = [PosteriorThreshold(0.4), PosteriorThreshold(0.6), MarginThreshold(0.2), StableArgmax(3),
            StableArgmax(6), StableThreshold(3, 0.45), NeverExit()]


@pytest.mark.parametrize("causal", [False, True])
def test_recognizer_decides_where_the_sweep_says(causal):
    art = tiny_artifact(causal=causal)
    lengths = [24, 20, 14, 9, 17, 24]
    x = clips(len(lengths), lengths, seed=7)
    outputs = prefix_outputs(art.model, [(x, torch.zeros(len(lengths), dtype=torch.long))], frontend=art.frontend)
    D = art.model.config.lookahead
    assert outputs.lookahead == D and outputs.audio_frames.tolist() == lengths
    fired_early = 0
    for policy in POLICIES:
        swept = decide(policy, outputs.stats, FRAMES, D)
        rec = Recognizer(art, policy)
        for i, length in enumerate(lengths):
            rec.start()
            decision = None
            for frame in x[i, :length].numpy():  # the audio, one frame per push
                decision = rec.push_frames(frame)
                if decision:
                    break
            decision = decision or rec.finish()  # release: padded like the data, flushed
            got = (decision.output_frame, decision.frame, decision.index)
            assert got == (int(swept.output[i]), int(swept.consumed[i]), int(swept.label[i])), (policy, i)
            assert decision.early == (decision.frame < FRAMES) and decision.label == LABELS[decision.index]
            assert decision.posteriors.shape == (CLASSES,) and abs(decision.posteriors.sum() - 1) < 1e-9
            fired_early += decision.early
    assert fired_early >= 5  # the comparison covered early decisions, not only full-length ones


def test_recognizer_on_audio_equals_the_frame_path():
    art = tiny_artifact()
    art.model.float()
    art = ModelArtifact(art.model, LABELS, FbankConfig(n_mels=N_MELS))
    wave = (0.1 * np.random.default_rng(0).standard_normal(16000 * 3 // 10)).astype(np.float32)
    rec = Recognizer(art, StableArgmax(2))
    from lmustream.audio.features import StreamingFbank
    frames = StreamingFbank(art.frontend, normalized=True).push(wave)
    rec.start()
    by_frames = rec.push_frames(frames) or rec.finish()
    rec.start()
    by_audio = None
    for i in range(0, wave.size, 777):
        by_audio = rec.push_audio(wave[i:i + 777])
        if by_audio is not None:
            break
    by_audio = by_audio or rec.finish()
    assert (by_audio.frame, by_audio.index, by_audio.output_frame) == \
        (by_frames.frame, by_frames.index, by_frames.output_frame)
    assert rec.recognize(wave).frame == by_frames.frame
    assert rec.finish() is rec.decision  # the release after a decision returns it
    # more audio after a decision is a new utterance: said, not dropped in silence
    with pytest.raises(AudioError, match=r"already decided.*call start\(\)"):
        rec.push_audio(wave)
    with pytest.raises(AudioError, match=r"already decided"):
        rec.push_frames(frames)
    rec.start()
    assert (rec.push_audio(wave) or rec.finish()).frame == by_frames.frame


def test_recognizer_rejects_bad_input():
    art = tiny_artifact()
    rec = Recognizer(art, StableArgmax(2))
    with pytest.raises(AudioError, match="before any frame"):
        rec.finish()
    with pytest.raises(AudioError, match="before any frame.*400 samples"):
        rec.recognize(np.zeros(399, np.float32))
    with pytest.raises(AudioError, match=f"\\[frames, {N_MELS}\\]"):
        rec.push_frames(np.zeros((3, N_MELS + 1)))
    with pytest.raises(AudioError, match="NaN"):
        rec.push_frames(np.full((1, N_MELS), np.nan))
    bad = np.zeros((3, N_MELS))
    bad[2, 5] = np.inf
    with pytest.raises(AudioError, match="non-finite .* at frame 2"):
        rec.push_frames(bad)
    with pytest.raises(AudioError, match="must be real numbers, got dtype object"):
        rec.push_frames(np.full((1, N_MELS), None, dtype=object))
    for dtype in (np.complex64, bool):  # complex would lose its imaginary part silently
        with pytest.raises(AudioError, match="must be real numbers"):
            rec.push_frames(np.zeros((1, N_MELS), dtype))
    assert rec.consumed == 0  # refused before any step
    with pytest.raises(ConfigError, match="ExitPolicy"):
        Recognizer(art, "threshold")
