"""Speaker-disjoint train / validation / test splits, deterministic for a seed, and their checks.

Speakers are ranked by a hash of ``(seed, speaker id)``: a seeded shuffle that does not
depend on listing order, platform or numpy version. Held-out splits take whole speakers
from the front of the ranking, so no speaker's clips are ever spread over two splits.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from lmustream.data.clips import Clip
from lmustream.data.sources import SPLITS
from lmustream.errors import ConfigError

DEFAULT_VALIDATION_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1
HELD_OUT = ("validation", "test")


class SplitWarning(UserWarning):
    """A held-out split lacks some class (train lacking one is an error)."""


def rank_speakers(speakers: Iterable[str], seed: int = 0) -> list[str]:
    """Distinct ``speakers`` in the order of sha256(seed, speaker): a deterministic seeded shuffle."""
    def key(speaker: str) -> tuple[str, str]:
        return hashlib.sha256(f"{int(seed)}\0{speaker}".encode()).hexdigest(), speaker

    return sorted(set(speakers), key=key)


def _speakers_of(source) -> list[str]:
    """Speaker ids of a DatasetIndex, an iterable of clips or of speaker-id strings."""
    if hasattr(source, "splits"):
        source = [clip for clips in source.splits.values() for clip in clips]
    speakers = set()
    for item in source:
        speaker = item if isinstance(item, str) else item.speaker
        if speaker is not None:
            speakers.add(speaker)
    return sorted(speakers)


def held_out_speakers(source, n: int, *, seed: int = 0, exclude: Iterable[str] = ()) -> list[str]:
    """``n`` speakers of ``source`` (DatasetIndex, clips or speaker ids) to hold out, chosen by ``seed``.

    Deterministic: the first ``n`` of :func:`rank_speakers` not in ``exclude``. At least
    one speaker must remain for training, else ConfigError. Silence clips (no speaker)
    are ignored. Example: ``held_out_speakers(index, 3)`` picks 3 of 18 speakers.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"held_out_speakers: n must be a non-negative integer, got {n!r}")
    excluded = set(exclude)
    candidates = [s for s in _speakers_of(source) if s not in excluded]
    if n > 0 and n >= len(candidates):
        raise ConfigError(f"held_out_speakers: cannot hold out {n} of {len(candidates)} available speaker(s) "
                          "and keep at least one for training")
    return rank_speakers(candidates, seed)[:n]


def _fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _count_for(fraction: float, total: int) -> int:
    """Speakers for a held-out ``fraction`` of ``total``: rounded, but at least one when fraction > 0."""
    return 0 if fraction == 0 else max(1, round(fraction * total))


def _explicit(value, name: str, known: set[str]) -> list[str] | int | None:
    """A held-out speaker argument: None, a count, or a list of known speaker ids."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a list of speaker ids or a count, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{name}: a count of speakers must be >= 0, got {value}")
        return value
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{name} must be a list of speaker ids or a count, got {value!r}")
    speakers = [str(s) for s in value]
    unknown = [s for s in speakers if s not in known]
    if unknown:
        raise ConfigError(f"{name}: unknown speaker(s) {unknown}; the dataset's speakers include "
                          f"{sorted(known)[:10]}")
    return list(dict.fromkeys(speakers))


def split_by_speaker(clips: Sequence[Clip], *, validation_speakers=None, test_speakers=None,
                     validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                     test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0) -> dict[str, list[Clip]]:
    """Split ``clips`` by speaker into {"train", "validation", "test"}: no speaker in two splits.

    A held-out split takes the listed speakers (``*_speakers=[ids]``), a count of them
    (``*_speakers=n``, chosen by :func:`held_out_speakers`), or else ``*_fraction`` of all
    speakers (rounded, at least one when the fraction is > 0). Validation is drawn first,
    then test, from the seeded ranking; every other speaker is train. Raises ConfigError
    for unknown or overlapping speakers, a bad fraction, or no speaker left for train.
    """
    if any(clip.speaker is None for clip in clips):
        bad = next(clip for clip in clips if clip.speaker is None)
        raise ConfigError(f"split_by_speaker: clip {bad.describe()} has no speaker id")
    known = {clip.speaker for clip in clips}
    chosen: dict[str, list[str]] = {}
    requests = {"validation": (_explicit(validation_speakers, "validation_speakers", known),
                               _fraction(validation_fraction, "validation_fraction")),
                "test": (_explicit(test_speakers, "test_speakers", known), _fraction(test_fraction, "test_fraction"))}
    fraction_total(requests["validation"][1], requests["test"][1])
    for split, (explicit, _) in requests.items():
        if isinstance(explicit, list):
            chosen[split] = explicit
    if "validation" in chosen and "test" in chosen:
        overlap = sorted(set(chosen["validation"]) & set(chosen["test"]))
        if overlap:
            raise ConfigError(f"speaker(s) {overlap} are in both validation_speakers and test_speakers")
    for split, (explicit, fraction) in requests.items():
        if split in chosen:
            continue
        taken = {s for ids in chosen.values() for s in ids}
        count = explicit if isinstance(explicit, int) else _count_for(fraction, len(known))
        available = [s for s in known if s not in taken]
        if count > len(available):
            raise ConfigError(f"cannot hold out {count} {split} speaker(s): only {len(available)} of "
                              f"{len(known)} left")
        chosen[split] = rank_speakers(available, seed)[:count]
    held = {s: split for split, ids in chosen.items() for s in ids}
    if len(held) >= len(known):
        raise ConfigError(f"no speaker left for train: {len(known)} speaker(s), {len(chosen['validation'])} held out "
                          f"for validation and {len(chosen['test'])} for test")
    splits: dict[str, list[Clip]] = {name: [] for name in SPLITS}
    for clip in clips:
        splits[held.get(clip.speaker, "train")].append(clip)
    return splits


def split_by_assignment(clips: Sequence[Clip], assigned: dict[Path, str]) -> dict[str, list[Clip]]:
    """Split ``clips`` by an official ``path -> split`` assignment (unlisted paths go to train)."""
    splits: dict[str, list[Clip]] = {name: [] for name in SPLITS}
    for clip in clips:
        splits[assigned.get(clip.path, "train")].append(clip)
    return splits


def check_splits(splits: dict[str, list[Clip]], labels: Sequence[str], *, may_be_empty: Iterable[str] = (),
                 complete: bool = True) -> None:
    """Raise ConfigError for an empty split (unless in ``may_be_empty``) or a class absent from train.

    A class missing from validation or test only warns (:class:`SplitWarning`): with few
    speakers that can be legitimate, but the per-class metrics will lack it. ``complete=False``
    (data that is only scored) raises for unknown labels alone: any split and any class may be
    missing, and the held-out splits' missing classes still warn.
    """
    allowed = set(may_be_empty) if complete else set(SPLITS)
    for name in SPLITS:
        if not splits.get(name) and name not in allowed:
            sizes = ", ".join(f"{n}={len(splits.get(n, []))}" for n in SPLITS)
            raise ConfigError(f"the {name} split is empty ({sizes}); give more speakers to it or set its "
                              "fraction to 0 to train without it")
    counts = {name: Counter(clip.label for clip in splits.get(name, [])) for name in SPLITS}
    unknown = sorted({label for c in counts.values() for label in c} - set(labels))
    if unknown:
        raise ConfigError(f"clips carry label(s) {unknown} that are not in the label list {list(labels)[:10]}")
    absent = [label for label in labels if counts["train"][label] == 0]
    if absent and complete:
        raise ConfigError(f"class {absent[0]!r} has no clips in the train split "
                          f"(absent from train: {absent}); add data for it or remove the class")
    for name in HELD_OUT:
        if not splits.get(name):
            continue
        missing = [label for label in labels if counts[name][label] == 0]
        if missing:
            warnings.warn(f"the {name} split has no clips of class(es) {missing[:10]}"
                          f"{' ...' if len(missing) > 10 else ''}", SplitWarning, stacklevel=2)


def fraction_total(*fractions: float) -> float:
    """Sum of held-out fractions, checked to leave something for train (< 1)."""
    total = math.fsum(fractions)
    if total >= 1.0:
        raise ConfigError(f"validation_fraction + test_fraction must be < 1, got {total:g}")
    return total
