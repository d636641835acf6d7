"""Labelled training clips cut from long recordings: running speech, a room's false alarms.

A keyword model trained on isolated words has never heard the words of running speech, and
fires on them. ``lmustream data windows`` cuts recordings into overlapping clips of the
training length and writes them into ``OUT/LABEL/`` (by default ``_unknown_``), a labelled
folder that ``lmustream data pack`` turns into a pack for ``data.add_packs``. Clips without
speech are skipped: a clip is kept when one of its 10 ms frames comes within ``min_db`` of
the recording's loudest frame, so the pauses of a sentence are not taught as words.

Clips are named ``{name}{k}_nohash_{j}.wav`` (k: the recording's number among those kept,
j: the clip's position in it), so a recording is one "speaker" to the speaker-disjoint splits.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from lmustream.audio.io import DEFAULT_SAMPLE_RATE, load_audio, write_audio
from lmustream.data.clips import collect_audio, is_audio_file, warn_skipped
from lmustream.errors import AudioError, ConfigError

FRAME_SECONDS = 0.01  # the loudness check's frame
MAX_SECONDS = 60.0  # a clip is a training example: longer ones are a typo (and would not fit in memory)


def recordings(paths: Sequence[str | Path], every: int = 1, offset: int = 0) -> list[Path]:
    """The audio files named or found (recursively) under ``paths``, sorted by path, then every
    ``every``-th starting at ``offset`` (``every=2`` with offsets 0 and 1 halves a collection)."""
    if every < 1 or not 0 <= offset < every:
        raise ConfigError(f"need every >= 1 and 0 <= offset < every, got every={every}, offset={offset}")
    for p in map(Path, paths):
        if p.is_file() and not is_audio_file(p):
            raise ConfigError(f"{p}: not an audio file or a folder")
    found = collect_audio(paths)
    if not found:
        raise ConfigError(f"no audio files in {', '.join(map(str, paths))}")
    return found[offset::every]


def window_starts(n: int, length: int, hop: int) -> range:
    """Where the clips of ``length`` samples every ``hop`` samples start in ``n`` samples (one
    clip, later zero-padded, when ``n < length``)."""
    return range(0, max(n - length, 0) + 1, hop)


def speech_windows(samples: np.ndarray, length: int, hop: int, frame: int, min_db: float) -> list[tuple[int, np.ndarray]]:
    """``(position, clip)`` for the clips at ``window_starts`` (the last one zero-padded) that hold a
    ``frame``-sample frame within ``min_db`` dB of the loudest frame."""
    cuts = (samples[s:s + length] for s in window_starts(len(samples), length, hop))
    clips = [np.pad(cut, (0, length - len(cut))) for cut in cuts]
    loudest = []
    for clip in clips:
        frames = clip[: len(clip) // frame * frame].reshape(-1, frame).astype(np.float64)
        loudest.append(20 * math.log10(math.sqrt(float(np.max(np.mean(frames ** 2, axis=1))) + 1e-12)))
    peak = max(loudest, default=-math.inf)
    return [(j, clip) for j, (clip, db) in enumerate(zip(clips, loudest)) if db >= peak - min_db]


def cut_windows(paths: Sequence[str | Path], out: str | Path, *, label: str = "_unknown_", seconds: float = 1.0,
                hop_seconds: float = 0.5, min_db: float = 25.0, every: int = 1, offset: int = 0,
                name: str = "rec", sample_rate: int = DEFAULT_SAMPLE_RATE) -> dict:
    """Write the speech windows of the recordings into ``out/label/``; returns counts."""
    if not (seconds > 0 and hop_seconds > 0 and min_db > 0):
        raise ConfigError(f"seconds, hop and min_db must be positive, got {seconds}, {hop_seconds}, {min_db}")
    if seconds > MAX_SECONDS or hop_seconds > MAX_SECONDS:
        raise ConfigError(f"seconds and hop are a keyword clip's length and step: at most {MAX_SECONDS:g} s, "
                          f"got {seconds:g} and {hop_seconds:g}")
    for what, value in (("label", label), ("name", name)):
        if not value or "/" in value or "\\" in value or value in (".", ".."):
            raise ConfigError(f"{what} must be a plain file name (no path separators), got {value!r}")
    files = recordings(paths, every, offset)
    folder = Path(out) / label
    earlier = sorted(folder.glob(f"{name}*_nohash_*")) if folder.is_dir() else []
    if earlier:  # the same names would overwrite them, and merge two collections into one "speaker" each
        raise ConfigError(f"{folder} already holds clips named {name}..._nohash_... ({len(earlier)}, e.g. "
                          f"{earlier[0].name}): give these recordings another --name, or another --out")
    folder.mkdir(parents=True, exist_ok=True)
    length, hop = round(seconds * sample_rate), round(hop_seconds * sample_rate)
    frame = round(FRAME_SECONDS * sample_rate)
    kept = quiet = 0
    unreadable: list[tuple[str, str]] = []
    digits = len(str(len(files) - 1))
    for k, path in enumerate(files):
        try:
            samples = load_audio(path, sample_rate)
        except AudioError as e:  # one bad file among many: skip it, say so, go on
            unreadable.append((str(path), str(e)))
            continue
        windows = speech_windows(samples, length, hop, frame, min_db)
        for j, clip in windows:
            write_audio(folder / f"{name}{k:0{digits}d}_nohash_{j:03d}.wav", clip, sample_rate)
        kept += len(windows)
        quiet += len(window_starts(len(samples), length, hop)) - len(windows)
    if unreadable:
        warn_skipped(unreadable, "cutting windows")
    if len(unreadable) == len(files):
        raise AudioError(f"none of the {len(files)} recordings could be read (first: {unreadable[0][0]})")
    return {"recordings": len(files) - len(unreadable), "clips": kept, "skipped_without_speech": quiet,
            "unreadable": len(unreadable), "folder": str(folder)}
