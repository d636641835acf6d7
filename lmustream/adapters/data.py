"""Clip sets for fine-tuning: enrollment, replay and evaluation clips as feature tensors."""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lmustream.audio.features import FbankConfig
from lmustream.data.clips import Clip
from lmustream.errors import ConfigError


@dataclass
class ClipSet:
    """Clips as normalized log-mel ``x [n, frames, n_mels]`` (float32) and their label names."""

    x: torch.Tensor
    names: list[str]  # label of each clip
    clips: list[Clip]  # the source of each clip read from audio (clips made as features have none)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def labels(self) -> list[str]:
        """Distinct labels, in first-seen order."""
        return list(dict.fromkeys(self.names))

    def __add__(self, other: "ClipSet") -> "ClipSet":
        return ClipSet(torch.cat([self.x, other.x]), self.names + other.names, self.clips + other.clips)

    def targets(self, labels: list[str]) -> torch.Tensor:
        """Class index of each clip in ``labels`` (ConfigError naming any label not in it)."""
        index = {label: i for i, label in enumerate(labels)}
        unknown = sorted(set(self.names) - set(index))
        if unknown:
            raise ConfigError(f"clip label(s) {unknown} are not classes of the model ({', '.join(labels)})")
        return torch.tensor([index[n] for n in self.names], dtype=torch.long)


def list_clips(spec, what: str) -> list[Clip]:
    """Every clip of a dataset (labelled folders, CSV manifest, Speech Commands layout), all splits."""
    from lmustream.data.datasets import open_dataset
    from lmustream.data.splits import SplitWarning

    if isinstance(spec, (list, tuple)):
        return list(spec)
    path = Path(spec)
    if not path.exists():
        raise ConfigError(f"{what}: no such folder or file {str(path)!r}")
    with warnings.catch_warnings():
        # Split warnings do not apply (every split is used); unreadable files are still reported.
        warnings.simplefilter("ignore", SplitWarning)
        index = open_dataset(path, validation_fraction=0.0, test_fraction=0.0)
    return index.clips()


def rank_clips(clips: list[Clip], seed: int) -> list[Clip]:
    """A seeded order that depends on the clips alone, not on the platform or on where they are stored.

    The key is sha256 of the seed, the label and the file name (a noise cut: its file's name and
    offset): the same clips copied to another folder rank the same, so a fine-tuning run repeats
    wherever its data lies. Equal keys keep the listing's order.
    """
    def key(clip: Clip) -> str:
        name = Path(clip.path).name if clip.path is not None else f"{Path(clip.noise[0]).name}@{clip.noise[1]}"
        return hashlib.sha256(f"{seed}\0{clip.label}\0{name}".encode()).hexdigest()

    return sorted(clips, key=key)


def load_clip_set(clips: list[Clip], frontend: FbankConfig, frames: int, cache_dir=None,
                  progress: bool = False, desc: str = "features") -> ClipSet:
    """Features of ``clips`` (cached on disk like the trainer's; ``cache_dir=False`` disables)."""
    from lmustream.data.feature_dataset import FeatureDataset

    if not clips:
        raise ConfigError(f"{desc}: no clips")
    labels = list(dict.fromkeys(c.label for c in clips))
    dataset = FeatureDataset(clips, labels, frontend, frames, cache_dir=cache_dir or None, cache=cache_dir is not False)
    x = torch.empty(len(clips), frames, frontend.n_mels)
    indices = range(len(clips))
    if progress:
        from tqdm import tqdm
        indices = tqdm(indices, desc=desc, leave=False)
    for i in indices:
        x[i] = dataset[i][0]
    return ClipSet(x, [c.label for c in clips], list(clips))


def synthetic_noise(frontend: FbankConfig, seconds: float = 20.0, seed: int = 0) -> torch.Tensor:
    """Unnormalized log-mel ``[frames, n_mels]`` of white, pink and brown noise (for augmentation).

    Used when no background recordings are given: coloured noise covers the spectral tilts of
    fans, traffic and room tone well enough to teach robustness to a few enrollment clips.
    """
    from lmustream.audio.features import fbank

    rng = np.random.default_rng(seed)
    n = int(seconds * frontend.sample_rate) // 3
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.arange(len(spectrum)), 1)
    pink = np.fft.irfft(spectrum / np.sqrt(f), n)
    brown = np.cumsum(rng.standard_normal(n))
    brown -= np.convolve(brown, np.ones(1601) / 1601, mode="same")  # no DC drift
    pieces = [p / (np.abs(p).max() + 1e-9) * 0.3 for p in (white, pink, brown)]
    samples = torch.from_numpy(np.concatenate(pieces).astype(np.float32))
    return fbank(samples, frontend)


def silence_clip_set(noise: torch.Tensor, frontend: FbankConfig, frames: int, count: int, seed: int = 0) -> ClipSet:
    """``count`` ``_silence_`` clips cut from unnormalized noise log-mel ``noise [T, n_mels]``.

    As the training recipe makes them: one second of noise at a random gain in [0, 1] (near-digital
    silence included), padded to ``frames`` like every clip. A gain g scales the energies by g^2,
    which in the log-mel domain (no dither) is a shift by 2 log g down to the frontend's floor.
    """
    from lmustream.audio.features import normalize
    from lmustream.data.clips import SILENCE_SECONDS
    from lmustream.data.sources import SILENCE_LABEL
    from lmustream.train.augment import random_windows

    g = torch.Generator().manual_seed(seed)
    n = min(frontend.num_frames(round(SILENCE_SECONDS * frontend.sample_rate)), frames)
    cuts = noise[random_windows(noise.shape[0], count, n, g)]  # (count, n, n_mels)
    log_gain = 2 * torch.rand(count, generator=g).clamp_min(1e-12).log()
    x = torch.zeros(count, frames, noise.shape[1])  # the padding: log energy 0, as the clips' own
    x[:, :n] = torch.clamp_min(cuts + log_gain[:, None, None], math.log(frontend.log_floor))
    return ClipSet(normalize(x, frontend), [SILENCE_LABEL] * count, [])
