"""Recording keyword examples from the microphone (``lmustream enroll``), and the voice-activity
trimming it shares with the streaming evaluation.

Voice activity here is energy-based, which is enough for one word said on cue in a room:
10 ms frames whose level is at least half-way (in dB) between the recording's noise floor
(its 10th-percentile frame) and its loudest frame, and at least MIN_DYNAMIC_RANGE_DB above
the floor. The word is the span from the first to the last such frame, ignoring runs
shorter than MIN_SPEECH_SECONDS.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lmustream.audio.io import resample, write_audio
from lmustream.errors import ConfigError
from lmustream.paths import check_folder_writable

VAD_FRAME_SECONDS = 0.01
MIN_DYNAMIC_RANGE_DB = 12.0  # a "word" less than this above the floor is noise
MIN_SPEECH_SECONDS = 0.05  # isolated clicks shorter than this are not speech
CLIP_SECONDS = 1.0  # saved clips are 1 s, as Speech Commands' (longer words are kept whole)
MIN_TAKE_SECONDS = 0.5  # a take shorter than this leaves no room to react to the prompt and say the word
TARGET_RATE = 16000


@dataclass(frozen=True)
class SpeechRegion:
    """Sample indices ``[start, end)`` of the speech in a recording, and its loudness."""

    start: int
    end: int
    peak_db: float
    floor_db: float

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        return self.start / sample_rate, self.end / sample_rate


def frame_levels_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Level (dBFS) of consecutive 10 ms frames."""
    hop = max(1, int(round(sample_rate * VAD_FRAME_SECONDS)))
    n = x.size // hop
    if n == 0:
        return np.zeros(0)
    frames = np.asarray(x[: n * hop], np.float64).reshape(n, hop)
    return 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def speech_region(x: np.ndarray, sample_rate: int) -> SpeechRegion | None:
    """Where the speech is in ``x`` (module docstring), or None when nothing stands out."""
    levels = frame_levels_db(np.asarray(x), sample_rate)
    if levels.size < 3:
        return None
    floor, peak = float(np.percentile(levels, 10)), float(levels.max())
    if peak - floor < MIN_DYNAMIC_RANGE_DB:
        return None
    active = levels >= floor + 0.5 * (peak - floor)
    min_run = max(1, int(round(MIN_SPEECH_SECONDS / VAD_FRAME_SECONDS)))
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = (ends - starts) >= min_run
    if not keep.any():
        keep = (ends - starts) == (ends - starts).max()
    hop = max(1, int(round(sample_rate * VAD_FRAME_SECONDS)))
    return SpeechRegion(int(starts[keep][0] * hop), int(ends[keep][-1] * hop), peak, floor)


def cut_clip(x: np.ndarray, region: SpeechRegion, sample_rate: int, seconds: float = CLIP_SECONDS) -> np.ndarray:
    """A ``seconds`` window of ``x`` centred on the speech (the whole speech if longer), padded
    with the recording's own quietest audio rather than digital silence when ``x`` is short."""
    n = int(round(seconds * sample_rate))
    length = region.end - region.start
    if length >= n:
        return x[region.start:region.end].copy()
    start = region.start - (n - length) // 2
    start = min(max(start, 0), max(x.size - n, 0))
    clip = x[start:start + n]
    if clip.size < n:  # the recording itself is shorter than a clip
        clip = np.concatenate([clip, np.zeros(n - clip.size, x.dtype)])
    return clip.copy()


def next_index(folder: Path, speaker: str) -> int:
    """First free ``n`` for ``<speaker>_nohash_<n>.wav`` in ``folder``."""
    pattern = re.compile(rf"^{re.escape(speaker)}_nohash_(\d+)\.wav$")
    used = [int(m.group(1)) for p in folder.glob("*.wav") if (m := pattern.match(p.name))]
    return max(used, default=-1) + 1


def check_name(value: str, what: str) -> str:
    if not value or not re.fullmatch(r"[A-Za-z0-9_\-']+", value):
        raise ConfigError(f"{what} must be letters, digits, '_', '-' or \"'\", got {value!r}")
    return value


def check_enrollment(word: str, count: int, out_dir: str | Path, speaker: str = "user", seconds: float = 2.0,
                     retries: int = 3) -> Path:
    """The folder :func:`enroll` would save into, once its arguments are known to be usable (ConfigError
    naming the first that is not). Callers run it before opening the microphone: a mistake found
    after the first takes would cost the speaker their recordings."""
    check_name(word, "--word")
    check_name(speaker, "--speaker")
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ConfigError(f"--count must be a whole number >= 1, got {count!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not math.isfinite(seconds) \
            or seconds < MIN_TAKE_SECONDS:
        raise ConfigError(f"--seconds must be a number >= {MIN_TAKE_SECONDS:g}, got {seconds!r}")
    if isinstance(retries, bool) or not isinstance(retries, numbers.Integral) or retries < 0:
        raise ConfigError(f"--retries must be a whole number >= 0, got {retries!r}")
    folder = Path(out_dir) / word
    try:
        return check_folder_writable(folder)  # the folders missing on the way are made
    except OSError as e:
        raise ConfigError(f"--out {str(out_dir)!r}: {e.strerror}") from None


def enroll(microphone, word: str, count: int, out_dir: str | Path, speaker: str = "user",
           seconds: float = 2.0, retries: int = 3, pause: float = 0.5,
           say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)) -> list[Path]:
    """Record ``count`` utterances of ``word`` into ``out_dir/word/<speaker>_nohash_<n>.wav``.

    Each take is ``seconds`` long, after a prompt; it is trimmed to a 1 s clip around the
    speech, resampled to 16 kHz. A take with no speech in it is asked for again (up to
    ``retries`` times per utterance). ``microphone`` is an open
    :class:`lmustream.stream.microphone.Microphone` (or anything with ``sample_rate``,
    ``drain()`` and ``record(seconds)``).
    """
    folder = check_enrollment(word, count, out_dir, speaker=speaker, seconds=seconds, retries=retries)
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    rate = microphone.sample_rate
    while len(saved) < count:
        for attempt in range(retries + 1):
            say(f"[{len(saved) + 1}/{count}] say \"{word}\" now ({seconds:g} s)")
            microphone.drain()
            take = microphone.record(seconds)
            region = speech_region(take, rate)
            if region is not None:
                break
            say(f"  no speech heard{'; again' if attempt < retries else ''}")
        else:
            raise ConfigError(f"no speech heard in {retries + 1} takes of {word!r}: check the input device "
                              f"and its level (`lmustream listen` shows a level meter)")
        clip = cut_clip(take, region, rate)
        clip = resample(clip, rate, TARGET_RATE) if rate != TARGET_RATE else clip
        path = folder / f"{speaker}_nohash_{next_index(folder, speaker)}.wav"
        write_audio(path, clip, TARGET_RATE)
        start, end = region.seconds(rate)
        say(f"  saved {path} (speech {end - start:.2f} s, {region.peak_db - region.floor_db:.0f} dB above "
            f"the floor)")
        saved.append(path)
        time.sleep(pause)
    return saved
