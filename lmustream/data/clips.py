"""Clip records, speaker-id conventions and the up-front scan that drops unreadable files.

A :class:`Clip` is one labelled example: an audio file, or (for ``_silence_``) a one-second
segment of a background-noise file. Scanning opens each file's header once, before any
training starts, so a corrupt file is reported in a summary instead of crashing an epoch.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import soundfile as sf

from lmustream.errors import ConfigError

SPEECH_COMMANDS_SPEAKER_SEPARATOR = "_nohash_"  # <speaker>_nohash_<n>.wav (Speech Commands)
SILENCE_SECONDS = 1.0  # a _silence_ clip is this long, as in the Speech Commands recipe
DEFAULT_FRAMES = 128  # model input length: 1 s gives 98 fbank frames, zero-padded to 128 (LMUFormer recipe)


def _audio_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) of every container this libsndfile reads."""
    extensions = {"." + name.lower() for name in sf.available_formats()}
    # Common spellings that differ from libsndfile's format names.
    extensions |= {".aif", ".aiff", ".oga", ".opus", ".wave"}
    extensions.discard(".raw")  # headerless: readable only with a declared format
    return frozenset(extensions)


AUDIO_EXTENSIONS = _audio_extensions()


class SkippedFileWarning(UserWarning):
    """An audio file was dropped (unreadable, empty, missing) or replaced at load time."""


@dataclass(frozen=True)
class Clip:
    """One labelled example: ``path`` (an audio file) or ``noise`` (a segment of a noise file).

    Fields:
      path: the audio file, or None for a ``_silence_`` clip cut from background noise.
      label: class name (one of the dataset's labels).
      speaker: speaker id used for speaker-disjoint splits; None for silence clips.
      noise: ``(noise_file, offset_samples)`` for silence clips: the clip is the
        ``SILENCE_SECONDS`` of ``noise_file`` starting at ``offset_samples``, counted at
        the noise file's own sample rate. None for ordinary clips.
      gain: factor applied to a silence clip's noise segment (1.0 for ordinary clips).
    """

    path: Path | None
    label: str
    speaker: str | None = None
    noise: tuple[Path, int] | None = None
    gain: float = 1.0

    def __post_init__(self) -> None:
        if (self.path is None) == (self.noise is None):
            raise ConfigError(f"Clip {self.label!r}: give exactly one of path or noise, "
                             f"got path={self.path!r}, noise={self.noise!r}")

    @property
    def source(self) -> Path:
        """The file the clip's samples come from (``path``, or the noise file)."""
        return self.path if self.path is not None else self.noise[0]

    def describe(self) -> str:
        """A short human-readable name: the path, or ``noise_file@offset``."""
        if self.path is not None:
            return str(self.path)
        return f"{self.noise[0]}@{self.noise[1]}"


def speaker_from_name(path: Path) -> str:
    """Speaker id from a file name: the part before ``_nohash_`` (Speech Commands), else the stem.

    Files without the ``_nohash_`` marker each count as their own speaker (files with the
    same stem in different folders share one), so a split of such data is per clip.
    """
    stem = path.stem
    head, marker, _ = stem.partition(SPEECH_COMMANDS_SPEAKER_SEPARATOR)
    return head if marker and head else stem


def is_audio_file(path: Path) -> bool:
    """True for a visible regular file whose extension libsndfile reads."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def collect_audio(paths: Iterable[str | Path]) -> list[Path]:
    """Audio files among ``paths`` (files, or folders searched recursively), sorted, deduplicated."""
    found: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found += [f for f in sorted(path.rglob("*")) if is_audio_file(f)]
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{p}: no such file or folder")
    return sorted(set(found))


def check_audio_header(path: Path) -> str | None:
    """Why ``path`` cannot be used as audio (missing, empty, unreadable header, no samples), or None.

    Opens only the header: cheap enough to run over a whole corpus before training.
    """
    try:
        size = os.path.getsize(path)
    except OSError as e:
        return f"cannot stat: {e.strerror or e}"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with sf.SoundFile(path) as f:
            frames = f.frames
    except (sf.SoundFileError, RuntimeError, TypeError, OSError) as e:
        return f"unreadable audio ({e})"
    if frames == 0:
        return "contains no samples"
    return None


def scan_clips(clips: Iterable[Clip], *, warn: bool = True) -> tuple[list[Clip], list[tuple[str, str]]]:
    """Split ``clips`` into ``(usable, skipped)`` by a header check of each distinct file.

    ``skipped`` holds ``(path, reason)`` pairs, one per bad file. With ``warn`` (default) a
    single :class:`SkippedFileWarning` names the count and the first few files.
    """
    verdicts: dict[Path, str | None] = {}
    usable, skipped = [], []
    for clip in clips:
        source = clip.source
        if source not in verdicts:
            verdicts[source] = check_audio_header(source)
            if verdicts[source] is not None:
                skipped.append((str(source), verdicts[source]))
        if verdicts[source] is None:
            usable.append(clip)
    if warn and skipped:
        warn_skipped(skipped, "while scanning")
    return usable, skipped


MAX_LISTED_IN_WARNING = 5


def warn_skipped(skipped: list[tuple[str, str]], when: str) -> None:
    """One warning naming how many files were skipped ``when`` and the first few reasons."""
    listed = "; ".join(f"{path}: {reason}" for path, reason in skipped[:MAX_LISTED_IN_WARNING])
    more = f" (and {len(skipped) - MAX_LISTED_IN_WARNING} more)" if len(skipped) > MAX_LISTED_IN_WARNING else ""
    warnings.warn(f"skipped {len(skipped)} unusable audio file(s) {when}: {listed}{more}",
                  SkippedFileWarning, stacklevel=3)
