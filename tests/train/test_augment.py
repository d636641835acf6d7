"""Feature-domain augmentations: each switch does what it says, and randomness is reproducible."""

import math

import pytest
import torch

from lmustream.audio.features import FbankConfig
from lmustream.train.augment import FeatureAugmenter
from lmustream.errors import ConfigError
from lmustream.train.config import AugmentConfig, load_config

OFF = dict(mixup_rate=0.0, freq_mask=0, time_mask=0, time_shift=0, noise_prob=0.0, gain_db=0.0, feature_noise=0.0)


def batch(B=8, N=40, M=128):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, N, M, generator=g) * 0.5
    y = torch.nn.functional.one_hot(torch.arange(B) % 4, 4).float()
    return x, y


def run(cfg, noise=None, seed=1):
    x, y = batch()
    aug = FeatureAugmenter(AugmentConfig(**{**OFF, **cfg}), FbankConfig(), noise)
    return x, y, *aug(x.clone(), y.clone(), torch.Generator().manual_seed(seed))


def test_all_off_is_identity():
    x, y, xa, ya = run({})
    torch.testing.assert_close(xa, x)
    assert torch.equal(ya, y)
    x, y, xa, ya = run({"enabled": False, "mixup_rate": 1.0, "freq_mask": 48})
    assert torch.equal(xa, x) and torch.equal(ya, y)


def test_same_generator_same_result():
    cfg = dict(mixup_rate=0.6, freq_mask=48, time_mask=20, time_shift=10, gain_db=6.0)
    a, b = run(cfg, seed=3), run(cfg, seed=3)
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
    assert not torch.equal(a[2], run(cfg, seed=4)[2])


def test_masks_zero_whole_bands_and_spans():
    _, _, xa, _ = run({"freq_mask": 48})
    zero_cols = (xa == 0).all(dim=1)  # (B, M): mel bins zeroed over all frames
    assert (zero_cols.sum(1) <= 48).all() and zero_cols.any()
    _, _, xa, _ = run({"time_mask": 20})
    zero_rows = (xa == 0).all(dim=2)
    assert (zero_rows.sum(1) <= 20).all() and zero_rows.any()


def test_time_shift_is_a_roll():
    x, _, xa, _ = run({"time_shift": 10})
    for b in range(x.shape[0]):
        assert any(torch.allclose(torch.roll(x[b], s, 0), xa[b], atol=1e-5) for s in range(-10, 11))


def test_gain_shifts_log_energy_uniformly():
    x, _, xa, _ = run({"gain_db": 6.0})
    shift = (xa - x) * 2 * FbankConfig().std  # back to natural-log energy units
    per_clip = shift.flatten(1)
    assert torch.allclose(per_clip, per_clip[:, :1].expand_as(per_clip), atol=1e-5)
    assert per_clip.abs().max() <= 6.0 * math.log(10) / 10 + 1e-5


def test_mixup_soft_labels_sum_to_one():
    _, y, _, ya = run({"mixup_rate": 1.0})
    torch.testing.assert_close(ya.sum(1), torch.ones(len(y)))
    assert ((ya > 0) & (ya < 1)).any()


def test_noise_at_snr():
    """Mixing noise of the same energy at 0 dB SNR doubles the mean energy (+ln 2 in log units)."""
    x, _ = batch()
    std, mean = FbankConfig().std, FbankConfig().mean
    logmel = x * 2 * std + mean
    noise = logmel[0].clone()  # [N, M]: a 'recording' equal to clip 0
    aug = FeatureAugmenter(AugmentConfig(**{**OFF, "noise_prob": 1.0, "snr_db": (0.0, 0.0)}), FbankConfig(), noise)
    xa, _ = aug(x[:1].clone(), torch.ones(1, 4), torch.Generator().manual_seed(0))
    ea = torch.exp(xa * 2 * std + mean).mean()
    e0 = torch.exp(logmel[:1]).mean()
    assert ea / e0 == pytest.approx(2.0, rel=1e-3)


def test_noise_snr_is_measured_over_the_clip_not_its_padding():
    """A short clip padded to the model's length (log-mel 0 frames, as the dataset pads) gets its noise at
    the SNR asked for over its own frames: the padding's energy 1 per bin must not set the noise level."""
    fe = FbankConfig()
    g = torch.Generator().manual_seed(0)
    logmel = torch.randn(4, 40, 128, generator=g) - 4.0  # speech-like energies, far below 1 per bin
    logmel[:, 30:] = 0.0  # 10 frames of padding
    x = ((logmel - fe.mean) / (2 * fe.std)).half().float()  # stored in float16, as the trainer holds it
    noise = torch.randn(200, 128, generator=g) - 3.0
    aug = FeatureAugmenter(AugmentConfig(**{**OFF, "noise_prob": 1.0, "snr_db": (10.0, 10.0)}), fe, noise)
    xa, _ = aug(x.clone(), torch.ones(4, 4), torch.Generator().manual_seed(1))
    clean = torch.exp(x * 2 * fe.std + fe.mean)[:, :30].double()
    mixed = torch.exp(xa * 2 * fe.std + fe.mean)[:, :30].double()
    snr_db = 10 * torch.log10(clean.mean((1, 2)) / (mixed - clean).mean((1, 2)))
    torch.testing.assert_close(snr_db, torch.full_like(snr_db, 10.0), atol=0.05, rtol=0)


def test_snr_reference_input_keeps_the_shipped_recipes_noise_level():
    """``snr_reference: input`` (the shipped configs) measures the SNR over the whole padded input, bit for bit
    as those models trained; ``clip`` (the default) sets louder speech against the same noise."""
    fe = FbankConfig()
    g = torch.Generator().manual_seed(0)
    logmel = torch.randn(4, 40, 128, generator=g) - 4.0
    logmel[:, 30:] = 0.0
    x = (logmel - fe.mean) / (2 * fe.std)
    noise = torch.randn(200, 128, generator=g) - 3.0
    settings = {**OFF, "noise_prob": 1.0, "snr_db": (10.0, 10.0)}
    out = {ref: FeatureAugmenter(AugmentConfig(**settings, snr_reference=ref), fe, noise)(
        x.clone(), torch.ones(4, 4), torch.Generator().manual_seed(1))[0] for ref in ("input", "clip")}
    # the formula the shipped models trained with: mean energies over all frames of clip and noise segment
    from lmustream.train.augment import random_windows
    gen = torch.Generator().manual_seed(1)
    segment = noise[random_windows(200, 4, 40, gen)]
    snr = torch.rand(4, generator=gen) * 0.0 + 10.0
    lx = torch.logsumexp(logmel.flatten(1), 1) - math.log(40 * 128)
    ln = torch.logsumexp(segment.flatten(1), 1) - math.log(40 * 128)
    expected = torch.logaddexp(logmel, segment + (lx - ln - snr * math.log(10) / 10)[:, None, None])
    torch.testing.assert_close(out["input"] * 2 * fe.std + fe.mean, expected, atol=1e-4, rtol=0)
    speech = slice(0, 30)
    louder = (out["input"][:, speech] - x[:, speech]).abs().mean() > (out["clip"][:, speech] - x[:, speech]).abs().mean()
    assert louder  # the padding made the "input" noise louder against the speech
    with pytest.raises(ConfigError, match="augment.snr_reference must be one of clip, input"):
        load_config(None, ["augment.snr_reference=speech"])


def _warped(x, alpha, beta):
    aug = FeatureAugmenter(AugmentConfig(**{**OFF, "freq_warp": 0.2, "time_stretch": 0.2}), FbankConfig())
    # pin the drawn factors: the warp reads them from the generator through _uniform
    import lmustream.train.augment as augment_module

    draws = iter([torch.full((x.shape[0],), math.log(alpha)), torch.full((x.shape[0],), beta)])
    original = augment_module._uniform
    augment_module._uniform = lambda *a, **k: next(draws)
    try:
        return aug._warp(x, torch.Generator().manual_seed(0))
    finally:
        augment_module._uniform = original


def test_unit_warp_is_identity():
    x, _ = batch()
    torch.testing.assert_close(_warped(x, 1.0, 1.0), x, atol=1e-5, rtol=0)


def test_frequency_warp_moves_formants_by_alpha_in_hz():
    """A peak at mel bin 40 moves to the bin whose centre is alpha times its frequency."""
    x = torch.zeros(1, 20, 128)
    x[..., 40] = 1.0
    for alpha in (0.85, 1.15):
        out = _warped(x, alpha, 1.0)
        peak = int(out[0, 10].argmax())
        fe = FbankConfig()
        aug = FeatureAugmenter(AugmentConfig(), fe)
        # the bin the peak lands on reads (approximately) bin 40 of the input
        assert abs(float(aug._source_mel_index(torch.tensor([alpha]))[0, peak]) - 40) < 1.0
        assert (peak > 40) == (alpha > 1)


def test_time_stretch_keeps_centre_and_scales_distances():
    x = torch.zeros(1, 41, 128)
    x[0, 30] = 1.0  # 10 frames right of the centre (20)
    out = _warped(x, 1.0, 1.2)
    assert int(out[0, :, 0].argmax()) == 32  # 10 * 1.2 frames from the centre
    torch.testing.assert_close(out[0, 20], x[0, 20])


def test_warp_bounds_checked():
    from lmustream.errors import ConfigError
    from lmustream.train.config import load_config

    with pytest.raises(ConfigError, match="freq_warp"):
        load_config(None, ["augment.freq_warp=0.7"])


def test_lowpass_floors_only_bins_above_the_cutoff():
    x, y = batch()
    cfg = {**OFF, "lowpass_prob": 1.0, "lowpass_hz": (4000.0, 4000.0)}
    fe = FbankConfig()
    out, _ = FeatureAugmenter(AugmentConfig(**cfg), fe)(x.clone(), y, torch.Generator().manual_seed(0))
    floor = (math.log(fe.log_floor) - fe.mean) / (2 * fe.std)
    centre_mel = [1127 * math.log1p(fe.low_freq / 700) + (j + 1) * (1127 * math.log1p(fe.upper_freq / 700)
                  - 1127 * math.log1p(fe.low_freq / 700)) / (fe.n_mels + 1) for j in range(fe.n_mels)]
    above = [700 * math.expm1(m / 1127) > 4000 for m in centre_mel]
    j = above.index(True)
    assert torch.allclose(out[..., j:], torch.full_like(out[..., j:], floor), atol=1e-5)
    torch.testing.assert_close(out[..., :j], x[..., :j], atol=1e-5, rtol=0)


def test_channel_eq_is_one_smooth_bounded_curve_per_clip():
    x, y, xa, ya = run({"channel_eq_db": 6.0})
    fe = FbankConfig()
    curve_db = (xa - x) * (2 * fe.std) * (10 / math.log(10))  # back to dB of energy, [B, N, M]
    # the same response at every frame of a clip, and a different one for each clip
    torch.testing.assert_close(curve_db, curve_db[:, :1].expand_as(curve_db), atol=1e-3, rtol=0)
    per_clip = curve_db[:, 0]  # [B, M]
    assert per_clip.abs().max() <= 12.0 + 1e-3  # tilt and bump, each within +- 6 dB
    assert per_clip.abs().max() > 1.0 and not torch.allclose(per_clip[0], per_clip[1])
    assert (per_clip[:, 1:] - per_clip[:, :-1]).abs().max() < 1.0  # smooth across neighbouring mel bins
    assert torch.equal(ya, y)


def test_channel_eq_bounds_checked():
    from lmustream.errors import ConfigError
    from lmustream.train.config import load_config

    with pytest.raises(ConfigError, match="channel_eq_db"):
        load_config(None, ["augment.channel_eq_db=-1"])
