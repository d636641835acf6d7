"""Open a keyword-spotting dataset from disk as labelled, speaker-disjoint train/validation/test clips.

:func:`open_dataset` is what ``lmustream train --data X`` and ``lmustream eval --data X``
call: it detects the layout (see :mod:`lmustream.data.sources`), drops unreadable files
after a header check, splits (official lists where the layout has them, otherwise whole
speakers, seeded), adds ``_silence_`` clips for the 12-class Speech Commands task, and
checks that every split has clips and every class is in train. The result, a
:class:`DatasetIndex`, makes :class:`~lmustream.data.feature_dataset.FeatureDataset` objects.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmustream.data import sources
from lmustream.data.clips import DEFAULT_FRAMES, Clip, scan_clips
from lmustream.data.silence import DEFAULT_SILENCE_RATIO, add_silence
from lmustream.data.splits import (DEFAULT_TEST_FRACTION, DEFAULT_VALIDATION_FRACTION, check_splits,
                                   split_by_assignment, split_by_speaker)
from lmustream.errors import ConfigError

if TYPE_CHECKING:  # torch is imported only when features are asked for: opening an index stays torch-free
    from lmustream.data.feature_dataset import FeatureDataset

KINDS = ("auto", "speech_commands", "folders", "manifest", "pattern")
MANIFEST_SUFFIX = ".csv"
MAX_SKIPPED_IN_SUMMARY = 10


@dataclass
class DatasetIndex:
    """A dataset's ordered ``labels`` and its clips per split ("train", "validation", "test").

    Also: ``kind`` (the layout), ``root`` (dataset folder), ``task`` ("35"/"12" for Speech
    Commands, else None), ``official_split`` (True when the split came from the data's own
    lists), and ``skipped``: ``(path, reason)`` of every file dropped while opening.
    """

    labels: list[str]
    splits: dict[str, list[Clip]]
    kind: str
    root: Path
    task: str | None = None
    official_split: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def clips(self) -> list[Clip]:
        """Every clip of every split, train first."""
        return [clip for name in sources.SPLITS for clip in self.splits.get(name, [])]

    def speakers(self, split: str | None = None) -> list[str]:
        """Sorted speaker ids of ``split`` (all splits when None); silence clips have none."""
        clips = self.clips() if split is None else self._split(split)
        return sorted({clip.speaker for clip in clips if clip.speaker is not None})

    def counts(self, split: str) -> dict[str, int]:
        """Clips per label in ``split``, in label order (0 for an absent class)."""
        counter = Counter(clip.label for clip in self._split(split))
        return {label: counter[label] for label in self.labels}

    def _split(self, split: str) -> list[Clip]:
        if split not in self.splits:
            raise ConfigError(f"unknown split {split!r}; the splits are {list(self.splits)}")
        return self.splits[split]

    def dataset(self, split: str, config=None, frames: int = DEFAULT_FRAMES, **kwargs) -> "FeatureDataset":
        """A :class:`FeatureDataset` of ``split`` with this index's labels (kwargs: cache_dir, cache)."""
        from lmustream.data.feature_dataset import FeatureDataset

        return FeatureDataset(self._split(split), self.labels, config, frames, **kwargs)

    def summary(self) -> str:
        """A table: clips per class and split, speakers per split, and the skipped files."""
        task = f", task {self.task}" if self.task else ""
        how = "official split" if self.official_split else "split by speaker"
        lines = [f"{self.kind} dataset at {self.root}{task}: {len(self.labels)} labels, "
                 f"{len(self.clips())} clips ({how})"]
        names = list(self.splits)
        width = max([len("speakers")] + [len(label) for label in self.labels])
        lines.append(f"{'label':<{width}}  " + "  ".join(f"{n:>10}" for n in names))
        counts = {n: self.counts(n) for n in names}
        for label in self.labels:
            lines.append(f"{label:<{width}}  " + "  ".join(f"{counts[n][label]:>10}" for n in names))
        lines.append(f"{'total':<{width}}  " + "  ".join(f"{len(self.splits[n]):>10}" for n in names))
        lines.append(f"{'speakers':<{width}}  " + "  ".join(f"{len(self.speakers(n)):>10}" for n in names))
        lines.append(f"skipped files: {len(self.skipped)}")
        for path, reason in self.skipped[:MAX_SKIPPED_IN_SUMMARY]:
            lines.append(f"  {path}: {reason}")
        if len(self.skipped) > MAX_SKIPPED_IN_SUMMARY:
            lines.append(f"  ... and {len(self.skipped) - MAX_SKIPPED_IN_SUMMARY} more")
        return "\n".join(lines)


def _check_spec(spec) -> None:
    if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
        raise ConfigError(f"dataset must be a folder or a {MANIFEST_SUFFIX} manifest path, got {spec!r}")


def detect_kind(spec, *, task: str = "35", pattern: str | None = None) -> str:
    """The layout of ``spec``: "manifest" (a .csv file), "pattern", "speech_commands" or "folders".

    A folder is "pattern" when a pattern is given; else Speech Commands when it holds
    ``validation_list.txt``, ``testing_list.txt`` or ``_background_noise_``, or when task
    "12" is asked for; else labelled folders.
    """
    _check_spec(spec)
    path = Path(os.fspath(spec))
    if not path.exists():
        raise ConfigError(f"dataset {str(path)!r}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == MANIFEST_SUFFIX:
            return "manifest"
        raise ConfigError(f"dataset {str(path)!r}: a file must be a {MANIFEST_SUFFIX} manifest; "
                          "otherwise pass the dataset folder")
    if pattern is not None:
        return "pattern"
    markers = [*sources.SC_LIST_FILES.values(), sources.SC_NOISE_FOLDER]
    if any((path / marker).exists() for marker in markers) or task == "12":
        return "speech_commands"
    return "folders"


def open_dataset(spec, *, kind: str = "auto", task="35", pattern: str | None = None, label_map=None,
                 split_lists: bool | None = None, validation_speakers=None, test_speakers=None,
                 validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                 test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0, noise_dir=None,
                 silence_ratio: float = DEFAULT_SILENCE_RATIO, scan: bool = True, complete: bool = True,
                 keywords=None) -> DatasetIndex:
    """Open the dataset at ``spec`` (folder or .csv) as a checked, split :class:`DatasetIndex`.

    Args:
      kind: "auto" (see :func:`detect_kind`), "speech_commands", "folders", "manifest", "pattern".
      task: Speech Commands only: "35" (every word) or "12" (ten words, _unknown_, _silence_).
      pattern: file-name pattern such as "{label}_{speaker}_{index}.wav" (kind "pattern").
      label_map: raw label -> class name, a mapping or "0=zero,1=one" (not Speech Commands);
        the labels are then ordered as the map's names.
      split_lists: Speech Commands lists: None = use if present, True = required, False = ignore.
      validation_speakers, test_speakers: held-out speaker ids, or a count of speakers to
        hold out (chosen by seed); else ``*_fraction`` of the speakers (default 0.1 each,
        at least one speaker when > 0). A split may be empty only if its fraction is 0.
        Not allowed together with an official split.
      seed: chooses the held-out speakers (deterministic).
      noise_dir: background-noise folder for task 12's _silence_ (default the dataset's).
      silence_ratio: _silence_ clips per split = ratio x the split's average class size.
      scan: header-check every file and drop unreadable ones (default True; a
        :class:`~lmustream.data.clips.SkippedFileWarning` and ``index.skipped`` report them).
      complete: every class in train and no unrequested empty split (data to train on);
        False for data that is only scored, which may hold any subset of the classes.
      keywords: task 12 only: the words kept as classes instead of the ten command words
        (every other word is _unknown_), e.g. the words of a 12-class model taught new ones.

    Raises ConfigError for a bad argument or layout, an empty split or a class absent
    from train (naming it), and a missing required split list.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    _check_spec(spec)
    # int(seed) would truncate 1.5 to another seed's split, or fail with a bare ValueError on "a"
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    task = sources.check_task(task)
    label_map = sources.parse_label_map(label_map)
    kind = detect_kind(spec, task=task, pattern=pattern) if kind == "auto" else kind
    as_path = Path(os.fspath(spec))
    if kind != "manifest" and as_path.suffix.lower() == MANIFEST_SUFFIX and as_path.is_file():
        raise ConfigError(f"{str(spec)!r} is a CSV manifest, but the dataset kind is {kind!r} (e.g. from a recipe "
                          f"made for other data): read it with kind 'manifest' (data.kind=manifest, --kind manifest)")
    if kind != "speech_commands" and task != "35":
        raise ConfigError(f"task {task!r} applies to Speech Commands only, but {str(spec)!r} is opened as {kind!r}")
    if kind == "pattern" and pattern is None:
        raise ConfigError("kind 'pattern' needs pattern=, e.g. '{label}_{speaker}_{index}.wav'")
    if kind == "speech_commands" and label_map is not None:
        raise ConfigError("label_map does not apply to Speech Commands (its labels are fixed by the task)")
    listing = _list(spec, kind, task, pattern, split_lists, noise_dir, keywords)
    if label_map is not None:
        listing = sources.apply_label_map(listing, label_map)
    skipped = list(listing.skipped)
    clips = listing.clips
    if scan:
        clips, bad = scan_clips(clips)
        skipped += bad
    if not clips:
        if not skipped:
            raise ConfigError(f"dataset {str(spec)!r}: no audio clips found")
        path, reason = skipped[0]
        raise ConfigError(f"dataset {str(spec)!r}: no usable clips ({len(skipped)} file(s) skipped, e.g. "
                          f"{path}: {reason})")
    explicit = validation_speakers is not None or test_speakers is not None
    if listing.assigned is not None:
        if explicit:
            raise ConfigError(f"{str(spec)!r} has an official split; validation_speakers / test_speakers would "
                              "override it (data.split_lists=false ignores Speech Commands' lists; or drop the manifest's "
                              "split column)")
        splits = split_by_assignment(clips, listing.assigned)
    else:
        splits = split_by_speaker(clips, validation_speakers=validation_speakers, test_speakers=test_speakers,
                                  validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed)
    if sources.SILENCE_LABEL in listing.labels and listing.noise_files:
        skipped += add_silence(splits, listing.noise_files, len(listing.labels) - 1, ratio=silence_ratio, seed=seed)
    # A held-out split may be empty only when the caller asked for none of it, or when the
    # official split lists leave it empty (e.g. a synthetic corpus made without validation speakers).
    if listing.assigned is not None:
        may_be_empty = list(listing.empty_lists)
    else:
        may_be_empty = [name for name, fraction, speakers in (("validation", validation_fraction, validation_speakers),
                                                              ("test", test_fraction, test_speakers))
                        if speakers == 0 or (speakers is None and fraction == 0)]
    check_splits(splits, listing.labels, may_be_empty=may_be_empty, complete=complete)
    return DatasetIndex(listing.labels, splits, kind, listing.root, task if kind == "speech_commands" else None,
                        listing.assigned is not None, skipped)


def _list(spec, kind: str, task: str, pattern, split_lists, noise_dir, keywords=None) -> sources.Listing:
    """Run the source for ``kind``, rejecting options that do not apply to it."""
    given = [name for name, value in (("split_lists", split_lists), ("noise_dir", noise_dir), ("keywords", keywords))
             if value is not None]
    if kind != "speech_commands" and given:
        raise ConfigError(f"{' / '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to Speech Commands only, "
                          f"not to kind {kind!r}")
    if kind != "pattern" and pattern is not None:
        raise ConfigError(f"pattern= applies to kind 'pattern' only, not to {kind!r}")
    if kind == "speech_commands":
        return sources.speech_commands(spec, task, split_lists=split_lists, noise_dir=noise_dir, keywords=keywords)
    if kind == "folders":
        return sources.labelled_folders(spec)
    if kind == "manifest":
        return sources.manifest(spec)
    return sources.filename_pattern(spec, pattern)
