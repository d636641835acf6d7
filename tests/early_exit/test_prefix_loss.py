"""Training for early exit: the prefix loss, its config section, and the trainer with it on and off."""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from lmustream.errors import ConfigError
from lmustream.models import LMUFormer, LMUFormerConfig
from lmustream.models.artifact import load_model
from lmustream.train.config import PrefixLossConfig, load_config
from lmustream.train.early_exit_loss import model_outputs, prefix_loss
from lmustream.train.trainer import train


def tiny_model():
    torch.manual_seed(0)
    return LMUFormer(LMUFormerConfig(n_mels=12, n_classes=3, dim=8, memory_size=4, mlp_ratio=1, embed_convs=1))


def bce(z, t):
    return F.binary_cross_entropy_with_logits(z, t)


def ce(z, t):
    return F.cross_entropy(z, t)


def test_off_by_default_and_one_forward_either_way():
    model = tiny_model().train()
    x = torch.randn(5, 20, 12)
    assert PrefixLossConfig().weight == 0
    torch.manual_seed(1)
    logits, prefixes = model_outputs(model, x, PrefixLossConfig())
    torch.manual_seed(1)
    assert prefixes is None and torch.equal(logits, model(x))  # exactly the usual mean-mode forward
    logits, prefixes = model_outputs(model, x, PrefixLossConfig(weight=0.5))
    assert prefixes.shape == (20, 5, 3)
    assert torch.allclose(logits, model(x), atol=1e-5)  # the last prefix is the whole clip


@pytest.mark.parametrize("loss_fn", [bce, ce])
def test_all_mode_averages_every_prefix_from_min_frames(loss_fn):
    prefixes = torch.randn(10, 4, 3)
    target = torch.softmax(torch.randn(4, 3), -1)  # soft (mixup) targets
    got = prefix_loss(prefixes, target, loss_fn, PrefixLossConfig(weight=0.3, mode="all", min_frames=4))
    want = 0.3 * torch.stack([loss_fn(prefixes[t], target) for t in range(3, 10)]).mean()
    assert torch.allclose(got, want)


def test_random_mode_draws_one_prefix_per_clip_from_the_generator():
    prefixes = torch.randn(10, 6, 3)
    target = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).float()
    cfg = PrefixLossConfig(weight=2.0, mode="random", min_frames=5)
    got = prefix_loss(prefixes, target, bce, cfg, torch.Generator().manual_seed(9))
    t = torch.randint(4, 10, (6,), generator=torch.Generator().manual_seed(9))
    want = 2.0 * bce(prefixes[t, torch.arange(6)], target)
    assert torch.allclose(got, want)
    last_only = prefix_loss(prefixes, target, bce, PrefixLossConfig(1.0, "random", 10), torch.Generator())
    assert torch.allclose(last_only, bce(prefixes[-1], target))


def test_gradient_reaches_the_early_prefixes():
    model = tiny_model().eval()  # batch norms on running statistics: frames only mix through time
    x = torch.randn(4, 16, 12, requires_grad=True)
    target = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    _, prefixes = model_outputs(model, x, PrefixLossConfig(weight=1.0))
    # only the prefix of the first 3 frames in the loss: the input gradient beyond the embedding's
    # reach (frame 3 + look-ahead) must vanish, and before it must not
    cut = prefixes[:3]
    prefix_loss(cut, target, bce, PrefixLossConfig(weight=1.0, mode="all")).backward()
    reach = 3 + model.config.lookahead
    per_frame = x.grad.abs().sum(dim=(0, 2))
    assert per_frame[:3].min() > 1e-3 and per_frame[reach:].max() < 1e-12  # (FFT rounding only)


def test_config_section_is_checked():
    assert load_config(None, ["prefix_loss.weight=0.5", "prefix_loss.mode=random"]).prefix_loss.mode == "random"
    for bad, match in (("prefix_loss.weight=-1", "weight"), ("prefix_loss.mode=some", "mode"),
                       ("prefix_loss.min_frames=0", "min_frames"), ("prefix_loss.min_frames=500", "min_frames"),
                       ("prefix_loss.typo=1", "unknown key")):
        with pytest.raises(ConfigError, match=match):
            load_config(None, [bad])


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Three tone 'words' x 4 speakers x 8 takes, FSDD-style names; 0.3 s each (29 of 40 frames)."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    t = np.arange(4800) / 16000
    for li, label in enumerate(("low", "mid", "high")):
        for s in range(4):
            for k in range(8):
                f0 = (300, 800, 2000)[li] * (1 + 0.05 * s)
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) * np.hanning(t.size) + 0.01 * rng.standard_normal(t.size)
                sf.write(root / f"{label}_spk{s}_{k}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
    return root


def run_overrides(data, out, cache, *extra):
    return ["model=lmuformer-tiny", "model_overrides.dim=16", "model_overrides.memory_size=8",
            "model_overrides.embed_convs=1", "model_overrides.mlp_ratio=1", f"data.path={data}", "data.kind=pattern",
            "data.pattern={label}_{speaker}_{index}.wav", "data.frames=40", "data.validation_speakers=1",
            "data.test_speakers=1", f"data.cache_dir={cache}", f"out={out}", "batch_size=16", "epochs=2",
            "augment.noise_prob=0", "optim.lr=0.01", "device=cpu", "checkpoint_every=0", *extra]


def test_trainer_with_prefix_loss(tones, tmp_path):
    cache = tmp_path / "cache"
    runs = {}
    for name, extra in (("plain", []), ("prefix", ["prefix_loss.weight=1.0", "prefix_loss.mode=all"]),
                        ("random", ["prefix_loss.weight=1.0", "prefix_loss.mode=random"])):
        path = train(load_config(None, run_overrides(tones, tmp_path / name, cache, *extra)), progress=False)
        runs[name] = load_model(path)
        rows = list(csv.DictReader(open(tmp_path / name / "metrics.csv")))
        assert len(rows) == 2 and all(np.isfinite(float(r["train_loss"])) for r in rows)
    assert runs["prefix"].extra["recipe"]["prefix_loss"] == {"weight": 1.0, "mode": "all", "min_frames": 1}
    assert runs["plain"].extra["recipe"]["prefix_loss"]["weight"] == 0.0
    plain, prefix, rand = (runs[k].model.head.weight for k in ("plain", "prefix", "random"))
    assert not torch.allclose(plain, prefix) and not torch.allclose(prefix, rand)  # the loss changed training
