"""Models, audio and step-form references for the kernel tests."""

from __future__ import annotations

import numpy as np
import torch

from lmustream.audio.features import FbankConfig, StreamingFbank
from lmustream.models import LMUFormer, LMUFormerConfig
from lmustream.models.artifact import ModelArtifact, save_model
from lmustream.selftest import randomize_batchnorm
from lmustream.stream.step import StepLMUFormer

N_MELS = 20  # small models keep the step-form references fast; the kernel takes any size
SMALL = dict(dim=32, memory_size=16, mlp_ratio=2, embed_convs=2, n_classes=5, n_mels=N_MELS)


def make_model(spiking: bool = False, seed: int = 0, lively: bool = True, **overrides) -> LMUFormer:
    """A random-weight LMUFormer with non-trivial batch norms. ``lively`` spiking models get batch
    norms that make every LIF layer fire at 5-40 % (random init alone leaves most layers silent,
    which would hide spike mismatches)."""
    torch.manual_seed(seed)
    model = randomize_batchnorm(LMUFormer(LMUFormerConfig(spiking=spiking, **{**SMALL, **overrides})), seed).eval()
    if spiking and lively:
        g = torch.Generator().manual_seed(seed + 1)
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.data.copy_(1.5 + 2 * torch.rand(m.num_features, generator=g))
                m.bias.data.copy_(0.4 + 0.5 * torch.randn(m.num_features, generator=g))
                if name.endswith("bn_u"):  # the single neuron driving the memory: make it fire too
                    m.bias.data.fill_(0.8)
    return model


def save(model: LMUFormer, path, labels=None) -> str:
    c = model.config
    labels = labels or [f"class{i}" for i in range(c.n_classes)]
    save_model(path, ModelArtifact(model, labels, FbankConfig(n_mels=c.n_mels)))
    return str(path)


def audio(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding tone in noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f = 200 + 150 * seed + 300 * np.sin(0.7 * t)
    x = 0.3 * np.sin(2 * np.pi * f * t) * (0.6 + 0.4 * np.sin(3 * t)) + 0.03 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def features(model: LMUFormer, wave: np.ndarray) -> np.ndarray:
    return StreamingFbank(FbankConfig(n_mels=model.config.n_mels), normalized=True).push(wave)


def reference(model: LMUFormer, feats: np.ndarray, dtype=torch.float32, spikes: bool = False):
    """The step form over one utterance (then flush): per-frame logits [n, K], the final running
    logits [K], and (spikes=True) each LIF layer's spikes [n, size] aligned like the kernel's."""
    step = StepLMUFormer(model.to(dtype))
    x = torch.from_numpy(feats).to(dtype)[None]
    log = None
    if spikes:
        with step.record_spikes() as log:
            running, per_frame, _ = step.run(x, flush=True)
        log = {name: _aligned(step, name, steps, len(feats)) for name, steps in log.items()}
    else:
        running, per_frame, _ = step.run(x, flush=True)
    model.to(torch.float32)
    return per_frame[0].double().numpy(), running[0, -1].double().numpy(), log


def _aligned(step: StepLMUFormer, name: str, steps, n: int) -> np.ndarray:
    from lmustream.stream.verify import _step_lif_delay

    d = _step_lif_delay(step, name)
    return torch.stack(steps[d:d + n], 0)[:, 0].numpy().astype(np.uint8)


def push_in_chunks(stream, wave: np.ndarray, rng: np.random.Generator, low: int = 1, high: int = 16000):
    """Push ``wave`` in random chunk sizes in [low, high]; returns the concatenated logits."""
    parts, i = [], 0
    while i < wave.size:
        n = int(rng.integers(low, high + 1))
        parts.append(stream.push(wave[i:i + n]))
        i += n
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
