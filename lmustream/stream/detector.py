"""Keyword detection on a stream: per-frame logits -> smoothed posteriors -> events.

The models are trained on one-second clips (98 frames, padded to 128) with the clip's
logit the *mean of the per-frame logits*; the Legendre memory spans theta = 128 frames. So
a stream is scored the way a clip is: at every frame t the detector averages the last
``window`` seconds of per-frame logits (1 s = the training clip), turns the average into
posteriors the way the model was trained to (``posterior``: the sigmoid of each logit for a
model trained with binary cross-entropy, the paper's loss; the softmax over all classes for
cross-entropy, where ``_unknown_`` and ``_silence_`` absorb probability mass), and averages
those posteriors over the last ``smoothing`` seconds::

    avg_t  = mean(logits[t - W + 1 .. t])               W = window / 10 ms
    post_t = sigmoid(avg_t) or softmax(avg_t)
    p_t    = mean(post[t - S + 1 .. t])                 S = smoothing / 10 ms

with the frames before the stream began taken to be the model's logits on silence
(:func:`silence_logits`), so the first frames of a stream do not decide alone.

A keyword k fires at frame t when ``p_t[k] >= threshold[k]``, the trigger is armed (p[k]
went below its threshold since k last fired) and k last fired at least ``refractory``
seconds ago. The event is emitted when p[k] has passed its peak, or ``hold`` seconds after
the crossing (default 0: at once), whichever comes first; its confidence is the highest
posterior up to then. Labels starting with ``_`` are never reported. Keywords are commands: a
keyword that fired is reported once its word has proved to be short speech between pauses
(:class:`CommandGate`: at most ``isolation`` seconds, followed by ``trailing_pause`` seconds of
quiet), and dropped as a word of running speech otherwise.

Times are seconds of the input stream since it started (or since :meth:`Detector.reset`):
frame t covers samples ``[160 t, 160 t + 400)`` at 16 kHz; an event's ``detected_at`` is the
end of the audio the decision needed (frame t plus the model's look-ahead), i.e. the
earliest stream time at which a live detector can report it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from lmustream.arrays import as_numpy
from lmustream.audio.io import (INT16_SCALE, check_resample_ratio, check_sample_dtype, check_sample_rate,
                                refuse_undecoded, validate_samples)
from lmustream.errors import AudioError, ConfigError

DEFAULT_WINDOW_S = 1.0  # the training clip: 98 frames of per-frame logits averaged
DEFAULT_SMOOTHING_S = 0.1
DEFAULT_THRESHOLD = 0.5
DEFAULT_REFRACTORY_S = 1.0
# Emit at the crossing: waiting up to 0.1 s for the peak decided 100 ms later at the same FRR at
# 1 FA/h (docs/detection.md); the wait only made the reported confidence the peak.
DEFAULT_HOLD_S = 0.0
POSTERIORS = ("auto", "sigmoid", "softmax")
DEFAULT_ISOLATION_S = 1.0  # a keyword fits in the model's one-second clip; longer speech is not one
ISOLATION_GAP_S = 0.2  # a pause this long separates a command from the speech before it
# ... and from the speech after it: a keyword is reported once its word is followed by this much quiet
DEFAULT_TRAILING_PAUSE_S = 0.2
MAX_CHANNELS = 64  # a pushed block with more columns is [channels, samples], not [samples, channels]
# Settings in seconds that size buffers (window, smoothing, hold, isolation, trailing_pause): each
# push copies that many frames, so far beyond the one-second clip the detector only slows down.
MAX_SPAN_S = 60.0
MAX_REFRACTORY_S = 3600.0  # only compared with frame counts: an hour between repeats is plenty
# Metadata that ``lmustream calibrate --out`` writes beside the settings (a *.detector.json
# sidecar is that whole file): read and ignored, so a typo among the settings still stands out.
CALIBRATION_KEYS = ("model", "target_fa_per_hour", "negative_hours", "measured_fa_per_hour", "resolution_fa_per_hour",
                    "stream", "frr_at_target")
ISOLATION_LOOKBACK_S = 3.0  # audio examined before a decision to tell a command from running speech
ISOLATION_FLOOR_S = 10.0  # audio whose quietest frames give the noise floor for that
SILENCE_PRIOR_S = 1.0  # digital silence whose logits stand for the audio before a stream began
SPAN_DROP = math.log(4.0)  # without audio levels, a word's frames: per-frame log-posterior within this of its peak


def is_keyword_label(label: str) -> bool:
    """Whether a class is reported as a keyword (``_unknown_``, ``_silence_``... are not)."""
    return not label.startswith("_")


def check_keywords(words: Iterable[str], labels: list[str], what: str = "keyword(s)") -> None:
    """ConfigError unless every word is a keyword of a model with these ``labels``. Classes starting
    with ``_`` are the model's catch-alls (other words, silence): they are labels, so a membership test
    alone would let them through, but they are not words anyone can say to be detected."""
    words = list(words)
    unknown = [w for w in words if w not in labels]
    if unknown:
        raise ConfigError(f"{what} {unknown} not among the model's labels {labels}")
    hidden = [w for w in words if not is_keyword_label(w)]
    if hidden:
        keywords = [label for label in labels if is_keyword_label(label)]
        raise ConfigError(f"{what} {hidden}: labels starting with '_' are not keywords and are never reported; "
                          f"the model's keywords: {', '.join(keywords) or 'none'}")


@dataclass(frozen=True)
class DetectorConfig:
    """Post-processing settings (seconds are converted to 10 ms frames, at least one).

    Fields:
      window: seconds of per-frame logits averaged before the softmax (1.0: the training clip).
      smoothing: seconds of posteriors averaged (moving average; 0.01 = none).
      threshold: default threshold of every keyword, in [0, 1].
      thresholds: per-keyword thresholds overriding ``threshold``.
      refractory: seconds after a keyword fires during which it cannot fire again.
      hold: at most this many seconds between crossing the threshold and the event (the
        event waits for the posterior's peak); at most ``refractory``.
      posterior: "sigmoid" (per class, for models trained with binary cross-entropy),
        "softmax" (over all classes, for cross-entropy) or "auto" (from the model's training
        recipe; softmax when it does not say).
      isolation: keywords are commands: an event is dropped when the speech it ends (loud
        frames with no pause of ISOLATION_GAP_S) has lasted longer than this many seconds,
        i.e. the keyword was a word inside running speech; 0 disables the check. Needs the
        audio (see :class:`CommandGate`).
      trailing_pause: with ``isolation``, an event also waits until its word is followed by this
        many seconds of quiet, and is dropped when the speech goes on past ``isolation`` seconds
        instead (a word at the start of a sentence); 0 decides at the crossing (see
        :class:`CommandGate`).
      one_per_word: a word reports at most one keyword: an event whose span overlaps the span of
        the event reported before it is dropped (two keywords whose posteriors both rise on one
        word, e.g. "up" on the end of "stop"). False reports every keyword.
    """

    window: float = DEFAULT_WINDOW_S
    smoothing: float = DEFAULT_SMOOTHING_S
    threshold: float = DEFAULT_THRESHOLD
    thresholds: Mapping[str, float] = field(default_factory=dict)
    refractory: float = DEFAULT_REFRACTORY_S
    hold: float = DEFAULT_HOLD_S
    posterior: str = "auto"
    isolation: float = DEFAULT_ISOLATION_S
    trailing_pause: float = DEFAULT_TRAILING_PAUSE_S
    one_per_word: bool = True

    def __post_init__(self):
        if self.posterior not in POSTERIORS:
            raise ConfigError(f"detector posterior must be one of {POSTERIORS}, got {self.posterior!r}")
        for name in ("window", "smoothing", "refractory", "hold", "isolation", "trailing_pause"):
            value = getattr(self, name)
            # one rule per setting, stated whole: a window of no logits averages nothing
            low = "> 0" if name == "window" else ">= 0"
            high = MAX_REFRACTORY_S if name == "refractory" else MAX_SPAN_S
            if not _is_real(value) or not math.isfinite(value) or value < 0 or (name == "window" and value == 0):
                raise ConfigError(f"detector {name} must be a number of seconds {low}, got {value!r}")
            if value > high:
                raise ConfigError(f"detector {name} must be at most {high:g} seconds, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.one_per_word, bool):
            raise ConfigError(f"detector one_per_word must be true or false, got {self.one_per_word!r}")
        if self.hold > self.refractory:
            raise ConfigError(f"detector hold ({self.hold} s) must not exceed refractory ({self.refractory} s)")
        _check_threshold("threshold", self.threshold)
        thresholds = dict(self.thresholds or {})
        for word, value in thresholds.items():
            _check_threshold(f"threshold of {word!r}", value)
        object.__setattr__(self, "thresholds", {str(k): float(v) for k, v in thresholds.items()})
        object.__setattr__(self, "threshold", float(self.threshold))

    def threshold_of(self, keyword: str) -> float:
        return self.thresholds.get(keyword, self.threshold)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["thresholds"] = dict(self.thresholds)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DetectorConfig":
        """Settings from a JSON object (a model's ``extra.detector``, a calibration file); the
        calibration's own metadata (CALIBRATION_KEYS) is ignored, any other key raises ConfigError."""
        known = {f.name for f in fields(cls)}
        if not isinstance(data, Mapping):
            raise ConfigError(f"detector settings must be a JSON object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in set(data) - known - set(CALIBRATION_KEYS))
        if unknown:
            raise ConfigError(f"detector settings: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in data.items() if k in known})


def _is_real(value) -> bool:
    """A real number, numpy scalars included, bools not (True is no threshold or duration)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_threshold(name: str, value) -> None:
    if not _is_real(value) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"detector {name} must be a number in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Event:
    """A detection. Unpacks as ``keyword, start, end, confidence``.

    start, end: estimated span of the keyword (seconds of the stream); detected_at: the
    stream time at which the detector decided; confidence: the smoothed posterior's highest
    value up to the event (with the default ``hold`` of 0, its value at the crossing: just
    above the threshold).
    """

    keyword: str
    start: float
    end: float
    confidence: float
    detected_at: float

    def __iter__(self):
        return iter((self.keyword, self.start, self.end, self.confidence))

    def to_dict(self) -> dict:
        return {"keyword": self.keyword, "start": round(self.start, 3), "end": round(self.end, 3),
                "confidence": round(self.confidence, 4), "detected_at": round(self.detected_at, 3)}


@dataclass(frozen=True)
class FrameClock:
    """Frame index <-> stream seconds (16 kHz, 25 ms windows every 10 ms by default)."""

    sample_rate: int = 16000
    hop: int = 160
    window: int = 400
    lookahead: int = 0

    @property
    def frame_seconds(self) -> float:
        return self.hop / self.sample_rate

    def frames(self, seconds: float) -> int:
        """Seconds as a number of frames (at least 1)."""
        return max(1, int(round(seconds / self.frame_seconds)))

    def start(self, frame) -> float:
        return frame * self.hop / self.sample_rate

    def end(self, frame) -> float:
        return (frame * self.hop + self.window) / self.sample_rate

    def decided(self, frame) -> float:
        """When the output of ``frame`` is known: the end of frame + look-ahead."""
        return self.end(frame + self.lookahead)


class MovingAverage:
    """Mean of the last ``window`` rows at every row, state carried across pushes.

    At the very start fewer than ``window`` rows exist: the mean is of those seen, or, given
    ``prior`` (one row), the missing rows are taken to be ``prior``, so that the first few
    rows of a stream weigh no more than any others.
    """

    def __init__(self, window: int, columns: int, prior: np.ndarray | None = None):
        if window < 1:
            raise ConfigError(f"moving-average window must be >= 1 frame, got {window}")
        self.window, self.columns = int(window), int(columns)
        if prior is not None:
            prior = np.asarray(prior, np.float64)
            if prior.shape != (self.columns,) or not np.isfinite(prior).all():
                raise ConfigError(f"moving-average prior must be {self.columns} finite values, got shape "
                                  f"{prior.shape}")
        self.prior = prior
        self.reset()

    def reset(self) -> None:
        self._tail = np.zeros((0, self.columns))
        self.seen = 0

    def push(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.float64).reshape(-1, self.columns)
        n, h = rows.shape[0], self._tail.shape[0]
        if n == 0:
            return rows.copy()
        joined = np.concatenate([self._tail, rows])
        sums = np.concatenate([np.zeros((1, self.columns)), np.cumsum(joined, axis=0)])
        end = np.arange(h + 1, h + n + 1)
        begin = np.maximum(end - self.window, 0)
        count = np.minimum(self.seen + np.arange(1, n + 1), self.window)
        if self.prior is None:
            out = (sums[end] - sums[begin]) / count[:, None]
        else:
            out = (sums[end] - sums[begin] + (self.window - count)[:, None] * self.prior) / self.window
        self._tail = joined[-(self.window - 1):] if self.window > 1 else joined[:0]
        self.seen += n
        return out


class PosteriorSmoother:
    """Per-frame logits ``[n, classes]`` -> smoothed posteriors ``[n, classes]`` (module docstring).

    ``prior_logits``: the logits assumed for the frames before the stream began (see
    :func:`silence_logits`); without it the first window averages only the frames seen.
    """

    def __init__(self, n_classes: int, window_frames: int, smoothing_frames: int, posterior: str = "softmax",
                 prior_logits: np.ndarray | None = None):
        if posterior not in ("sigmoid", "softmax"):
            raise ConfigError(f"posterior must be 'sigmoid' or 'softmax' here, got {posterior!r}")
        self.sigmoid = posterior == "sigmoid"
        self.logits = MovingAverage(window_frames, n_classes, prior_logits)
        self.posteriors = MovingAverage(smoothing_frames, n_classes)

    def reset(self) -> None:
        self.logits.reset()
        self.posteriors.reset()

    def push(self, frame_logits: np.ndarray) -> np.ndarray:
        avg = self.logits.push(frame_logits)
        if self.sigmoid:
            post = 0.5 * (1.0 + np.tanh(0.5 * avg))  # = 1 / (1 + exp(-avg)), without overflow
        else:
            post = np.exp(avg - avg.max(axis=1, keepdims=True))
            post /= post.sum(axis=1, keepdims=True)
        return self.posteriors.push(post)


def posterior_for_loss(recipe_loss: str | None) -> str:
    """The posterior a model's logits are read with: per-class sigmoids after binary cross-entropy
    ("bce"), else (cross-entropy, or not known) the softmax over all classes."""
    return "sigmoid" if recipe_loss == "bce" else "softmax"


def resolve_posterior(config: DetectorConfig, recipe_loss: str | None) -> DetectorConfig:
    """``config`` with posterior "auto" replaced by what the model's training loss implies."""
    if config.posterior != "auto":
        return config
    return replace(config, posterior=posterior_for_loss(recipe_loss))


@dataclass(frozen=True)
class Trigger:
    """One keyword's decision: ``(fire_frame, emit_frame, confidence)``, absolute frame indices."""

    fire: int
    emit: int
    confidence: float


class KeywordTrigger:
    """Threshold + re-arm + refractory + peak hold on one keyword's posterior (module docstring).

    Works on blocks of any size with its state carried over, and jumps from crossing to
    crossing (searchsorted) instead of visiting every frame, so threshold sweeps over hours
    of frames stay fast. The same code serves live detection and offline evaluation.
    """

    def __init__(self, threshold: float, refractory_frames: int, hold_frames: int = 0):
        if hold_frames > refractory_frames:
            raise ConfigError(f"hold ({hold_frames} frames) must not exceed refractory ({refractory_frames})")
        self.threshold = float(threshold)
        self.refractory = int(refractory_frames)
        self.hold = int(hold_frames)
        self.reset()

    def reset(self) -> None:
        self.offset = 0  # absolute index of the next frame pushed
        self.armed = True
        self.last_fire: int | None = None
        self._pending: tuple[int, float, float] | None = None  # (fire frame, best p, last p)

    def push(self, p: np.ndarray) -> list[Trigger]:
        p = np.asarray(p, np.float64).ravel()
        n, o = p.size, self.offset
        out: list[Trigger] = []
        if self._pending is None and self.armed and (n == 0 or p.max() < self.threshold):
            self.offset += n  # the usual live case: nothing near the threshold
            return out
        above = np.flatnonzero(p >= self.threshold)
        below = np.flatnonzero(p < self.threshold)
        i = 0
        while i < n:
            if self._pending is not None:
                i = self._advance_pending(p, i, out)
                continue
            if not self.armed:
                k = np.searchsorted(below, i)
                if k == below.size:
                    break
                i = int(below[k]) + 1
                self.armed = True
                continue
            earliest = i if self.last_fire is None else max(i, self.last_fire + self.refractory - o)
            k = np.searchsorted(above, earliest)
            if k == above.size:
                break
            j = int(above[k])
            self.last_fire, self.armed = o + j, False
            self._pending = (o + j, float(p[j]), float(p[j]))
            i = j + 1
            if self.hold == 0:
                self._emit(o + j, out)
            # re-arming is found from the frame after the crossing on the next loop turn
        self.offset += n
        return out

    def _advance_pending(self, p: np.ndarray, i: int, out: list) -> int:
        """Follow a crossing towards its peak; returns the next frame to look at."""
        fire, best, last = self._pending
        o = self.offset
        while i < p.size:
            value = float(p[i])
            if value < last or o + i - fire >= self.hold:
                self._pending = (fire, max(best, value), value)
                self._emit(o + i, out)
                if value < self.threshold:
                    self.armed = True
                return i + 1
            best, last = max(best, value), value  # still rising, so still above the threshold
            i += 1
        self._pending = (fire, best, last)
        return i

    def finish(self) -> list[Trigger]:
        """The stream has ended: a crossing still waiting for its peak or its hold is emitted at
        the last frame, since no later frame can come to end the wait."""
        out: list[Trigger] = []
        if self._pending is not None:
            self._emit(self.offset - 1, out)
        return out

    def _emit(self, frame: int, out: list) -> None:
        fire, best, _ = self._pending
        out.append(Trigger(fire, frame, best))
        self._pending = None


class SpanHistory:
    """The last seconds of per-frame log-posteriors and audio levels, to tell where an event's word was.

    An event's span is the speech in the frames its decision used: the run of loud frames
    (see :func:`speech_run`) that the keyword's per-frame evidence points at. Without audio
    levels (logits fed directly), or when nothing in those frames stands out from the floor,
    it is the run of frames around the keyword's per-frame evidence peak (:func:`evidence_run`).
    """

    def __init__(self, n_classes: int, frames: int):
        self.frames = int(frames)
        self.n_classes = n_classes
        self.reset()

    def reset(self) -> None:
        self._rows = np.zeros((0, self.n_classes), np.float32)
        self.offset = 0  # absolute frame index of self._rows[0]
        self._levels = np.zeros(0, np.float32)
        self.level_offset = 0  # absolute frame index of self._levels[0]

    def push(self, frame_logits: np.ndarray) -> None:
        """Append a block (kept whole until :meth:`trim`, so events anywhere in it find their frames)."""
        log_post = frame_logits - _logsumexp(frame_logits)
        self._rows = np.concatenate([self._rows, log_post.astype(np.float32)])

    def push_levels(self, levels_db: np.ndarray) -> None:
        """Append the levels (dB) of the next frames of audio (they run ahead of the logits)."""
        self._levels = np.concatenate([self._levels, np.asarray(levels_db, np.float32)])

    def trim(self) -> None:
        """Keep only the last ``frames`` rows (and the levels from the same frame on)."""
        drop = max(0, self._rows.shape[0] - self.frames)
        self._rows = self._rows[drop:]
        self.offset += drop
        drop = max(0, min(self.offset - self.level_offset, self._levels.size))
        self._levels = self._levels[drop:]
        self.level_offset += drop

    @property
    def level_count(self) -> int:
        return int(self._levels.size)

    def levels(self, first: int, last: int) -> np.ndarray | None:
        """The levels of frames ``[first, last]`` (clipped to those kept), None when there are none."""
        a, b = max(first - self.level_offset, 0), min(last - self.level_offset, self._levels.size - 1)
        return self._levels[a:b + 1] if b >= a else None

    def span(self, cls: int, first: int, last: int, last_logits: int | None = None) -> tuple[int, int]:
        """Frames ``(start, end)`` of class ``cls``'s word within frames ``[first, last]``, its evidence
        read up to frame ``last_logits`` (default ``last``)."""
        last_logits = last if last_logits is None else min(last, last_logits)
        a, b = max(first - self.offset, 0), min(last_logits - self.offset, self._rows.shape[0] - 1)
        if b < a:
            return first, last
        start, end = (x + self.offset + a for x in evidence_run(self._rows[a:b + 1, cls]))
        peak = self.offset + a + int(np.argmax(self._rows[a:b + 1, cls]))
        la, lb = max(first - self.level_offset, 0), min(last - self.level_offset, self._levels.size - 1)
        if lb - la >= 2:
            run = speech_run(self._levels[la:lb + 1], peak - self.level_offset - la)
            if run is not None:
                return run[0] + self.level_offset + la, run[1] + self.level_offset + la
        return start, end


def frame_levels(samples: np.ndarray, hop: int = 160, window: int = 400) -> np.ndarray:
    """Level (dB) of each complete frame ``[hop t, hop t + window)`` of ``samples``."""
    n = 0 if samples.size < window else 1 + (samples.size - window) // hop
    if n == 0:
        return np.zeros(0, np.float32)
    power = np.concatenate([[0.0], np.cumsum(np.square(samples, dtype=np.float64))])
    starts = np.arange(n) * hop
    mean_square = (power[starts + window] - power[starts]) / window
    return (10.0 * np.log10(mean_square + 1e-12)).astype(np.float32)


class LevelMeter:
    """:func:`frame_levels` of a stream pushed in blocks of any size."""

    def __init__(self, hop: int = 160, window: int = 400):
        self.hop, self.window = hop, window
        self.reset()

    def reset(self) -> None:
        self._tail = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        signal = np.concatenate([self._tail, np.asarray(samples, np.float32)])
        levels = frame_levels(signal, self.hop, self.window)
        self._tail = signal[levels.size * self.hop:]
        return levels


SPEECH_GAP_FRAMES = 12  # pauses shorter than 120 ms (a stop consonant's closure) stay inside a word
MIN_SPEECH_RANGE_DB = 12.0
NO_SIGNAL_DB = -90.0  # below this a frame is digital silence (before an input starts delivering audio)


def noise_floor(levels_db: np.ndarray) -> float:
    """The 10th-percentile level, leaving out the digital silence before the signal's first frame:
    the zeros an audio device delivers before a recording starts must not make the recording's
    background noise look like speech."""
    x = np.asarray(levels_db, np.float64)
    live = np.flatnonzero(x > NO_SIGNAL_DB)
    return float(np.percentile(x[live[0]:] if live.size else x, 10))


def speech_run(levels_db: np.ndarray, anchor: int) -> tuple[int, int] | None:
    """The run of loud frames that a keyword's evidence at frame ``anchor`` points at.

    Loud: at least half-way (in dB) from the 10th-percentile level to the peak; pauses
    shorter than SPEECH_GAP_FRAMES are bridged. The run is the last one starting at or before
    ``anchor`` (a keyword's evidence comes during or after it), else the first. None when
    nothing stands out by MIN_SPEECH_RANGE_DB.
    """
    x = np.asarray(levels_db, np.float64)
    floor, peak = float(np.percentile(x, 10)), float(x.max())
    if peak - floor < MIN_SPEECH_RANGE_DB:
        return None
    loud = x >= floor + 0.5 * (peak - floor)
    edges = np.diff(np.concatenate([[0], loud.astype(np.int8), [0]]))
    starts, ends = list(np.flatnonzero(edges == 1)), list(np.flatnonzero(edges == -1) - 1)
    runs = []
    for a, b in zip(starts, ends):
        if runs and a - runs[-1][1] - 1 < SPEECH_GAP_FRAMES:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    before = [r for r in runs if r[0] <= anchor]
    return tuple(int(v) for v in (before[-1] if before else runs[0]))


def last_speech(levels_db: np.ndarray, gap_frames: int, lookback_frames: int) -> tuple[int, int] | None:
    """``(length, quiet)`` of the speech that ends ``levels_db`` (the levels of the frames up to a
    decision, ISOLATION_FLOOR_S of them for the noise floor): in the last ``lookback_frames``,
    the loud frames from the last one back to the previous pause of at least ``gap_frames``
    span ``length`` frames, and ``quiet`` frames follow them. Loud: at least half-way (in dB)
    from the floor (10th percentile of all the levels given) to the look-back's peak. None
    when nothing stands out (there is no running speech to confuse); ``length`` is None when
    the speech runs back past the start of the look-back."""
    history = np.asarray(levels_db, np.float64)
    if history.size == 0:
        return None
    x = history[-lookback_frames:]
    floor, peak = noise_floor(history), float(x.max())
    if peak - floor < MIN_SPEECH_RANGE_DB:
        return None
    loud = np.flatnonzero(x >= floor + 0.5 * (peak - floor))
    gaps = np.flatnonzero(np.diff(loud) > gap_frames)  # pauses between loud frames
    start = loud[gaps[-1] + 1] if gaps.size else loud[0]
    quiet = int(x.size - 1 - loud[-1])
    if not gaps.size and loud[0] < gap_frames:
        return None, quiet
    return int(loud[-1] - start + 1), quiet


def is_isolated(levels_db: np.ndarray, limit_frames: int, gap_frames: int, lookback_frames: int) -> bool:
    """Whether the speech that ends ``levels_db`` (see :func:`last_speech`) is short enough to be a
    command: at most ``limit_frames`` since the previous pause. When nothing stands out, it passes."""
    speech = last_speech(levels_db, gap_frames, lookback_frames)
    return speech is None or (speech[0] is not None and speech[0] <= limit_frames)


COMMAND, RUNNING_SPEECH, WAIT = "command", "running speech", "wait"


@dataclass(frozen=True)
class CommandGate:
    """Keywords are commands (DetectorConfig.isolation, .trailing_pause), decided frame by frame
    after a keyword fires: :meth:`state` on the levels up to frame d says whether the word is
    a command (its speech, since a pause, is at most ``limit`` frames long and, with
    ``trailing`` > 0, has been followed by ``trailing`` quiet frames), running speech (longer:
    drop it) or not known yet (wait for the next frame). A keyword still waiting ``max_wait``
    frames after it fired is dropped. :meth:`of` takes the settings in seconds."""

    limit: int
    trailing: int
    gap: int
    lookback: int
    floor: int

    @classmethod
    def of(cls, config: "DetectorConfig", clock: "FrameClock") -> "CommandGate":
        off_at_0 = lambda s: int(round(s / clock.frame_seconds))  # noqa: E731  (clock.frames is at least 1)
        return cls(off_at_0(config.isolation), off_at_0(config.trailing_pause), clock.frames(ISOLATION_GAP_S),
                   clock.frames(ISOLATION_LOOKBACK_S), clock.frames(ISOLATION_FLOOR_S))

    @property
    def active(self) -> bool:
        return self.limit > 0

    @property
    def max_wait(self) -> int:
        return self.limit + self.trailing

    def state(self, levels_db: np.ndarray | None) -> str:
        """The word's state at the last of ``levels_db`` (the ``floor`` frames up to it)."""
        if not self.active or levels_db is None:
            return COMMAND
        speech = last_speech(levels_db, self.gap, self.lookback)
        if speech is None:
            return COMMAND
        length, quiet = speech
        if length is None or length > self.limit:
            return RUNNING_SPEECH
        return COMMAND if quiet >= self.trailing else WAIT

    def judge(self, levels_at: Callable[[int], np.ndarray | None], first: int, frame: int, heard: int,
              final: bool) -> tuple[str, int]:
        """A keyword first examined at frame ``first``, judged frame by frame from ``frame`` on, up to
        ``heard``, the last frame whose level is known (``levels_at(d)``: the levels of the ``floor``
        frames up to frame d). Returns COMMAND or RUNNING_SPEECH with the frame it was decided at,
        or WAIT with the next frame to examine. A keyword still waiting ``max_wait`` frames after
        ``first`` is dropped; at the stream's end (``final``) the end of the audio ends the speech."""
        deadline = first + self.max_wait
        while frame <= min(heard, deadline):
            state = self.state(levels_at(frame))
            if state != WAIT:
                return state, frame
            frame += 1
        if final and heard <= deadline:
            ended = self.state(levels_at(heard))
            return (RUNNING_SPEECH if ended == RUNNING_SPEECH else COMMAND), max(first, heard)
        return (RUNNING_SPEECH, deadline) if frame > deadline else (WAIT, frame)

    def decide(self, levels_db: np.ndarray, first: int) -> int | None:
        """On the levels of a whole stream: the frame at which a keyword first examined at frame
        ``first`` is confirmed as a command, None when it is dropped (:meth:`judge` at the
        stream's end, as :meth:`Detector.flush` judges)."""
        state, frame = self.judge(lambda d: levels_db[max(0, d - self.floor + 1):d + 1], first, first,
                                  levels_db.size - 1, final=True)
        return frame if state == COMMAND else None


def evidence_run(log_post: np.ndarray) -> tuple[int, int]:
    """Indices ``(start, end)`` of the contiguous run around the peak of a (3-frame smoothed)
    per-frame log-posterior that stays within SPAN_DROP of that peak."""
    x = np.asarray(log_post, np.float64)
    if x.size >= 3:
        x = np.convolve(np.pad(x, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    peak = int(np.argmax(x))
    inside = x >= x[peak] - SPAN_DROP
    start = peak
    while start > 0 and inside[start - 1]:
        start -= 1
    end = peak
    while end < x.size - 1 and inside[end + 1]:
        end += 1
    return start, end


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def load_thresholds(source: str | Path | Mapping | float | None) -> tuple[float | None, dict[str, float]]:
    """``(default, per_keyword)`` from a number, a ``{keyword: threshold}`` mapping, a
    ``word=0.7,other=0.8`` string, or a calibration JSON file (``lmustream calibrate --out``)."""
    if source is None:
        return None, {}
    if _is_real(source):
        _check_threshold("threshold", source)
        return float(source), {}
    if isinstance(source, (bool, np.bool_)):
        raise ConfigError(f"detector threshold must be a number in [0, 1], got {source!r}")
    if isinstance(source, Mapping):
        for word, value in source.items():
            _check_threshold(f"threshold of {word!r}", value)
        return None, {str(k): float(v) for k, v in source.items()}
    text = str(source)
    found = _thresholds_file(source)
    if found is not None:
        return _thresholds_in(text, found)
    try:
        return float(text), {}
    except ValueError:
        pass
    per = {}
    for item in text.split(","):
        word, sep, value = item.partition("=")
        try:
            per[word.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not word.strip():
            raise ConfigError(f"thresholds {text!r}: expected a number, word=value pairs or a JSON file")
    return None, per


def _thresholds_file(source) -> Mapping | None:
    """The JSON object of the thresholds file ``source`` names, or None when it names no file."""
    if source is None or isinstance(source, (Mapping, bool, np.bool_)) or _is_real(source):
        return None
    text = str(source)
    path = Path(text)
    if not (path.suffix == ".json" or path.is_file()):
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"thresholds file {text!r}: {e}") from e
    if not isinstance(data, Mapping):
        raise ConfigError(f"thresholds file {text!r}: expected a JSON object")
    return data


def _thresholds_in(text: str, data: Mapping) -> tuple[float | None, dict[str, float]]:
    """:func:`load_thresholds` of a thresholds file's JSON object ``data`` (``text``: its name)."""
    per = data.get("thresholds", data)
    default = data.get("threshold")
    if not isinstance(per, Mapping) or not all(_is_real(v) for v in per.values()) \
            or not (default is None or _is_real(default)):
        raise ConfigError(f"thresholds file {text!r}: expected {{'thresholds': {{keyword: number}}}}")
    return (None if default is None else float(default)), {str(k): float(v) for k, v in per.items()}


def calibration_settings(source) -> DetectorConfig | None:
    """The whole calibration when ``source`` names a calibration file (``lmustream calibrate --out``: a
    JSON object with ``thresholds`` and the settings they were measured with), else None.

    Its thresholds hold only with those settings (a longer window or a smoothing change moves every
    posterior), so they come with it rather than meeting the model's or the defaults."""
    data = _thresholds_file(source)
    if data is None:
        return None
    _thresholds_in(str(source), data)  # the file's errors, worded for a thresholds file
    if not isinstance(data.get("thresholds"), Mapping) or not set(data) & set(SETTINGS):
        return None  # thresholds alone: they join the model's settings
    try:
        return DetectorConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"thresholds file {str(source)!r}: {e}") from e


# The settings given one by one (Detector's arguments, the command line's options); threshold and
# thresholds come together through load_thresholds.
SETTINGS = tuple(f.name for f in fields(DetectorConfig) if f.name not in ("threshold", "thresholds"))


def override_config(base: DetectorConfig, threshold=None, **settings) -> DetectorConfig:
    """``base`` with the settings that are not None, and ``threshold`` (see :func:`load_thresholds`: a
    single number replaces every keyword's threshold, per-keyword ones are merged in). A shorter
    refractory period shortens the hold with it, unless a hold is given."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"unknown detector setting(s) {unknown}; known: {', '.join(SETTINGS)}")
    default, per = load_thresholds(threshold)
    updates = {k: v for k, v in settings.items() if v is not None}
    if default is not None:
        updates["threshold"] = default
        updates["thresholds"] = {}  # a single number overrides the calibration of every keyword
    if per:
        updates["thresholds"] = {**dict(updates.get("thresholds", base.thresholds)), **per}
    if "refractory" in updates and "hold" not in updates:
        updates["hold"] = min(base.hold, updates["refractory"])
    return replace(base, **updates)


class Detector:
    """Keyword events from audio blocks of any size and sample rate.

    Args:
      model: model file, shipped model name (``"sc12-lmuformer"``), a ModelArtifact, or an
        already opened kernel (anything with ``labels``, ``lookahead`` and ``open()``).
      keywords: labels to report (default: every label not starting with ``_``).
      threshold: a number for every keyword, ``{keyword: threshold}``, or a calibration JSON
        file; unspecified keywords take the model's calibrated default (its ``extra.detector``)
        or DEFAULT_THRESHOLD. A calibration file (``lmustream calibrate --out``) brings the settings
        its thresholds were measured with (window, smoothing, ...) in place of the model's; the
        arguments below still override them.
      smoothing, window, refractory, hold, isolation, trailing_pause: seconds, see :class:`DetectorConfig` (None:
        the model's calibrated value, else the default); posterior: "sigmoid", "softmax" or "auto";
        one_per_word: False reports every keyword that fires on a word (default True: the first).
      config: a whole :class:`DetectorConfig` to start from instead of the model's calibration; the
        arguments above still override its fields.
      sample_rate: rate of the audio that will be pushed; other rates than the model's are
        resampled as the audio arrives (soxr, band-limited). Without it, the rate given to the
        first ``push`` (else the model's) is the stream's; with it, a push at another rate is an error.
      channels: the channel count of 2-D ``[samples, channels]`` blocks (averaged to mono). Without
        it, a block with no more samples than channels (e.g. ``[2, 40]``) could be ``[channels,
        samples]`` and is refused until a longer block has shown the stream's channel count.
      backend: "auto" (C++ kernel when built, else PyTorch), "kernel" or "torch".
      int8: run the C++ kernel with int8 weights (about 3x less time per frame; needs the kernel).
      on_event: a callback called with each :class:`Event` (more with :meth:`add_callback`).

    ``push(samples)`` returns the events the samples complete; ``flush()`` ends the stream;
    ``detect(blocks)`` iterates over the events of an iterable of blocks; ``reset()`` starts a
    new stream (times restart at 0).
    """

    def __init__(self, model, keywords: Iterable[str] | None = None, threshold=None,
                 smoothing: float | None = None, refractory: float | None = None, *,
                 window: float | None = None, hold: float | None = None, posterior: str | None = None,
                 isolation: float | None = None, trailing_pause: float | None = None,
                 one_per_word: bool | None = None, config: DetectorConfig | None = None, sample_rate: int | None = None,
                 channels: int | None = None, backend: str = "auto", int8: bool = False,
                 on_event: Callable[[Event], Any] | None = None):
        from lmustream.stream.backend import (backend_of, check_model_spec, kernel_training_loss,
                                              model_detector_defaults, model_training_loss, open_kernel)

        # all before the model is loaded
        check_model_spec(model, "Detector", kernel_ok=True)
        if config is not None and not isinstance(config, DetectorConfig):
            raise ConfigError(f"Detector config must be a DetectorConfig, got {type(config).__name__}")
        if on_event is not None and not callable(on_event):
            raise ConfigError(f"Detector on_event must be callable, got {type(on_event).__name__}")
        if channels is not None and (not isinstance(channels, (int, np.integer)) or isinstance(channels, bool)
                                     or not 1 <= channels <= MAX_CHANNELS):
            raise ConfigError(f"Detector channels must be an integer in [1, {MAX_CHANNELS}], got {channels!r}")
        self.channels = None if channels is None else int(channels)
        if hasattr(model, "open") and hasattr(model, "labels"):  # an opened kernel
            self.kernel, defaults, loss = model, {}, kernel_training_loss(model)
        else:
            defaults, loss = model_detector_defaults(model), model_training_loss(model)
            self.kernel = open_kernel(model, backend, int8=int8)
        self.backend, self.backend_note = backend_of(self.kernel)
        self.labels = list(self.kernel.labels)
        calibration = calibration_settings(threshold) if config is None else None
        if calibration is not None:
            base, threshold = calibration, None  # a calibration file's settings replace the model's
        else:
            base = config if config is not None else DetectorConfig.from_dict(defaults) if defaults else DetectorConfig()
        self.config = resolve_posterior(override_config(
            base, threshold, smoothing=smoothing, refractory=refractory, window=window, hold=hold,
            posterior=posterior, isolation=isolation, trailing_pause=trailing_pause, one_per_word=one_per_word), loss)
        self.keywords = self._pick_keywords(keywords)
        self.model_rate = int(getattr(self.kernel, "sample_rate", 16000))
        frontend = getattr(self.kernel, "frontend", None)  # the frame geometry: 25 ms every 10 ms unless told
        if frontend is not None:
            hop, win = frontend.hop_length, frontend.window_length
        else:
            hop, win = getattr(self.kernel, "hop_length", self.model_rate // 100), self.model_rate * 25 // 1000
        self.clock = FrameClock(self.model_rate, hop, win, int(self.kernel.lookahead))
        self._rate_stated = sample_rate is not None
        self.sample_rate = self.model_rate if sample_rate is None else check_sample_rate(sample_rate, "Detector")
        check_resample_ratio(self.sample_rate, self.model_rate, "Detector")
        self._callbacks: list[Callable[[Event], Any]] = [on_event] if on_event else []
        c, clock = self.config, self.clock
        self._window_frames, self._smoothing_frames = clock.frames(c.window), clock.frames(c.smoothing)
        self._stream = self.kernel.open()
        self.prior_logits = silence_logits(self._stream, self.model_rate)
        self._smoother = PosteriorSmoother(len(self.labels), self._window_frames, self._smoothing_frames,
                                           c.posterior, self.prior_logits)
        self._classes = [self.labels.index(k) for k in self.keywords]
        self._triggers = [KeywordTrigger(c.threshold_of(k), clock.frames(c.refractory),
                                         int(round(c.hold / clock.frame_seconds))) for k in self.keywords]
        self._gate = CommandGate.of(c, clock)
        self._history = SpanHistory(len(self.labels), max(  # what an event's span and the gate look back on
            self._window_frames + self._smoothing_frames + clock.frames(c.hold) + clock.lookahead
            + self._gate.max_wait + 2,
            clock.frames(ISOLATION_FLOOR_S) + clock.lookahead + 2))
        self._levels = LevelMeter(hop, win)
        self._resampler = None
        self.reset()

    # -- configuration ---------------------------------------------------------------------
    def _pick_keywords(self, keywords) -> list[str]:
        if keywords is None:
            picked = [label for label in self.labels if is_keyword_label(label)]
        else:
            picked = [keywords] if isinstance(keywords, str) else list(keywords)
            check_keywords(picked, self.labels)
            picked = list(dict.fromkeys(picked))  # a word named twice would report each event twice
        if not picked:
            raise ConfigError(f"no keywords to detect among the model's labels {self.labels}")
        stray = sorted(set(self.config.thresholds) - set(self.labels))
        if stray:
            raise ConfigError(f"thresholds given for {stray}, which are not among the model's labels {self.labels}")
        return picked

    @property
    def thresholds(self) -> dict[str, float]:
        return {k: self.config.threshold_of(k) for k in self.keywords}

    def add_callback(self, callback: Callable[[Event], Any]) -> None:
        if not callable(callback):  # else the first event, maybe hours later, would raise TypeError
            raise ConfigError(f"Detector callback must be callable, got {type(callback).__name__}")
        self._callbacks.append(callback)

    # -- the stream ------------------------------------------------------------------------
    def reset(self) -> None:
        """A new stream: model state, smoothing, triggers, resampler and clock start over."""
        self._stream.reset()
        self._smoother.reset()
        self._history.reset()
        self._levels.reset()
        for trigger in self._triggers:
            trigger.reset()
        self._resampler = None
        self._input_rate: int | None = None
        self._stream_channels: int | None = None  # shown by this stream's first unambiguous 2-D block
        self.frames = 0  # frames scored so far
        self.samples_in = 0  # input samples pushed (at their own rate)
        self.last_posteriors = np.zeros(len(self.keywords))  # smoothed p of each keyword, last frame
        self._last_span: tuple[float, float] | None = None  # (start, end) of the last event reported
        # keywords fired and not yet judged: (keyword, class, trigger, first frame judged at, next frame)
        self._waiting: list[tuple[str, int, Trigger, int, int]] = []

    @property
    def time(self) -> float:
        """Seconds of input pushed since the stream started."""
        return self.samples_in / (self._input_rate or self.sample_rate)

    def push(self, samples, sample_rate: int | None = None) -> list[Event]:
        """Feed a block: 1-D mono or ``[n, channels]`` (averaged), float in [-1, 1] or int16.

        ``sample_rate``: the block's rate; the first push's sets the stream's (when the detector
        was given none), a different one later (or one contradicting the detector's
        ``sample_rate``) raises AudioError.
        """
        rate = self.sample_rate if sample_rate is None else check_sample_rate(sample_rate, "Detector.push")
        x = self._mono(samples)
        if self._input_rate is None:
            if rate != self.sample_rate:
                if self._rate_stated:
                    raise AudioError(f"Detector.push: samples at {rate} Hz, but the detector was made for "
                                     f"sample_rate={self.sample_rate} Hz")
                check_resample_ratio(rate, self.model_rate, "Detector.push")
            self._input_rate = rate
            if rate != self.model_rate:
                import soxr

                self._resampler = soxr.ResampleStream(rate, self.model_rate, 1, dtype="float32", quality="HQ")
        elif rate != self._input_rate:
            raise AudioError(f"Detector.push: sample rate changed from {self._input_rate} to {rate} Hz "
                             "mid-stream; call reset() first")
        self.samples_in += x.size
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        self._history.push_levels(self._levels.push(x))
        return self.process_logits(self._stream.push(x))

    def flush(self) -> list[Event]:
        """End of the stream: the resampler's and the model's last frames, then a reset."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self._history.push_levels(self._levels.push(tail))
            events = self.process_logits(self._stream.push(tail))
        else:
            events = []
        events += self.process_logits(self._stream.flush())
        for keyword, cls, trigger in zip(self.keywords, self._classes, self._triggers):
            self._wait_for(keyword, cls, trigger.finish())  # the stream's end ends a hold, too
        events += self._report(self._judge_waiting(final=True))  # the stream's end ends the speech
        self.reset()
        return events

    def detect(self, blocks: Iterable, sample_rate: int | None = None) -> Iterator[Event]:
        """Events of a whole stream given as an iterable of blocks (or ``(block, rate)`` pairs)."""
        for block in blocks:
            if isinstance(block, tuple):
                yield from self.push(*block)
            else:
                yield from self.push(block, sample_rate)
        yield from self.flush()

    def process_logits(self, frame_logits: np.ndarray, levels_db: np.ndarray | None = None) -> list[Event]:
        """Advance on per-frame logits ``[n, classes]`` already computed (e.g. by a kernel
        stream); returns the events they complete. ``levels_db``: the audio level of the same
        frames (:func:`frame_levels`), for the events' spans, when the audio is not pushed.
        Raises AudioError for logits of another shape, of no real dtype, or not finite (the
        detector's state is unchanged then)."""
        frame_logits = self._check_logits(frame_logits)
        if levels_db is not None:
            self._history.push_levels(levels_db)
        if frame_logits.shape[0] == 0:
            return []
        posteriors = self._smoother.push(frame_logits)
        self._history.push(frame_logits)
        self.frames += frame_logits.shape[0]
        self.last_posteriors = posteriors[-1, self._classes]
        for keyword, cls, trigger in zip(self.keywords, self._classes, self._triggers):
            self._wait_for(keyword, cls, trigger.push(posteriors[:, cls]))
        events = self._judge_waiting(final=False)
        self._history.trim()
        return self._report(events)

    def _wait_for(self, keyword: str, cls: int, hits: list[Trigger]) -> None:
        for hit in hits:
            first = hit.emit + self.clock.lookahead  # the decision's last frame of audio
            self._waiting.append((keyword, cls, hit, first, first))

    def _check_logits(self, frame_logits) -> np.ndarray:
        """``frame_logits`` as float32 ``[n, classes]``, or AudioError: a reshape would read a
        transposed or wrong-width array as other frames, and one NaN or Inf row would poison
        the moving average for every frame after it."""
        name = "Detector.process_logits"
        x = frame_logits if isinstance(frame_logits, np.ndarray) else as_numpy(frame_logits)
        if x.dtype.kind not in "fiu":
            raise AudioError(f"{name}: logits must be real numbers, got dtype {x.dtype}")
        if x.ndim == 1 and x.size == 0:  # what a stream with nothing to say may return
            return np.zeros((0, len(self.labels)), np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.labels):
            raise AudioError(f"{name}: expected logits [frames, {len(self.labels)}] (one column per label of "
                             f"the model), got shape {list(x.shape)}")
        x = x.astype(np.float32, copy=False)
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            raise AudioError(f"{name}: non-finite logit (NaN or Inf) at frame {self.frames + row} "
                             f"(row {row} of this block)")
        return x

    def _mono(self, samples) -> np.ndarray:
        """A pushed block as contiguous float32 mono: 2-D blocks obey the dtype rules of 1-D ones
        (int16 scaled, float kept, anything else refused) before their channels are averaged."""
        name = "Detector.push samples"
        if isinstance(samples, np.ndarray) and samples.ndim == 1:  # the usual live block
            return np.ascontiguousarray(validate_samples(samples, name))
        refuse_undecoded(samples, name)
        x = as_numpy(samples)
        if x.ndim == 2:
            x = self._downmix(x, name)
        return np.ascontiguousarray(validate_samples(x, name))

    def _downmix(self, x: np.ndarray, name: str) -> np.ndarray:
        rows, cols = x.shape
        if cols == 0:
            raise AudioError(f"{name}: shape {x.shape} has no channels")
        if cols > MAX_CHANNELS:
            raise AudioError(f"{name}: expected [samples, channels], got shape {x.shape} "
                             f"({cols} channels?); pass the transpose for [channels, samples] audio")
        known = self.channels or self._stream_channels
        if known is not None:
            if cols != known:
                source = "Detector(channels=...)" if self.channels else "this stream's earlier blocks; reset() first"
                flipped = "; [channels, samples]? pass the transpose" if rows == known else ""
                raise AudioError(f"{name}: expected [samples, {known}] blocks ({known} channel(s), from {source}), "
                                 f"got shape {x.shape}{flipped}")
        elif cols > 1 and rows <= cols:
            if rows == 0:
                return np.zeros(0, np.float32)
            raise AudioError(f"{name}: shape {x.shape} is ambiguous: {rows} sample(s) of {cols} channels, or "
                             f"[channels, samples]; state the layout with Detector(channels=...), or pass "
                             "[samples, channels] blocks longer than their channel count first")
        else:
            self._stream_channels = cols
        if x.dtype == np.int16:
            x = x.astype(np.float32) * INT16_SCALE
        else:
            check_sample_dtype(x.dtype, name)
        return x.mean(axis=1) if cols > 1 else x[:, 0]

    def _report(self, events: list[Event]) -> list[Event]:
        events.sort(key=lambda e: e.detected_at)
        if self.config.one_per_word:
            events = self._one_per_word(events)
        for event in events:
            for callback in self._callbacks:
                callback(event)
        return events

    def _judge_waiting(self, final: bool) -> list[Event]:
        """The keywords that have fired, judged as commands (:meth:`CommandGate.judge`) on the audio
        heard so far; those still undecided wait for more audio, unless the stream has ended."""
        gate, history, events, waiting = self._gate, self._history, [], []
        heard = history.level_offset + history.level_count - 1  # the last frame whose level is known
        # in the order the keywords fired: of two decided at once (on one word's trailing pause), the
        # first to fire is the one one_per_word keeps, whichever keyword or block it fired in
        for keyword, cls, hit, first, frame in sorted(self._waiting, key=lambda w: w[2].fire):
            if not gate.active or heard < 0:
                events.append(self._event(keyword, cls, hit, first))  # no check, or no audio to check with
                continue
            state, frame = gate.judge(lambda d: history.levels(d - gate.floor + 1, d), first, frame, heard, final)
            if state == COMMAND:
                events.append(self._event(keyword, cls, hit, frame))
            elif state == WAIT:
                waiting.append((keyword, cls, hit, first, frame))
        self._waiting = waiting
        return events

    def _one_per_word(self, events: list[Event]) -> list[Event]:
        """``events`` without those on the word of the event reported before them (DetectorConfig.one_per_word)."""
        kept = []
        for event in events:
            if self._last_span is not None:
                start, end = self._last_span
                if min(end, event.end) > max(start, event.start):
                    continue
            kept.append(event)
            self._last_span = (event.start, event.end)
        return kept

    def _event(self, keyword: str, cls: int, hit: Trigger, decided: int) -> Event:
        """The event of a trigger reported at frame ``decided`` (the last frame of audio it used)."""
        first = hit.fire - self._smoothing_frames - self._window_frames + 2
        # at frame ``decided`` a live stream has the logits of the frames up to decided - lookahead only;
        # later ones, present when a large block was pushed, would make the span depend on the block size
        start, end = self._history.span(cls, first, decided, decided - self.clock.lookahead)
        return Event(keyword, self.clock.start(start), self.clock.end(end), hit.confidence, self.clock.end(decided))


def silence_logits(stream, sample_rate: int, seconds: float = SILENCE_PRIOR_S) -> np.ndarray | None:
    """The mean per-frame logits of a fresh model stream on ``seconds`` of digital silence
    (the stream is reset afterwards); None for a stream that takes no audio.

    The detector's logit window starts full of these: a stream is scored as if a quiet
    second preceded it, so its first frames (a click as the input opens, the step from a
    muted input to room noise) carry 1/window of the weight, as any frame later does,
    instead of deciding alone.
    """
    if not hasattr(stream, "push"):
        return None
    logits = np.asarray(stream.push(np.zeros(int(round(sample_rate * seconds)), np.float32)), np.float64)
    stream.reset()
    if logits.ndim != 2 or logits.shape[0] == 0:
        return None
    return logits.mean(axis=0)
