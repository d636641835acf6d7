"""Streaming evaluation: a long, continuous test stream, false alarms per hour and false rejections.

``build_plan`` lays out a stream (deterministic by seed): a bed of background noise
(segments of the noise files, each at its own signal-to-noise ratio) under a sequence of
speech items separated by random gaps: non-keyword speech (e.g. recorded sentences, reused
in reshuffled passes until the stream is long enough), keyword clips (each trimmed to its
speech with a margin and inserted once per repeat at a random place in the sequence), and
optionally other words spoken as commands. Every speech item is scaled to its own active
level. ``render(plan, a, b)`` mixes any stretch of it, so the stream never exists whole.

``frame_logits`` runs the model over the stream; ``sweep`` turns the per-frame logits into
each keyword's detections at many thresholds with the detector's own code
(:class:`~lmustream.stream.detector.PosteriorSmoother`, :class:`~lmustream.stream.detector.KeywordTrigger`)
and scores them: a detection of keyword k is a hit when it is decided between the start of
a k clip's speech and ``max_latency`` seconds after its end (the first one per clip);
every other detection is a false alarm. FRR at a false-alarm rate is read at the lowest
threshold whose false alarms per hour do not exceed it.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmustream.audio.io import load_audio
from lmustream.data.clips import collect_audio, warn_skipped
from lmustream.errors import AudioError, ConfigError
from lmustream.stream.detector import (DetectorConfig, FrameClock, KeywordTrigger, PosteriorSmoother,
                                       is_keyword_label)
from lmustream.stream.enroll import speech_region

RATE = 16000
FA_RATES = (0.5, 1.0, 5.0)  # false alarms per hour at which FRR is reported
KEYWORD_MARGIN_S = 0.15  # audio kept around a keyword clip's speech
FADE_S = 0.01  # fade in/out of every inserted item (no clicks)
NOISE_SEGMENT_S = (5.0, 20.0)


def keyword_clips(positives: str | Path, keywords: list[str]) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """``({keyword: clips}, {other word: clips})`` from a Speech Commands-style folder of word folders."""
    root = Path(positives)
    if not root.is_dir():
        raise ConfigError(f"--positives {root}: not a folder of word folders")
    found, others = {}, {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        files = collect_audio([folder])
        if files:
            (found if folder.name in keywords else others)[folder.name] = files
    if not found:
        raise ConfigError(f"--positives {root}: no folder named after a keyword ({', '.join(keywords)})")
    return found, others


@dataclass(frozen=True)
class Item:
    """One inserted recording: ``samples`` start at stream sample ``start``; ``speech`` is the
    speech's ``[start, end)`` in stream samples."""

    kind: str  # "keyword", "word" (a non-keyword command), "speech" (non-keyword running speech)
    label: str
    source: str
    start: int
    samples: np.ndarray = field(repr=False)
    speech: tuple[int, int]

    @property
    def end(self) -> int:
        return self.start + self.samples.size


@dataclass(frozen=True)
class NoiseSegment:
    source: str
    start: int
    samples: np.ndarray = field(repr=False)

    @property
    def end(self) -> int:
        return self.start + self.samples.size


@dataclass
class StreamPlan:
    items: list[Item]
    noise: list[NoiseSegment]
    n_samples: int
    composition: dict

    @property
    def hours(self) -> float:
        return self.n_samples / RATE / 3600.0

    def positives(self) -> list[Item]:
        return [it for it in self.items if it.kind == "keyword"]


def _active_rms(x: np.ndarray) -> float:
    region = speech_region(x, RATE)
    seg = x[region.start:region.end] if region is not None else x
    return float(np.sqrt(np.mean(np.square(seg, dtype=np.float64)) + 1e-12))


def _faded(x: np.ndarray) -> np.ndarray:
    n = min(int(FADE_S * RATE), x.size // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return (x * (10 ** (dbfs / 20) / _active_rms(x))).astype(np.float32)


def _trimmed_keyword(x: np.ndarray) -> tuple[np.ndarray, tuple[int, int]] | None:
    region = speech_region(x, RATE)
    if region is None:
        return None
    margin = int(KEYWORD_MARGIN_S * RATE)
    a, b = max(0, region.start - margin), min(x.size, region.end + margin)
    return x[a:b], (region.start - a, region.end - a)


def build_plan(keywords: dict[str, list[Path]], negatives: list[Path], noise: list[Path], hours: float,
               seed: int = 0, repeats: int = 1, other_words: dict[str, list[Path]] | None = None,
               speech_level: tuple[float, float] = (-32.0, -20.0), snr: tuple[float, float] = (5.0, 25.0),
               gap: tuple[float, float] = (0.5, 2.5), progress=None) -> StreamPlan:
    """Lay out the test stream (module docstring). Levels in dBFS (active speech RMS), SNR in dB
    relative to the middle of ``speech_level``, gaps in seconds."""
    if not math.isfinite(hours) or hours <= 0:  # NaN passes a bare sign check and fails only in int()
        raise ConfigError(f"--hours must be a number > 0, got {hours}")
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    for name, (lo, hi) in (("--speech-level", speech_level), ("--snr", snr), ("gap", gap)):
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ConfigError(f"{name} must be a range LOW <= HIGH of finite numbers, got {lo}:{hi}")
    if speech_level[1] > 0:
        raise ConfigError(f"--speech-level must be at most 0 dBFS (full scale), got "
                          f"{speech_level[0]}:{speech_level[1]}")
    if gap[0] < 0:
        raise ConfigError(f"gap must be >= 0 seconds, got {gap[0]}:{gap[1]}")
    rng = np.random.default_rng(seed)
    cache: dict[Path, np.ndarray] = {}

    def audio(path: Path) -> np.ndarray:
        if path not in cache:
            cache[path] = load_audio(path)
        return cache[path]

    # One corrupt file among thousands must not end the evaluation: it is left out and named. Files
    # are read when first used, so a large collection of negatives is not loaded beyond what it needs.
    unreadable: dict[Path, str] = {}

    def readable(path: Path) -> bool:
        if path in unreadable:
            return False
        try:
            audio(path)
            return True
        except AudioError as e:
            unreadable[path] = str(e).removeprefix(f"{str(path)!r}: ")  # the path is listed beside it
            return False

    def none_readable(files, what: str) -> None:
        if files and all(path in unreadable for path in files):
            raise ConfigError(f"none of the {len(files)} {what} could be read as audio (first: "
                              f"{files[0]}: {unreadable[files[0]]})")

    # keyword clips (and other command words), trimmed around their speech
    pieces: list[tuple[str, str, Path, np.ndarray, tuple[int, int]]] = []
    skipped = []
    for kind, table in (("keyword", keywords), ("word", other_words or {})):
        for label, files in table.items():
            for path in files:
                if not readable(path):
                    continue
                trimmed = _trimmed_keyword(audio(path))
                if trimmed is None:
                    skipped.append(str(path))
                    continue
                pieces += [(kind, label, path, *trimmed)] * repeats
    none_readable([path for files in keywords.values() for path in files], "keyword clips")
    order = rng.permutation(len(pieces))
    pieces = [pieces[i] for i in order]
    target = int(hours * 3600 * RATE)
    mean_gap = 0.5 * (gap[0] + gap[1]) * RATE

    # non-keyword speech, in reshuffled passes until the stream is long enough
    speech_files = list(negatives)
    sentences: list[Path] = []
    passes = 0
    used = sum(p[3].size + mean_gap for p in pieces)
    while speech_files and used < target:
        passes += 1
        for i in rng.permutation(len(speech_files)):
            if used >= target:
                break
            if readable(speech_files[i]):
                sentences.append(speech_files[i])
                used += audio(speech_files[i]).size + mean_gap
        none_readable(list(negatives), "negative recordings")
        speech_files = [path for path in speech_files if path not in unreadable]
    # keyword clips at random places in the sentence sequence
    slots = np.sort(rng.integers(0, len(sentences) + 1, size=len(pieces)))
    sequence: list[tuple] = []
    k = 0
    for i in range(len(sentences) + 1):
        while k < len(pieces) and slots[k] == i:
            sequence.append(pieces[k])
            k += 1
        if i < len(sentences):
            sequence.append(("speech", "", sentences[i], None, None))

    items: list[Item] = []
    pos = int(rng.uniform(*gap) * RATE)
    silent_fill = not speech_files
    for kind, label, path, x, span in sequence:
        level = rng.uniform(*speech_level)
        if kind == "speech":
            x = audio(path)
            span = (0, x.size)
        samples = _faded(_level(x, level))
        items.append(Item(kind, label, str(path), pos, samples, (pos + span[0], pos + span[1])))
        pos += samples.size + int(rng.uniform(*gap) * RATE)
        if silent_fill:  # no negative speech: keywords separated by noise only
            pos += int(rng.uniform(2.0, 10.0) * RATE)
        if progress is not None:
            progress.update(1)
    n_samples = max(target, pos)

    segments: list[NoiseSegment] = []
    mid_level = 0.5 * (speech_level[0] + speech_level[1])
    pos = 0
    given_noise, noise = list(noise), list(noise)
    while noise and pos < n_samples:
        path = noise[int(rng.integers(len(noise)))]
        if not readable(path):
            none_readable(given_noise, "noise recordings")
            noise.remove(path)
            continue
        x = audio(path)
        length = min(int(rng.uniform(*NOISE_SEGMENT_S) * RATE), x.size, n_samples - pos)
        offset = int(rng.integers(0, x.size - length + 1))
        rms = float(np.sqrt(np.mean(np.square(x[offset:offset + length], dtype=np.float64)) + 1e-12))
        gain = 10 ** ((mid_level - rng.uniform(*snr)) / 20) / rms
        segments.append(NoiseSegment(str(path), pos, _faded(x[offset:offset + length] * np.float32(gain))))
        pos += length

    kinds = Counter(it.kind for it in items)
    composition = {
        "hours": n_samples / RATE / 3600,
        "seed": seed,
        "keyword_insertions": kinds["keyword"],
        "keyword_clips": len({it.source for it in items if it.kind == "keyword"}),
        "keyword_repeats": repeats,
        "keywords": {k: sum(1 for it in items if it.kind == "keyword" and it.label == k) for k in keywords},
        "keyword_speakers": len({Path(it.source).name.split("_nohash_")[0] for it in items if it.kind == "keyword"}),
        "other_word_insertions": kinds["word"],
        "speech_items": kinds["speech"],
        "speech_files": len(speech_files),
        "speech_passes": passes,
        "speech_hours": sum(it.samples.size for it in items if it.kind == "speech") / RATE / 3600,
        "noise_files": sorted({Path(s.source).name for s in segments}),
        "speech_level_dbfs": list(speech_level),
        "snr_db": list(snr),
        "gap_s": list(gap),
        "skipped_clips_without_speech": skipped,
        "skipped_unreadable_files": [f"{path}: {reason}" for path, reason in unreadable.items()],
    }
    if unreadable:
        warn_skipped([(str(path), reason) for path, reason in unreadable.items()], "building the stream")
    return StreamPlan(items, segments, n_samples, composition)


def render(plan: StreamPlan, a: int, b: int) -> np.ndarray:
    """Samples ``[a, b)`` of the stream (zeros beyond its end)."""
    out = np.zeros(max(0, b - a), np.float32)
    for parts in (plan.items, plan.noise):
        starts = [p.start for p in parts]
        i = max(0, bisect.bisect_right(starts, a) - 1)
        while i < len(parts) and parts[i].start < b:
            p = parts[i]
            lo, hi = max(a, p.start), min(b, p.end)
            if lo < hi:
                out[lo - a:hi - a] += p.samples[lo - p.start:hi - p.start]
            i += 1
    return out


def frame_logits(kernel, plan: StreamPlan, segment_s: float = 30.0, warmup_s: float = 10.0,
                 batch: int = 32, progress=None) -> np.ndarray:
    """Per-frame logits ``[frames, classes]`` of the whole stream.

    A kernel that advances many streams at once (the C++ kernel's ``push_many``, the PyTorch
    fallback's ``logits_of``) gets the stream cut into ``segment_s`` pieces run as a batch of
    streams; each piece starts ``warmup_s`` earlier (those frames are discarded) and ends with
    its real look-ahead, so every frame sees the same context as in one continuous stream up
    to the warm-up: the Legendre memory forgets input older than a few theta (1.28 s), and
    ``lmustream eval-stream --check-segments`` measures the difference. Other kernels run one
    continuous stream.
    """
    clock = FrameClock(RATE, 160, 400, int(kernel.lookahead))
    n_frames = 1 + (plan.n_samples - clock.window) // clock.hop if plan.n_samples >= clock.window else 0
    out = np.zeros((n_frames, len(kernel.labels)), np.float32)
    if hasattr(kernel, "push_many") or hasattr(kernel, "logits_of"):
        seg, warm = clock.frames(segment_s), clock.frames(warmup_s) if warmup_s > 0 else 0
        jobs = []
        for first in range(0, n_frames, seg):
            last = min(first + seg, n_frames)  # frames [first, last) are kept
            begin = max(0, first - warm)
            end_frame = min(last + clock.lookahead, n_frames)  # real future frames for the look-ahead
            jobs.append((first, last, begin, end_frame))
        for i in range(0, len(jobs), batch):
            group = jobs[i:i + batch]
            signals = [render(plan, begin * clock.hop, (end_frame - 1) * clock.hop + clock.window)
                       for _, _, begin, end_frame in group]
            for (first, last, begin, _), logits in zip(group, _batch_logits(kernel, signals, progress)):
                out[first:last] = logits[first - begin:last - begin]
        return out
    stream = kernel.open()
    filled, chunk = 0, 10 * RATE
    for a in range(0, plan.n_samples, chunk):
        rows = stream.push(render(plan, a, min(a + chunk, plan.n_samples)))
        take = min(rows.shape[0], n_frames - filled)
        out[filled:filled + take] = rows[:take]
        filled += take
        if progress is not None:
            progress.update(rows.shape[0])
    rows = stream.flush()
    take = min(rows.shape[0], n_frames - filled)
    out[filled:filled + take] = rows[:take]
    return out


def _batch_logits(kernel, signals: list[np.ndarray], progress) -> list[np.ndarray]:
    """Each signal's per-frame logits, from a fresh stream flushed at its end, all at once."""
    if not hasattr(kernel, "push_many"):
        return kernel.logits_of(signals, progress=progress)
    streams = [kernel.open() for _ in signals]
    heads = kernel.push_many(streams, signals)
    out = [np.concatenate([head, s.flush()]) for head, s in zip(heads, streams)]
    if progress is not None:
        progress.update(sum(x.shape[0] for x in out))
    return out


def threshold_grid() -> np.ndarray:
    """Thresholds swept: 0.05 .. 0.95 by 0.01, then denser towards 1 (up to 1 - 1e-7)."""
    return np.unique(np.round(np.concatenate([np.arange(0.05, 0.95, 0.01), 1 - np.logspace(-1.3, -7, 80)]), 9))


@dataclass
class KeywordCurve:
    """One keyword's detections at each swept threshold."""

    keyword: str
    thresholds: np.ndarray
    hits: np.ndarray  # [T] clips detected
    false_alarms: np.ndarray  # [T]
    latencies: list  # [T] list of seconds (detected_at - speech end) of the hits
    n_positives: int

    def frr(self) -> np.ndarray:
        return 1.0 - self.hits / max(self.n_positives, 1)


def sweep(logits: np.ndarray, labels: list[str], plan: StreamPlan, config: DetectorConfig, lookahead: int,
          thresholds: np.ndarray | None = None, max_latency: float = 1.0,
          keywords: list[str] | None = None, levels: np.ndarray | None = None,
          prior_logits: np.ndarray | None = None) -> dict[str, KeywordCurve]:
    """Each keyword's hits and false alarms at every threshold (module docstring). With
    ``config.isolation`` and the stream's ``levels`` (:func:`stream_levels`), detections that
    the detector would drop as words inside running speech are dropped here too, and those it
    would report only after the word's trailing pause are timed then. ``prior_logits``: the
    model's logits on silence (:func:`~lmustream.stream.detector.silence_logits`), which fill the
    detector's window before the stream begins; without them the stream's first frames decide
    alone, and its opening noise can raise false alarms that the detector never raises."""
    clock = FrameClock(RATE, 160, 400, lookahead)
    thresholds = threshold_grid() if thresholds is None else np.asarray(thresholds)
    if not math.isfinite(max_latency) or max_latency < 0:  # either would score every keyword as missed
        raise ConfigError(f"--max-latency must be a number of seconds >= 0, got {max_latency}")
    if config.posterior == "auto":
        raise ConfigError("sweep needs the posterior kind resolved (detector.resolve_posterior)")
    smoother = PosteriorSmoother(len(labels), clock.frames(config.window), clock.frames(config.smoothing),
                                 config.posterior, prior_logits)
    posteriors = smoother.push(logits)
    keywords = keywords or [label for label in labels if is_keyword_label(label)]
    command = _command_check(config, clock, levels)
    curves = {}
    for keyword in keywords:
        cls = labels.index(keyword)
        clips = [it for it in plan.positives() if it.label == keyword]
        spans = np.array([[it.speech[0] / RATE, it.speech[1] / RATE] for it in clips]).reshape(-1, 2)
        hits, fas, lats = [], [], []
        for thr in thresholds:
            trigger = KeywordTrigger(float(thr), clock.frames(config.refractory),
                                     int(round(config.hold / clock.frame_seconds)))
            decided = (command(t.emit) for t in trigger.push(posteriors[:, cls]) + trigger.finish())
            times = np.array([clock.end(d) for d in decided if d is not None])
            hit, fa, lat = score_detections(times, spans, max_latency)
            hits.append(hit)
            fas.append(fa)
            lats.append(lat)
        curves[keyword] = KeywordCurve(keyword, thresholds, np.array(hits), np.array(fas), lats, len(clips))
    return curves


def _command_check(config: DetectorConfig, clock: FrameClock, levels: np.ndarray | None):
    """``emit frame -> decision frame | None``: when the detector would report a keyword that fired
    at that frame (:class:`~lmustream.stream.detector.CommandGate` on the stream's levels; None:
    dropped as a word inside running speech), memoised."""
    from lmustream.stream.detector import CommandGate

    gate = CommandGate.of(config, clock)
    if not gate.active or levels is None or levels.size == 0:
        return lambda emit: emit + clock.lookahead
    memo: dict[int, int | None] = {}

    def check(emit: int) -> int | None:
        if emit not in memo:
            memo[emit] = gate.decide(levels, emit + clock.lookahead)
        return memo[emit]
    return check


def score_detections(times: np.ndarray, spans: np.ndarray, max_latency: float) -> tuple[int, int, list]:
    """``(hits, false alarms, latencies)`` of detection times against speech spans ``[n, 2]``:
    the first detection within ``[start, end + max_latency]`` of a span is its hit."""
    used = np.zeros(len(spans), bool)
    hits, latencies = 0, []
    order = np.argsort(spans[:, 0]) if len(spans) else np.zeros(0, int)
    starts = spans[order, 0] if len(spans) else np.zeros(0)
    for t in np.sort(times):
        k = int(np.searchsorted(starts, t, side="right")) - 1  # last span starting at or before t
        matched = False
        while k >= 0 and not matched:
            j = order[k]
            if spans[j, 1] + max_latency < t:
                break  # spans do not overlap, so earlier ones ended even sooner
            if not used[j]:
                used[j], matched = True, True
                hits += 1
                latencies.append(float(t - spans[j, 1]))
            k -= 1
    return hits, len(times) - hits, latencies


def operating_point(curve: KeywordCurve, hours: float, fa_per_hour: float) -> int | None:
    """Index of the lowest threshold with false alarms per hour <= ``fa_per_hour`` (None if none)."""
    ok = np.flatnonzero(curve.false_alarms / hours <= fa_per_hour + 1e-12)
    return int(ok[0]) if ok.size else None


def summarize(curves: dict[str, KeywordCurve], hours: float, fa_rates=FA_RATES) -> dict:
    """Per keyword and overall: FRR at each FA/h, the threshold used, median latency there."""
    table = {}
    for keyword, curve in curves.items():
        row = {"positives": curve.n_positives}
        for rate in fa_rates:
            i = operating_point(curve, hours, rate)
            lat = curve.latencies[i] if i is not None else []
            row[f"{rate:g}"] = {
                "frr": None if i is None or curve.n_positives == 0 else float(curve.frr()[i]),
                "threshold": None if i is None else float(curve.thresholds[i]),
                "fa_per_hour": None if i is None else float(curve.false_alarms[i] / hours),
                "median_latency_ms": float(np.median(lat) * 1000) if lat else None,
            }
        table[keyword] = row
    table["all (per-keyword thresholds)"] = _pooled(curves, hours, fa_rates, per_keyword=True)
    table["all (one threshold, FA/h of all keywords)"] = _pooled(curves, hours, fa_rates, per_keyword=False)
    return table


def _pooled(curves: dict[str, KeywordCurve], hours: float, fa_rates, per_keyword: bool) -> dict:
    """Pooled over keywords: each keyword at its own rate-X threshold (then the false alarms add
    up to X per keyword), or one common threshold for all keywords with X false alarms per hour
    in total."""
    n_pos = sum(c.n_positives for c in curves.values())
    row = {"positives": n_pos}
    for rate in fa_rates:
        if per_keyword:
            picks = {k: operating_point(c, hours, rate) for k, c in curves.items()}
        else:
            total = sum(c.false_alarms for c in curves.values())
            ok = np.flatnonzero(total / hours <= rate + 1e-12)
            picks = {k: (int(ok[0]) if ok.size else None) for k in curves}
        hits = sum(int(c.hits[i]) for k, c in curves.items() if (i := picks[k]) is not None)
        fas = sum(int(c.false_alarms[i]) for k, c in curves.items() if (i := picks[k]) is not None)
        lat = [x for k, c in curves.items() if (i := picks[k]) is not None for x in c.latencies[i]]
        missing = any(v is None for v in picks.values())
        first = next(iter(curves))
        common = None if per_keyword or missing else float(curves[first].thresholds[picks[first]])
        row[f"{rate:g}"] = {
            "frr": None if missing or n_pos == 0 else 1.0 - hits / n_pos,
            "threshold": common,
            "fa_per_hour": None if missing else fas / hours,
            "median_latency_ms": float(np.median(lat) * 1000) if lat else None,
        }
    return row


def format_summary(table: dict, composition: dict, fa_rates=FA_RATES) -> str:
    c = composition
    lines = [
        f"stream: {c['hours']:.2f} h (seed {c['seed']}): {c['keyword_insertions']} keyword insertions "
        f"({c['keyword_clips']} clips x {c['keyword_repeats']}, {c['keyword_speakers']} speakers), "
        f"{c['speech_items']} non-keyword speech items ({c['speech_files']} files, {c['speech_passes']} pass(es), "
        f"{c['speech_hours']:.2f} h), {c['other_word_insertions']} other command words, noise "
        f"{', '.join(c['noise_files']) or 'none'} at SNR {c['snr_db'][0]:g}..{c['snr_db'][1]:g} dB, speech at "
        f"{c['speech_level_dbfs'][0]:g}..{c['speech_level_dbfs'][1]:g} dBFS",
    ]
    head = f"{'keyword':<42} {'n':>5}" + "".join(f" {'FRR@' + format(r, 'g') + 'FA/h':>12}" for r in fa_rates) \
        + f" {'thr@1FA/h':>10} {'latency@1FA/h':>14}"
    lines += [head, "-" * len(head)]
    for name, row in table.items():
        cells = []
        for r in fa_rates:
            frr = row[f"{r:g}"]["frr"]
            cells.append(f" {'n/a' if frr is None else format(100 * frr, '.1f') + '%':>12}")
        one = row.get("1", {})
        thr = one.get("threshold")
        lat = one.get("median_latency_ms")
        lines.append(f"{name:<42} {row['positives']:>5}" + "".join(cells)
                     + f" {'-' if thr is None else format(thr, '.4f'):>10}"
                     + f" {'-' if lat is None else format(lat, '.0f') + ' ms':>14}")
    return "\n".join(lines)


def plot_det(curves: dict[str, KeywordCurve], hours: float, path: str | Path) -> None:
    """DET curves: FRR against false alarms per hour (log scale), one line per keyword."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    floor = 0.5 / hours  # draw zero false alarms at half a false alarm over the stream
    for keyword, c in curves.items():
        ax.plot(np.maximum(c.false_alarms / hours, floor), 100 * c.frr(), label=keyword, lw=1.2)
    total = sum(c.false_alarms for c in curves.values())
    n_pos = sum(c.n_positives for c in curves.values())
    ax.plot(np.maximum(total / hours, floor), 100 * (1 - sum(c.hits for c in curves.values()) / max(n_pos, 1)),
            "k--", lw=2, label="all (one threshold)")
    for rate in FA_RATES:
        ax.axvline(rate, color="0.8", lw=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("false rejection rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"DET over thresholds ({hours:.2f} h stream; 0 FA drawn at {floor:.2g}/h)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pick_thresholds(curves: dict[str, KeywordCurve], hours: float, fa_per_hour: float) -> dict[str, float]:
    """Per keyword, the lowest swept threshold whose false alarms per hour stay within the target
    (the highest swept threshold when none does)."""
    picked = {}
    for keyword, curve in curves.items():
        i = operating_point(curve, hours, fa_per_hour)
        picked[keyword] = float(curve.thresholds[-1] if i is None else curve.thresholds[i])
    return picked


class _LogitsOnly:
    """A kernel stand-in for running the Detector on logits computed beforehand (``prior_logits``:
    what it answers for the silence the Detector primes its window with)."""

    def __init__(self, labels: list[str], lookahead: int, prior_logits: np.ndarray | None = None):
        self.labels, self.lookahead, self.sample_rate = list(labels), lookahead, RATE
        self.prior_logits = prior_logits

    def open(self):
        return self

    def push(self, samples) -> np.ndarray:
        """Asked only for the silence logits (no rows: none, and the window starts empty)."""
        if self.prior_logits is None:
            return np.zeros((0, len(self.labels)))
        return np.asarray(self.prior_logits, np.float64).reshape(1, -1)

    def flush(self) -> np.ndarray:
        return np.zeros((0, len(self.labels)), np.float32)  # the logits were all given already

    def reset(self) -> None:
        pass


def stream_levels(plan: StreamPlan) -> np.ndarray:
    """The level (dB) of every frame of the stream (:func:`~lmustream.stream.detector.frame_levels`)."""
    from lmustream.stream.detector import LevelMeter

    meter = LevelMeter()
    chunk = 60 * RATE
    return np.concatenate([meter.push(render(plan, a, min(a + chunk, plan.n_samples)))
                           for a in range(0, plan.n_samples, chunk)] or [np.zeros(0, np.float32)])


def detector_events(logits: np.ndarray, labels: list[str], config: DetectorConfig, lookahead: int,
                    thresholds: dict[str, float], keywords: list[str] | None = None,
                    levels: np.ndarray | None = None, prior_logits: np.ndarray | None = None) -> list:
    """The events :class:`~lmustream.stream.detector.Detector` itself reports on these logits
    (fed in 1 s blocks, as a live stream would), with these per-keyword thresholds; ``levels``
    (:func:`stream_levels`) lets it locate the words as it does on audio; ``prior_logits`` as in
    :func:`sweep`."""
    from lmustream.stream.detector import Detector

    detector = Detector(_LogitsOnly(labels, lookahead, prior_logits), keywords=keywords, threshold=thresholds,
                        config=config)
    events = []
    for i in range(0, logits.shape[0], 100):
        # the levels run ahead of the logits by the look-ahead, as when audio is pushed
        lv = None if levels is None else levels[i + lookahead if i else 0:i + 100 + lookahead]
        events += detector.process_logits(logits[i:i + 100], lv)
    return events + detector.flush()  # the stream's end decides the keywords still waiting, as in the sweep


def span_errors(events: list, plan: StreamPlan, max_latency: float = 1.0) -> dict:
    """How well events' ``start``/``end`` locate the keywords: over the hits (matched as in
    :func:`score_detections`), the median absolute error of each, in ms, and the hit count."""
    starts, ends, hits = [], [], 0
    for keyword in sorted({e.keyword for e in events}):
        clips = [it for it in plan.positives() if it.label == keyword]
        spans = np.array([[it.speech[0] / RATE, it.speech[1] / RATE] for it in clips]).reshape(-1, 2)
        used = np.zeros(len(spans), bool)
        for e in sorted((e for e in events if e.keyword == keyword), key=lambda e: e.detected_at):
            t = e.detected_at
            inside = np.flatnonzero(~used & (spans[:, 0] <= t) & (t <= spans[:, 1] + max_latency))
            if inside.size:
                j = inside[np.argmax(spans[inside, 0])]  # the latest clip that started before the decision
                used[j] = True
                hits += 1
                starts.append(abs(e.start - spans[j, 0]))
                ends.append(abs(e.end - spans[j, 1]))
    med = lambda x: float(np.median(x) * 1000) if x else None  # noqa: E731
    return {"hits": hits, "median_start_error_ms": med(starts), "median_end_error_ms": med(ends)}


def score_events(events: list, plan: StreamPlan, keywords: list[str], max_latency: float = 1.0) -> dict:
    """FRR, false alarms per hour and median latency of a list of detector events."""
    hits = fas = positives = 0
    latencies: list[float] = []
    for keyword in keywords:
        clips = [it for it in plan.positives() if it.label == keyword]
        spans = np.array([[it.speech[0] / RATE, it.speech[1] / RATE] for it in clips]).reshape(-1, 2)
        times = np.array([e.detected_at for e in events if e.keyword == keyword])
        h, fa, lat = score_detections(times, spans, max_latency)
        hits, fas, positives = hits + h, fas + fa, positives + len(clips)
        latencies += lat
    return {"frr": None if positives == 0 else 1.0 - hits / positives, "fa_per_hour": fas / plan.hours,
            "false_alarms": fas, "hits": hits, "positives": positives,
            "median_latency_ms": float(np.median(latencies) * 1000) if latencies else None}
