"""Hearing enrollment clips through the replay clips' channel (lmustream.adapters.channel)."""

import math

import pytest
import torch

from lmustream.adapters.augment import FewShotAugmenter
from lmustream.adapters.channel import ChannelMatcher, long_term_spectrum
from lmustream.adapters.finetune import FinetuneConfig, few_shot_augment
from lmustream.audio.features import FbankConfig
from lmustream.errors import ConfigError

FLOOR = -16.0
M, N = 8, 20


def clips(level: torch.Tensor, n: int = 6, seed: int = 0, audio_frames: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clips whose speech frames have the spectrum ``level [M]`` (+ noise, never below the
    floor), a quiet lead-in, and padding (log energy 0) after ``audio_frames`` frames."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, N, M)
    padding = torch.zeros(n, N, dtype=torch.bool)
    padding[:, audio_frames:] = True
    x[:, :audio_frames] = (level + 0.1 * torch.randn(n, audio_frames, M, generator=g)).clamp(min=FLOOR)
    x[:, :4] = FLOOR + 1.0  # quiet lead-in: not speech, must not count in the spectrum
    return x, padding


def test_long_term_spectrum_is_the_speech_frames_mean():
    level = torch.linspace(-8, -3, M)
    x, padding = clips(level)
    assert torch.allclose(long_term_spectrum(x, padding), level, atol=0.1)


def test_long_term_spectrum_rejects_bad_input():
    with pytest.raises(ValueError, match="log-mel"):
        long_term_spectrum(torch.zeros(2, N), torch.zeros(2, N, dtype=torch.bool))
    with pytest.raises(ValueError, match="no clip"):
        long_term_spectrum(torch.zeros(2, N, M), torch.ones(2, N, dtype=torch.bool))


def pair(enroll_stop: slice = slice(M - 2, M), replay_stop: slice = slice(0, 0)):
    """Loud, flat enrollment clips and quiet, tilted replay clips, each silent in its stop band."""
    enroll_level = torch.full((M,), -3.0)
    enroll_level[enroll_stop] = FLOOR
    replay_level = torch.linspace(-9, -7, M)
    replay_level[replay_stop] = FLOOR
    enroll, enroll_pad = clips(enroll_level, seed=1)
    replay, replay_pad = clips(replay_level, seed=2)
    return enroll, enroll_pad, replay, replay_pad, enroll_level, replay_level


def test_enrollment_clips_take_the_replay_channel():
    enroll, enroll_pad, replay, replay_pad, enroll_level, replay_level = pair()
    matcher = ChannelMatcher(enroll, enroll_pad, replay, replay_pad, FLOOR, prob=1.0)
    assert matcher.enroll_stopband.tolist() == [False] * (M - 2) + [True, True]
    both, pad = torch.cat([enroll, replay]), torch.cat([enroll_pad, replay_pad])
    is_enroll = torch.tensor([True] * len(enroll) + [False] * len(replay))
    moved = matcher(both, pad, is_enroll, torch.Generator().manual_seed(0))
    spectrum = long_term_spectrum(moved[:len(enroll)], enroll_pad)
    assert torch.allclose(spectrum[:-2], replay_level[:-2], atol=0.15)  # the replay level and tilt
    assert torch.allclose(spectrum[-2:], enroll_level[-2:], atol=0.1)  # what the microphone missed stays silent
    assert torch.equal(moved[len(enroll):], replay)  # replay clips untouched
    assert torch.equal(moved[pad], both[pad])  # padding untouched
    assert moved.min() >= FLOOR


def test_a_band_limited_replay_corpus_silences_the_enrollment_clips_band():
    enroll, enroll_pad, replay, replay_pad, *_ = pair(enroll_stop=slice(0, 0), replay_stop=slice(M - 3, M))
    matcher = ChannelMatcher(enroll, enroll_pad, replay, replay_pad, FLOOR, prob=1.0)
    moved = matcher(enroll, enroll_pad, torch.ones(len(enroll), dtype=torch.bool), torch.Generator().manual_seed(0))
    speech = moved[:, 4:12]  # the frames after the quiet lead-in, before the padding
    assert (speech[:, :, -3:] == FLOOR).all()
    assert (speech[:, :, :-3] > FLOOR).all()


def test_probability_zero_changes_nothing_and_bad_probability_is_refused():
    enroll, enroll_pad, replay, replay_pad, *_ = pair()
    matcher = ChannelMatcher(enroll, enroll_pad, replay, replay_pad, FLOOR, prob=0.0)
    is_enroll = torch.ones(len(enroll), dtype=torch.bool)
    assert torch.equal(matcher(enroll, enroll_pad, is_enroll, torch.Generator().manual_seed(0)), enroll)
    with pytest.raises(ValueError, match="probability"):
        ChannelMatcher(enroll, enroll_pad, replay, replay_pad, FLOOR, prob=1.5)


def test_half_the_clips_are_moved_at_probability_one_half():
    enroll, enroll_pad, replay, replay_pad, *_ = pair()
    matcher = ChannelMatcher(enroll, enroll_pad, replay, replay_pad, FLOOR, prob=0.5)
    many = enroll.repeat(50, 1, 1)
    moved = matcher(many, enroll_pad.repeat(50, 1), torch.ones(len(many), dtype=torch.bool),
                    torch.Generator().manual_seed(0))
    changed = (moved != many).flatten(1).any(1).float().mean().item()
    assert 0.4 < changed < 0.6


def test_few_shot_augmenter_applies_the_matcher_to_normalized_features():
    frontend = FbankConfig(n_mels=M)
    floor = math.log(frontend.log_floor)
    enroll, enroll_pad, replay, replay_pad, _, replay_level = pair()
    enroll, replay = enroll.clamp(min=floor), replay.clamp(min=floor)
    enroll[enroll_pad] = 0.0  # padding: log energy 0, as the recipe pads
    replay[replay_pad] = 0.0
    matcher = ChannelMatcher(enroll, enroll_pad, replay, replay_pad, floor, prob=1.0)
    plain = few_shot_augment()
    for name in ("freq_mask", "time_mask", "time_shift", "gain_db", "noise_prob"):
        setattr(plain, name, 0)
    augmenter = FewShotAugmenter(plain, frontend, noise=None, channel=matcher)
    x = (enroll - frontend.mean) / (2 * frontend.std)
    y = torch.zeros(len(x), 2)
    out, _ = augmenter(x, y, torch.Generator().manual_seed(0), is_enroll=torch.ones(len(x), dtype=torch.bool))
    logmel = out * (2 * frontend.std) + frontend.mean
    assert torch.allclose(long_term_spectrum(logmel, enroll_pad)[:-2], replay_level[:-2], atol=0.15)
    same, _ = augmenter(x, y, torch.Generator().manual_seed(0))  # no enrollment mask: no matching
    assert torch.allclose(same, x)


def test_finetune_config_checks_channel_match():
    with pytest.raises(ConfigError, match="channel_match"):
        FinetuneConfig(channel_match=-0.1)
    assert FinetuneConfig(channel_match=0.0).channel_match == 0.0
    assert FinetuneConfig(method="aflora").channel_match == 0.5
    assert FinetuneConfig(method="head").channel_match == 0.0  # a head on fixed features: off by default
    assert FinetuneConfig(method="head", channel_match=0.3).channel_match == 0.3


def test_describe_names_the_level_and_the_band_limit():
    enroll, enroll_pad, replay, replay_pad, *_ = pair()
    matcher = ChannelMatcher(enroll, enroll_pad, replay, replay_pad, FLOOR, prob=0.5)
    centre_hz = torch.linspace(500, 7500, M).numpy()
    line = matcher.describe(centre_hz)
    # enrollment at -3; replay -9 .. -7 (8 bins), mean -8.29 over the 6 pass-band bins: 5.29 nats = 23 dB
    assert "23 dB louder" in line
    assert "enrollment clips silent above 6.5 kHz" in line
    assert "50% of the enrollment clips" in line
