"""Clips -> fixed-size normalized log-mel features and label indices, cached on disk.

Features follow the LMUFormer / AST recipe: load at the frontend's rate (16 kHz,
resampled with soxr), subtract the waveform mean, Kaldi fbank (1 s -> 98 frames), then
zero-pad at the end or crop to ``frames`` (128) frames *in the unnormalized log-mel
domain*, and only then normalize ``(x - mean) / (2 std)``. Padded frames therefore read
``(0 - mean) / (2 std)`` (about +0.615 with the default statistics), not 0: this is what
AST's loader does, and models trained with the recipe expect it.

Bad files: :func:`lmustream.data.open_dataset` drops unreadable files before training. A
file that still fails here (changed or damaged since the scan) does not stop the epoch:
the failure is warned about and recorded in ``skipped``, and the item is served by the
next loadable clip of the same label (cycling in clip order): deterministic, and the
returned label stays correct.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from lmustream.audio import features as frontend
from lmustream.audio.io import load_audio, resample, validate_samples
from lmustream.data.cache import FeatureCache, default_cache_dir
from lmustream.data.clips import DEFAULT_FRAMES, SILENCE_SECONDS, Clip, SkippedFileWarning
from lmustream.errors import AudioError, ConfigError


def load_clip(clip: Clip, sample_rate: int) -> np.ndarray:
    """``clip``'s samples as float32 mono at ``sample_rate``; a silence clip is its scaled noise segment.

    Raises AudioError for an unreadable file or a noise file too short for the segment.
    """
    if clip.noise is None:
        return load_audio(clip.path, sample_rate)
    path, offset = clip.noise
    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            length = round(SILENCE_SECONDS * rate)
            f.seek(offset)
            data = f.read(length, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, TypeError, OSError) as e:
        raise AudioError(f"{str(path)!r}: cannot read noise segment at {offset} ({e})") from e
    if data.shape[0] < length:
        raise AudioError(f"{str(path)!r}: noise segment at {offset} needs {length} frames, only "
                         f"{data.shape[0]} present (file changed since the dataset was opened?)")
    mono = validate_samples(data.mean(axis=1), f"{str(path)!r} noise segment at {offset}")
    samples = mono if rate == sample_rate else resample(mono, rate, sample_rate)
    return (samples * np.float32(clip.gain)).astype(np.float32)


def pad_or_crop(features: np.ndarray, frames: int) -> np.ndarray:
    """``features [n, n_mels]`` cut to the first ``frames`` rows, or zero-padded at the end to that many."""
    n = features.shape[0]
    if n >= frames:
        return features[:frames]
    return np.concatenate([features, np.zeros((frames - n, features.shape[1]), features.dtype)])


def clip_features(clip: Clip, config: frontend.FbankConfig, frames: int = DEFAULT_FRAMES) -> np.ndarray:
    """Normalized log-mel ``float32 [frames, n_mels]`` of ``clip`` (pad with 0 before normalizing)."""
    samples = load_clip(clip, config.sample_rate)
    # AST removes the clip's mean before fbank; with per-frame DC removal it changes nothing,
    # but without it (remove_dc_offset=False) it matters, so keep the recipe's order.
    samples = samples - samples.mean(dtype=np.float64).astype(np.float32)
    with torch.no_grad():
        raw = frontend.fbank(torch.from_numpy(np.ascontiguousarray(samples)), config).numpy()
    return np.asarray(frontend.normalize(pad_or_crop(raw, frames), config), dtype=np.float32)


def _check_labels(labels) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
        raise ConfigError(f"labels must be a non-empty list of class names, got {labels!r}")
    labels = [str(label) for label in labels]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"labels contain duplicates: {duplicates}")
    return labels


class FeatureDataset(Dataset):
    """``dataset[i]`` = ``(features float32 tensor [frames, n_mels], label index int)`` of ``clips[i]``.

    Args:
      clips: the examples (e.g. ``index.splits["train"]``).
      labels: class names; a clip's label index is its position here.
      config: frontend settings (default ``FbankConfig()``, the recipe's).
      frames: output length in frames after pad/crop (default 128).
      cache_dir: feature cache folder (default :func:`default_cache_dir`).
      cache: False disables the cache (features recomputed on every access).

    Attributes:
      skipped: ``(path, reason)`` of clips that failed to load here (served by a
        replacement of the same label, see the module docstring).
      cache_hits, cache_misses: cache look-ups in this process.
    """

    def __init__(self, clips: Sequence[Clip], labels: Sequence[str], config: frontend.FbankConfig | None = None,
                 frames: int = DEFAULT_FRAMES, *, cache_dir=None, cache: bool = True) -> None:
        self.labels = _check_labels(labels)
        self.config = frontend.FbankConfig() if config is None else config
        if not isinstance(self.config, frontend.FbankConfig):
            raise ConfigError(f"config must be an FbankConfig, got {type(self.config).__name__}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ConfigError(f"frames must be a positive integer, got {frames!r}")
        self.frames = frames
        self.clips = list(clips)
        index = {label: i for i, label in enumerate(self.labels)}
        for clip in self.clips:
            if not isinstance(clip, Clip):
                raise ConfigError(f"clips must be Clip objects, got {type(clip).__name__}")
            if clip.label not in index:
                raise ConfigError(f"clip {clip.describe()} has label {clip.label!r}, not in labels {self.labels[:10]}")
        self.targets = [index[clip.label] for clip in self.clips]
        self._same_label: dict[int, list[int]] = {}
        for i, target in enumerate(self.targets):
            self._same_label.setdefault(target, []).append(i)
        self.cache = FeatureCache(cache_dir if cache_dir is not None else default_cache_dir()) if cache else None
        self._frontend = self.config.to_dict()
        self.skipped: list[tuple[str, str]] = []
        self._failed: set[int] = set()
        self.cache_hits = self.cache_misses = 0

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def shape(self) -> tuple[int, int]:
        """``(frames, n_mels)`` of every item's features."""
        return self.frames, self.config.n_mels

    def features(self, i: int) -> tuple[np.ndarray, bool]:
        """``(features of clip i, computed)``: from the cache when present, else computed and stored.

        Raises AudioError when the clip cannot be loaded (no replacement here).
        """
        clip = self.clips[i]
        key = self.cache.key(clip, self._frontend, self.frames) if self.cache is not None else None
        if key is not None:
            cached = self.cache.load(key, self.shape)
            if cached is not None:
                self.cache_hits += 1
                return cached, False
        self.cache_misses += 1
        features = clip_features(clip, self.config, self.frames)
        if key is not None:
            self.cache.save(key, features)
        return features, True

    def _replacements(self, i: int) -> list[int]:
        """Clip i, then the other clips of its label in order, wrapping around."""
        same = self._same_label[self.targets[i]]
        start = same.index(i)
        return same[start:] + same[:start]

    def _load(self, i: int) -> tuple[np.ndarray, bool]:
        """Features of clip i or of its first loadable replacement (failures recorded and warned)."""
        for j in self._replacements(i):
            if j in self._failed:
                continue
            try:
                return self.features(j)
            except AudioError as e:
                self._failed.add(j)
                self.skipped.append((self.clips[j].describe(), str(e)))
                warnings.warn(f"cannot load {self.clips[j].describe()} ({e}); serving another "
                              f"{self.clips[j].label!r} clip instead", SkippedFileWarning, stacklevel=3)
        raise AudioError(f"no clip of label {self.clips[i].label!r} can be loaded ({len(self._replacements(i))} "
                         f"tried); see dataset.skipped")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"FeatureDataset index {i} out of range for {len(self)} clips")
        i %= len(self)
        features, _ = self._load(i)
        return torch.from_numpy(features), self.targets[i]  # a fresh array either way: no copy needed

    def precompute(self, num_workers: int = 0, *, progress: bool = True) -> int:
        """Fill the cache for every clip (tqdm progress bar); returns how many were computed (not cached).

        ``num_workers`` > 0 spreads the work over that many DataLoader worker processes;
        their load failures are merged into ``skipped``. Raises ConfigError without a cache.
        """
        from tqdm.auto import tqdm

        if self.cache is None:
            raise ConfigError("precompute needs the feature cache (the dataset was made with cache=False)")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"num_workers must be a non-negative integer, got {num_workers!r}")
        if num_workers == 0:
            results = (self._precompute_one(i) for i in range(len(self)))
        else:
            loader = DataLoader(_PrecomputeView(self), batch_size=None, num_workers=num_workers,
                                collate_fn=_identity)
            results = iter(loader)
        computed = 0
        for was_computed, failures in tqdm(results, total=len(self), desc="features", unit="clip",
                                           disable=not progress):
            computed += int(was_computed)
            for failure in failures:
                if failure not in self.skipped:
                    self.skipped.append(failure)
        return computed

    def _precompute_one(self, i: int) -> tuple[bool, list[tuple[str, str]]]:
        before = len(self.skipped)
        try:
            _, computed = self._load(i)
        except AudioError:
            computed = False  # the whole label is unloadable: reported in skipped, and again at training
        return computed, self.skipped[before:]


class _PrecomputeView(Dataset):
    """The dataset, yielding ``(computed, new failures)`` instead of tensors (for worker processes)."""

    def __init__(self, dataset: FeatureDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset._precompute_one(i)


def _identity(item):
    return item
