"""``_silence_`` clips for the 12-class Speech Commands task: one-second cuts of background noise.

Each split gets about as many silence clips as its average class (``silence_ratio`` times
that). Every noise file is divided into consecutive regions, one per split, sized by the
split's share of silence clips, so train, validation and test never share noise (as long
as each region is at least a second long). Within a region the cuts are evenly spaced
(deterministic offsets); each clip carries a gain drawn uniformly from ``SILENCE_GAIN_RANGE``
by a generator seeded with ``(seed, split, clip number)``, as the Speech Commands recipe
scales its silence by a random volume in [0, 1].
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path
from typing import Sequence

import soundfile as sf

from lmustream.data.clips import SILENCE_SECONDS, Clip, warn_skipped
from lmustream.data.sources import SILENCE_LABEL, SPLITS
from lmustream.errors import ConfigError

SILENCE_GAIN_RANGE = (0.0, 1.0)  # includes near-digital silence, as the recipe does
DEFAULT_SILENCE_RATIO = 1.0  # silence clips per split = ratio x the split's average class size


def _noise_lengths(noise_files: Sequence[Path]) -> tuple[list[tuple[Path, int, int]], list[tuple[str, str]]]:
    """``[(file, frames, rate)]`` of noise files holding at least a second; the rest as skipped."""
    usable, skipped = [], []
    for path in noise_files:
        try:
            with sf.SoundFile(path) as f:
                frames, rate = f.frames, f.samplerate
        except (sf.SoundFileError, RuntimeError, TypeError, OSError) as e:
            skipped.append((str(path), f"unreadable noise file ({e})"))
            continue
        if frames < SILENCE_SECONDS * rate:
            skipped.append((str(path), f"noise file shorter than {SILENCE_SECONDS:g} s ({frames} frames at {rate} Hz)"))
            continue
        usable.append((path, frames, rate))
    return usable, skipped


def silence_counts(splits: dict[str, list[Clip]], n_classes: int, ratio: float) -> dict[str, int]:
    """Silence clips per split: ``ratio`` x (clips in the split / ``n_classes`` other classes), rounded."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < math.inf:
        raise ConfigError(f"silence_ratio must be a finite number >= 0, got {ratio!r}")
    return {name: round(ratio * len(splits[name]) / max(1, n_classes)) for name in SPLITS}


def add_silence(splits: dict[str, list[Clip]], noise_files: Sequence[Path], n_classes: int, *,
                ratio: float = DEFAULT_SILENCE_RATIO, seed: int = 0) -> list[tuple[str, str]]:
    """Append ``_silence_`` clips to each split in place; returns skipped noise files ``(path, reason)``.

    ``n_classes`` is the number of non-silence classes (the divisor of the average class
    size). Raises ConfigError when silence is wanted but no noise file is usable.
    """
    counts = silence_counts(splits, n_classes, ratio)
    total = sum(counts.values())
    noises, skipped = _noise_lengths(noise_files)
    if skipped:
        warn_skipped(skipped, "among the background-noise files")
    if total == 0:
        return skipped
    if not noises:
        raise _no_usable_noise(noise_files, skipped)
    start = 0.0
    for name in SPLITS:
        share = counts[name] / total
        splits[name].extend(_cut(noises, counts[name], (start, start + share), name, seed))
        start += share
    return skipped


def cut_silence(noise_files: Sequence[Path], count: int, *, split: str = "test", seed: int = 0) -> list[Clip]:
    """``count`` ``_silence_`` clips cut from the whole of each noise file, as :func:`add_silence` cuts a split.

    For silence outside a dataset (e.g. a folder of silence clips to score a model on); the clips are
    those ``add_silence`` would give a split named ``split`` that had every noise file to itself.
    """
    if count < 1:
        return []
    noises, skipped = _noise_lengths(noise_files)
    if skipped:
        warn_skipped(skipped, "among the background-noise files")
    if not noises:
        raise _no_usable_noise(noise_files, skipped)
    return _cut(noises, count, (0.0, 1.0), split, seed)


def _no_usable_noise(noise_files: Sequence[Path], skipped: list[tuple[str, str]]) -> ConfigError:
    return ConfigError(f"cannot make {SILENCE_LABEL} clips: none of the {len(noise_files)} noise file(s) is "
                       f"usable ({skipped[:3]})")


def _cut(noises: list[tuple[Path, int, int]], count: int, region: tuple[float, float], split: str,
         seed: int) -> list[Clip]:
    """``count`` clips cycling over the noise files, evenly spaced within each file's ``region``."""
    per_file = Counter(i % len(noises) for i in range(count))
    clips = []
    for i in range(count):
        path, frames, rate = noises[i % len(noises)]
        length = round(SILENCE_SECONDS * rate)
        first = int(region[0] * frames)
        last = min(int(region[1] * frames), frames) - length  # last offset whose segment stays inside
        last = min(max(first, last), frames - length)
        first = min(first, last)
        slots = per_file[i % len(noises)]
        k = i // len(noises)
        offset = first + (round(k * (last - first) / (slots - 1)) if slots > 1 else 0)
        gain = random.Random(f"{seed}:{split}:{i}").uniform(*SILENCE_GAIN_RANGE)
        clips.append(Clip(None, SILENCE_LABEL, None, (path, int(offset)), gain))
    return clips
