"""The detection verbs of the command line: stream, listen, enroll, calibrate, eval-stream.

``add_verbs(subparsers)`` registers them on ``lmustream``'s parser (lmustream/cli.py).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

from lmustream.cli import non_negative_int, whole_number
from lmustream.errors import AudioError, ConfigError

DEFAULT_MODEL = "sc12-lmuformer"
STREAM_BLOCK_SECONDS = 0.5  # file blocks: memory stays constant whatever the file's length
STDIN = "-"  # `lmustream stream -`: raw PCM from standard input
STDIN_BLOCK_SECONDS = 0.1  # at most this much is read from a pipe before it is detected on
RAW_DEFAULT_RATE = 16000
METER_SECONDS = 0.1  # level meter refresh period (it shows the peak level since the last refresh)
MUTED_SECONDS = 3.0  # exact zeros this long from the input: say so (a muted or wrong device)
NO_AUDIO_SECONDS = 5.0  # no block from the input for this long: the device is not delivering
# A block is how often the detector and the meter get audio: blocks near NO_AUDIO_SECONDS would be taken
# for a dead device, and long before that the "live" meter and detections lag by a block.
MAX_BLOCK_MS = 1000.0
FRAMES_PER_MINUTE = 6000  # 10 ms frames


# -- option types (argparse): a bad value is refused before any model, file or device is opened --------
def _number(rule: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """argparse type: a finite number for which ``ok`` holds; ``rule`` words that for the error. NaN
    is refused explicitly: it compares false with everything, so it would pass any sign check."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return value
    return parse


_positive_seconds = _number("a number of seconds > 0", lambda v: v > 0)
_seconds = _number("a number of seconds >= 0", lambda v: v >= 0)
_hours = _number("a number of hours > 0", lambda v: v > 0)
_per_hour = _number("a number per hour > 0", lambda v: v > 0)
_minutes = _number("a number of minutes >= 0 (0: off)", lambda v: v >= 0)
_block_ms = _number(f"a number of milliseconds > 0 and <= {MAX_BLOCK_MS:g}", lambda v: 0 < v <= MAX_BLOCK_MS)


_raw_rate = whole_number("a sample rate in Hz, an integer in [1, 768000]", lambda v: 1 <= v <= 768000)
_raw_channels = whole_number("a channel count, an integer in [1, 64]", lambda v: 1 <= v <= 64)


def _take_seconds(text: str) -> float:
    from lmustream.stream.enroll import MIN_TAKE_SECONDS  # here: enroll's module is only needed by enroll

    return _number(f"a number of seconds >= {MIN_TAKE_SECONDS:g}", lambda v: v >= MIN_TAKE_SECONDS)(text)


def _range(rule: str = "", ok: Callable[[float, float], bool] = lambda lo, hi: True) -> Callable[[str], tuple]:
    """argparse type: ``LOW:HIGH`` (or one number for both), finite, LOW <= HIGH, and ``ok(LOW, HIGH)``."""
    def parse(text: str) -> tuple[float, float]:
        lo, _, hi = text.partition(":")
        try:
            lo_f = float(lo)
            hi_f = float(hi) if hi else lo_f
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LOW:HIGH (e.g. 5:25){rule}, got {text!r}") from None
        if not (math.isfinite(lo_f) and math.isfinite(hi_f)):
            raise argparse.ArgumentTypeError(f"expected LOW:HIGH as finite numbers{rule}, got {text!r}")
        if hi_f < lo_f:
            raise argparse.ArgumentTypeError(f"LOW must not exceed HIGH, got {text!r}")
        if not ok(lo_f, hi_f):
            raise argparse.ArgumentTypeError(f"expected LOW:HIGH{rule}, got {text!r}")
        return lo_f, hi_f
    return parse


# Active speech level is an RMS relative to full scale: above 0 dBFS even a sine would exceed the
# samples' [-1, 1] range, and speech, whose peaks stand well above its RMS, clips long before.
_speech_level = _range(" in dBFS, at most 0 (full scale)", lambda lo, hi: hi <= 0)


# -- shared options -----------------------------------------------------------------------------
def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model file, or the name of a shipped model (default {DEFAULT_MODEL})")
    p.add_argument("--backend", default="auto", choices=["auto", "kernel", "torch"],
                   help="auto: the C++ kernel when it is built, else the PyTorch step form (default auto)")
    p.add_argument("--int8", action="store_true",
                   help="int8 weights on the C++ kernel: about 3x less time per frame, accuracy within 0.3 points "
                        "of float32 on the shipped models (docs/kernel.md)")
    p.add_argument("--verbose", action="store_true", help="say which backend runs the model, and the settings")


def _add_detector_options(p: argparse.ArgumentParser, thresholds: bool = True) -> None:
    g = p.add_argument_group("detector (defaults: the model's calibration, else the built-in values)")
    g.add_argument("--keywords", type=_keyword_names,
                   help="comma-separated keywords to report (default: every label not starting with _)")
    if thresholds:
        g.add_argument("--threshold", metavar="T",
                       help="a threshold for every keyword (0..1), word=T pairs (yes=0.9,no=0.8), or a "
                            "calibration JSON file from `lmustream calibrate --out` (with the settings it was "
                            "measured with; options given here still win)")
    g.add_argument("--window", type=_positive_seconds, metavar="S",
                   help="seconds of per-frame logits averaged (1.0)")
    g.add_argument("--smoothing", type=_seconds, metavar="S", help="seconds of posteriors averaged (0.1)")
    g.add_argument("--refractory", type=_seconds, metavar="S", help="seconds before a keyword can fire again (1.0)")
    g.add_argument("--hold", type=_seconds, metavar="S",
                   help="wait at most this long after crossing the threshold for the posterior's peak, which "
                        "becomes the confidence (default 0: decide at the crossing, about 100 ms sooner)")
    g.add_argument("--isolation", type=_seconds, metavar="S",
                   help="drop detections inside running speech: the speech a keyword ends must not have lasted "
                        "longer than S seconds without a 0.2 s pause (0: off)")
    g.add_argument("--trailing-pause", type=_seconds, metavar="S",
                   help="with --isolation, report a keyword only once its word is followed by S seconds of quiet, "
                        "and drop it when the speech goes on instead (default 0.2; 0: decide at the crossing)")
    g.add_argument("--every-keyword", dest="one_per_word", action="store_false", default=None,
                   help="report every keyword whose posterior rises on a word (default: one keyword per word, the "
                        "first to fire: a later one whose span overlaps its span is dropped)")
    g.add_argument("--posterior", choices=["auto", "sigmoid", "softmax"],
                   help="logits -> posteriors: sigmoid (models trained with binary cross-entropy), softmax "
                        "(cross-entropy), auto: from the model's training recipe (default)")


def _keywords(args) -> list[str] | None:
    return args.keywords  # a list from _keyword_names, or None for the model's own


def _keyword_names(text: str) -> list[str]:
    """argparse type: comma-separated names, each once. An empty list is refused: it would otherwise
    read as the option left out, i.e. every keyword."""
    words = list(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    if not words:
        raise argparse.ArgumentTypeError(f"expected comma-separated keywords, got {text!r}")
    return words


def _settings(args) -> dict:
    """The detector settings given on the command line (None where an option was left out)."""
    from lmustream.stream.detector import SETTINGS

    return {k: getattr(args, k) for k in SETTINGS}


def _detector(args, sample_rate: int | None = None):
    from lmustream.stream.detector import Detector

    detector = Detector(args.model, keywords=_keywords(args), threshold=getattr(args, "threshold", None),
                        sample_rate=sample_rate, backend=args.backend, int8=args.int8, **_settings(args))
    if args.verbose:
        c = detector.config
        print(f"backend: {detector.backend_note}", file=sys.stderr)
        print(f"detector: {c.posterior} of the {c.window:g} s mean of logits, smoothing {c.smoothing:g} s, "
              f"refractory {c.refractory:g} s, hold {c.hold:g} s, isolation {c.isolation:g} s, "
              f"trailing pause {c.trailing_pause:g} s, "
              f"{'one keyword per word' if c.one_per_word else 'every keyword'}, thresholds {detector.thresholds}",
              file=sys.stderr)
    return detector


def _print_event(event, args, **extra) -> None:
    if args.json:
        print(json.dumps({"type": "detection", **event.to_dict(), **extra}), flush=True)
    else:
        where = f"{extra['file']}  " if "file" in extra else ""
        print(f"{where}{event.start:8.2f} - {event.end:8.2f} s  {event.keyword:<12} {event.confidence:.3f}",
              flush=True)


# -- stream --------------------------------------------------------------------------------------
def _cmd_stream(args) -> int:
    _check_stream_args(args)
    detector = _detector(args)
    total, failed = 0, 0
    for name in args.files:
        try:
            total += _stream_stdin(detector, args) if name == STDIN else _stream_file(name, detector, args)
        except AudioError as e:
            # One unreadable file must not cost the others their detections: say which, go on.
            failed += 1
            print(f"error: {e}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps({"type": "error", "file": name, "error": str(e)}), flush=True)
    if args.verbose:
        print(f"{total} detection(s) in {len(args.files)} file(s)", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(args.files)} file(s) could not be read", file=sys.stderr)
        return 2
    return 0


def _stream_file(name: str, detector, args) -> int:
    """Stream one file through ``detector`` (reset first), printing its events; returns their count."""
    import numpy as np
    import soundfile as sf

    from lmustream.audio.io import AudioTruncatedWarning, check_audio_file, truncation

    check_audio_file(name)
    try:
        f = sf.SoundFile(name)
    except (RuntimeError, OSError, sf.LibsndfileError) as e:
        raise AudioError(f"{name!r}: cannot open as audio: {e}") from e
    count = 0
    with f:
        detector.reset()
        block = max(1, int(STREAM_BLOCK_SECONDS * f.samplerate))
        at = 0  # frames of the file read so far
        try:
            for x in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                bad = _non_finite_frames(x)
                if bad.size:
                    # Checked here, not left to Detector.push, so that the error names the file and counts
                    # over all of it, as read_audio does for a whole file.
                    first = at + int(bad[0])
                    total = bad.size + sum(_non_finite_frames(rest).size
                                           for rest in f.blocks(blocksize=block, dtype="float32", always_2d=True))
                    raise AudioError(f"{name!r}: {total} non-finite sample(s) (NaN or Inf), first at frame {first} "
                                     f"({first / f.samplerate:.2f} s)")
                at += x.shape[0]
                for event in detector.push(np.asarray(x), f.samplerate):
                    _print_event(event, args, file=name)
                    count += 1
        except (RuntimeError, sf.LibsndfileError) as e:
            raise AudioError(f"{name!r}: read error after {detector.time:.2f} s: {e}") from e
        for event in detector.flush():
            _print_event(event, args, file=name)
            count += 1
        missing = truncation(name, f.format, f.frames, at)
    if missing is not None:  # what is there was worth streaming; that the end is lost must still be said
        warnings.warn(f"{name!r}: truncated file: {missing}; streamed the {at / f.samplerate:.2f} s present",
                      AudioTruncatedWarning, stacklevel=2)
    return count


def _check_stream_args(args) -> None:
    """Standard input once at most, and the raw-PCM options only with it (they would do nothing)."""
    if args.files.count(STDIN) > 1:
        raise ConfigError(f"'{STDIN}' (standard input) can be streamed once only")
    given = [flag for flag, value in (("--raw-rate", args.raw_rate), ("--raw-format", args.raw_format),
                                      ("--raw-channels", args.raw_channels)) if value is not None]
    if given and STDIN not in args.files:
        raise ConfigError(f"{', '.join(given)} describe raw PCM on standard input: name '{STDIN}' as a FILE")


def _stream_stdin(detector, args) -> int:
    """Stream raw PCM from standard input as it arrives (``arecord ... -t raw | lmustream stream -``),
    printing each event when it is decided; Ctrl-C ends the stream as its end of input would."""
    from lmustream.audio.pcm import pcm_blocks

    rate, fmt, channels = args.raw_rate or RAW_DEFAULT_RATE, args.raw_format or "s16le", args.raw_channels or 1
    blocks = pcm_blocks(sys.stdin.buffer, fmt, channels, block_frames=int(STDIN_BLOCK_SECONDS * rate))
    count, at, interrupted = 0, 0, False
    detector.reset()
    try:
        for x in blocks:
            bad = _non_finite_frames(x)
            if bad.size:
                first = at + int(bad[0])
                raise AudioError(f"standard input: a non-finite sample (NaN or Inf) at frame {first} "
                                 f"({first / rate:.2f} s); stopped there")
            at += x.shape[0]
            for event in detector.push(x, rate):
                _print_event(event, args, file=STDIN)
                count += 1
    except KeyboardInterrupt:
        interrupted = True
    for event in detector.flush():
        _print_event(event, args, file=STDIN)
        count += 1
    if interrupted:
        print(f"interrupted after {at / rate:.2f} s of input", file=sys.stderr)
        raise SystemExit(130)
    return count


def _non_finite_frames(block):
    """Indices of the frames of a ``[frames, channels]`` block that would be non-finite once
    downmixed: a NaN or Inf in any channel makes the mono sample non-finite."""
    import numpy as np

    return np.flatnonzero(~np.isfinite(block).all(axis=1))


# -- listen --------------------------------------------------------------------------------------
class _MutedInput:
    """Notices an input that has delivered only exact zeros for MUTED_SECONDS since it opened
    (no real microphone does: its noise floor is never digital silence) and says so, once."""

    def __init__(self, sample_rate: int, device_name: str):
        self.limit = int(MUTED_SECONDS * sample_rate)
        self.device_name = device_name
        self.zeros = 0
        self.done = False

    def push(self, block) -> str | None:
        """The warning to show, the first time the zeros reach MUTED_SECONDS; else None."""
        if self.done:
            return None
        if block.any():
            self.done = True  # it has sound: nothing to say for the rest of the session
            return None
        self.zeros += block.size
        if self.zeros < self.limit:
            return None
        self.done = True
        return (f"warning: {self.device_name!r} has delivered only digital silence (exact zeros) for "
                f"{MUTED_SECONDS:g} s: is it muted, or the wrong device? (see --list-devices and --device)")


class _Stop:
    """Set by SIGTERM (and SIGINT when it arrives outside Python code) to end the loop cleanly."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        self.requested = True


def _meter(level_db: float, width: int = 24) -> str:
    filled = int(round(width * min(1.0, max(0.0, (level_db + 60.0) / 60.0))))
    return "#" * filled + "." * (width - filled)


def _cmd_listen(args) -> int:
    from lmustream.stream.microphone import Microphone, input_devices, level_dbfs

    if args.list_devices:
        devices = input_devices()
        if not devices:
            print("no audio input devices", file=sys.stderr)
            return 1
        print("input devices (* = default):")
        for d in devices:
            print(d.describe())
        return 0
    # The model and its settings first: a mistake in them is said before any device is opened. The
    # detector learns the device's rate from the blocks pushed to it.
    detector = _detector(args)
    mic = Microphone(args.device, block_seconds=args.block_ms / 1000.0)
    stop = _Stop()
    previous = signal.signal(signal.SIGTERM, stop)
    meter = not args.no_meter and sys.stderr.isatty()
    counts: dict[str, int] = {}
    recent: list[str] = []
    max_backlog, started = 0, time.monotonic()
    drawn, peak_db = 0.0, -120.0
    silence_deadline = started + NO_AUDIO_SECONDS
    interrupted = False
    muted = _MutedInput(mic.sample_rate, mic.device.name)
    try:
        with mic:
            print(f"listening on {mic.device.name!r} at {mic.sample_rate} Hz "
                  f"({detector.backend}; Ctrl-C to stop)", file=sys.stderr, flush=True)
            while not stop.requested and (args.seconds is None or detector.time < args.seconds):
                block = mic.read(timeout=0.5)
                if block is None:
                    if time.monotonic() > silence_deadline:
                        raise ConfigError(f"no audio arriving from {mic.device.name!r}")
                    continue
                silence_deadline = time.monotonic() + NO_AUDIO_SECONDS
                if args.seconds is not None:  # bound by audio time, not wall time
                    block = block[: max(0, int(round((args.seconds - detector.time) * mic.sample_rate)))]
                warning = muted.push(block)
                if warning:
                    print(("\r\033[K" if meter else "") + warning, file=sys.stderr, flush=True)
                events = detector.push(block, mic.sample_rate)
                max_backlog = max(max_backlog, mic.backlog)
                for event in events:
                    counts[event.keyword] = counts.get(event.keyword, 0) + 1
                    recent = (recent + [f"{event.keyword} {event.confidence:.2f} @{event.end:.1f}s"])[-3:]
                    if meter:
                        print("\r\033[K", end="", file=sys.stderr)
                    _print_event(event, args, wall_time=round(time.time(), 3))
                peak_db = max(peak_db, level_dbfs(block))
                if meter and time.monotonic() - drawn >= METER_SECONDS:  # redraw 10 times a second
                    top = int(detector.last_posteriors.argmax())
                    print(f"\r\033[K{_meter(peak_db)} {peak_db:6.1f} dBFS  "
                          f"{detector.keywords[top]} {detector.last_posteriors[top]:.2f}  "
                          f"overflows {mic.overflows}  | {'; '.join(recent)}", end="", file=sys.stderr, flush=True)
                    drawn, peak_db = time.monotonic(), -120.0
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
    audio_seconds = detector.time  # (flush starts a new stream)
    for event in detector.flush() if not interrupted else []:
        counts[event.keyword] = counts.get(event.keyword, 0) + 1
        _print_event(event, args, wall_time=round(time.time(), 3))
    if meter:
        print(file=sys.stderr)
    summary = {"type": "summary", "seconds": round(audio_seconds, 2),
               "wall_seconds": round(time.monotonic() - started, 2), "device": mic.device.name,
               "sample_rate": mic.sample_rate, "backend": detector.backend, "detections": counts,
               "input_overflows": mic.overflows, "max_backlog_blocks": max_backlog}
    if args.json:
        print(json.dumps(summary), flush=True)
    total = sum(counts.values())
    print(f"stopped after {summary['wall_seconds']:.1f} s: {total} detection(s) "
          f"{dict(sorted(counts.items()))}, {mic.overflows} input overflow(s)", file=sys.stderr)
    return 0


# -- enroll --------------------------------------------------------------------------------------
def _cmd_enroll(args) -> int:
    from lmustream.stream.enroll import check_enrollment, enroll
    from lmustream.stream.microphone import Microphone

    check_enrollment(args.word, args.count, args.out, speaker=args.speaker, seconds=args.seconds,
                     retries=args.retries)  # before opening the device
    mic = Microphone(args.device)
    with mic:
        print(f"recording {args.count} x {args.word!r} from {mic.device.name!r} at {mic.sample_rate} Hz",
              file=sys.stderr)
        saved = enroll(mic, args.word, args.count, args.out, speaker=args.speaker, seconds=args.seconds,
                       retries=args.retries)
    print(f"{len(saved)} clip(s) in {Path(args.out) / args.word}")
    return 0


# -- eval-stream and calibrate -------------------------------------------------------------------
def _progress_factory(args, what: str):
    from tqdm import tqdm

    def make(plan):
        frames = plan.n_samples // 160
        return tqdm(total=frames, unit="frame", unit_scale=True, desc=what, disable=args.no_progress,
                    file=sys.stderr, smoothing=0.1)
    return make


def _config_from_args(args):
    """The detector settings: the model's defaults, overridden by the command line."""
    from lmustream.stream.backend import model_detector_defaults, model_training_loss
    from lmustream.stream.detector import DetectorConfig, override_config, resolve_posterior

    defaults = model_detector_defaults(args.model)
    base = DetectorConfig.from_dict(defaults) if defaults else DetectorConfig()
    return resolve_posterior(override_config(base, **_settings(args)), model_training_loss(args.model))


def _keyword_list(args, labels) -> list[str]:
    from lmustream.stream.detector import check_keywords, is_keyword_label

    words = _keywords(args) or [label for label in labels if is_keyword_label(label)]
    check_keywords(words, labels, "--keywords")
    if not words:
        raise ConfigError(f"no keywords to detect among the model's labels {labels}")
    return words


def _audio_files(paths: list[str], option: str) -> list:
    """The audio files of ``option``'s files and folders. A folder without any, or files none of which
    opens as audio, is an error: left to the stream, they would quietly leave that audio out of it."""
    from lmustream.data.clips import check_audio_header, collect_audio

    files = []
    for path in paths:
        if not Path(path).exists():
            raise ConfigError(f"{option} {path}: no such file or folder")
        found = collect_audio([path])
        if not found:
            raise ConfigError(f"{option} {path}: no audio files in this folder")
        files += found
    files = sorted(set(files))
    # all() stops at the first readable file: a header or two to read, not the whole collection
    if files and all(check_audio_header(f) is not None for f in files):
        raise ConfigError(f"{option}: none of the {len(files)} file(s) can be read as audio (first: {files[0]}: "
                          f"{check_audio_header(files[0])})")
    return files


def _check_segments_length(minutes: float, lookahead: int) -> None:
    """--check-segments compares the frames the continuous stream has seen the end of: fewer frames
    than the model's look-ahead leave nothing to compare."""
    frames = int(minutes * FRAMES_PER_MINUTE)
    if minutes and frames <= lookahead:
        raise ConfigError(f"--check-segments {minutes:g} min is {frames} frame(s), within the model's look-ahead "
                          f"of {lookahead} frames: give at least {(lookahead + 1) / FRAMES_PER_MINUTE:.2g} min, "
                          "or 0 for no check")


def _cmd_eval_stream(args) -> int:
    import numpy as np

    from lmustream.stream.backend import open_kernel
    from lmustream.stream.detector import silence_logits
    from lmustream.stream.stream_eval import (RATE, build_plan, detector_events, format_summary, frame_logits,
                                              keyword_clips, pick_thresholds, plot_det, score_events, span_errors,
                                              stream_levels, summarize, sweep)

    negatives, noise = _audio_files(args.negatives, "--negatives"), _audio_files(args.noise or [], "--noise")
    kernel = open_kernel(args.model, args.backend, int8=args.int8)
    labels = list(kernel.labels)
    config = _config_from_args(args)
    keywords = _keyword_list(args, labels)
    _check_segments_length(args.check_segments, int(kernel.lookahead))
    if args.verbose:
        print(f"backend: {kernel.backend_note}\ndetector: {config}", file=sys.stderr)
    positives, others = keyword_clips(args.positives, keywords)
    plan = build_plan(positives, negatives, noise, args.hours,
                      seed=args.seed, repeats=args.repeats, other_words=others if args.other_words else None,
                      speech_level=args.speech_level, snr=args.snr)
    bar = _progress_factory(args, "eval-stream")(plan)
    try:
        logits = frame_logits(kernel, plan, progress=bar)
    finally:
        bar.close()
    result = {"model": str(args.model), "backend": kernel.backend, "detector": config.to_dict(),
              "stream": plan.composition, "max_latency_s": args.max_latency}
    if args.check_segments and (hasattr(kernel, "push_many") or hasattr(kernel, "logits_of")):
        class _Continuous:  # the same kernel without its batch path: one continuous stream
            lookahead, labels, open = kernel.lookahead, kernel.labels, kernel.open
        n = min(logits.shape[0], int(args.check_segments * FRAMES_PER_MINUTE))
        short = type(plan)(plan.items, plan.noise, (n - 1) * 160 + 400, plan.composition)
        exact = frame_logits(_Continuous(), short)[: n - kernel.lookahead]  # its last frames saw its end
        if exact.shape[0] == 0:
            raise ConfigError(f"--check-segments: the stream ({logits.shape[0]} frames) is no longer than the "
                              f"model's look-ahead ({kernel.lookahead} frames)")
        result["segmented_vs_continuous_max_abs_diff"] = float(np.abs(exact - logits[: exact.shape[0]]).max())
    levels = stream_levels(plan)
    prior = silence_logits(kernel.open(), RATE)  # the silence the Detector's window starts full of
    curves = sweep(logits, labels, plan, config, int(kernel.lookahead), max_latency=args.max_latency,
                   keywords=keywords, levels=levels, prior_logits=prior)
    table = summarize(curves, plan.hours)
    result["summary"] = table
    # the Detector itself at each keyword's 1 FA/h threshold: the same hits as the sweep, and where
    # its events put the keywords
    thresholds = pick_thresholds(curves, plan.hours, 1.0)
    events = detector_events(logits, labels, config, int(kernel.lookahead), thresholds, keywords, levels=levels,
                             prior_logits=prior)
    sweep_hits = sum(int(c.hits[list(c.thresholds).index(thresholds[k])]) for k, c in curves.items())
    result["detector_at_1_fa_per_hour"] = {"thresholds": thresholds, "events": len(events),
                                           "sweep_hits": sweep_hits,
                                           **span_errors(events, plan, args.max_latency)}
    defaults = {k: config.threshold_of(k) for k in keywords}  # what the detector does out of the box
    events = detector_events(logits, labels, config, int(kernel.lookahead), defaults, keywords, levels=levels,
                             prior_logits=prior)
    result["at_default_thresholds"] = {"thresholds": defaults,
                                       **score_events(events, plan, keywords, args.max_latency)}
    if args.json:
        print(json.dumps(result))
    else:
        print(format_summary(table, plan.composition))
        if "segmented_vs_continuous_max_abs_diff" in result:
            print(f"segmented vs continuous stream, first {args.check_segments:g} min: max |logit diff| "
                  f"{result['segmented_vs_continuous_max_abs_diff']:.2e}")
        check = result["detector_at_1_fa_per_hour"]
        fmt = lambda v: "-" if v is None else f"{v:.0f} ms"  # noqa: E731
        print(f"Detector at each keyword's 1 FA/h threshold: {check['events']} events, {check['hits']} hits "
              f"(sweep: {check['sweep_hits']}); event start / end vs the keyword's speech, median error "
              f"{fmt(check['median_start_error_ms'])} / {fmt(check['median_end_error_ms'])}")
        d = result["at_default_thresholds"]
        print(f"at the default thresholds ({', '.join(sorted({f'{t:g}' for t in d['thresholds'].values()}))}): "
              f"FRR {100 * d['frr']:.1f}%, {d['fa_per_hour']:.1f} false alarms per hour, median latency "
              f"{fmt(d['median_latency_ms'])}")
    if args.plot:  # after the figures: a plot that fails must not take them with it
        sys.stdout.flush()
        try:
            plot_det(curves, plan.hours, args.plot)
        except (ValueError, RuntimeError) as e:  # matplotlib's own refusals (OSError: main names the file)
            raise ConfigError(f"--plot {args.plot!r}: {e}") from e
        if not args.json:
            print(f"DET curves: {args.plot}")
    return 0


def _cmd_calibrate(args) -> int:
    from lmustream.stream.backend import open_kernel
    from lmustream.stream.calibrate import calibrate, write_calibrated_model, write_calibration
    from lmustream.stream.stream_eval import keyword_clips

    if args.out and args.write_model and Path(args.out).resolve() == Path(args.write_model).resolve():
        raise ConfigError(f"--out and --write-model name the same file ({args.out!r}): the model would "
                          "overwrite the calibration")
    negatives, noise = _audio_files(args.negatives, "--negatives"), _audio_files(args.noise or [], "--noise")
    kernel = open_kernel(args.model, args.backend, int8=args.int8)
    labels = list(kernel.labels)
    config = _config_from_args(args)
    keywords = _keyword_list(args, labels)
    if args.verbose:
        print(f"backend: {kernel.backend_note}\ndetector: {config}", file=sys.stderr)
    positives = keyword_clips(args.positives, keywords)[0] if args.positives else None
    result, _, plan = calibrate(kernel, negatives, noise, config,
                                args.target_fa_per_hour, args.hours, keywords, seed=args.seed,
                                positives=positives, progress_factory=_progress_factory(args, "calibrate"))
    result["model"] = str(args.model)
    if args.out:
        write_calibration(result, args.out)
    if args.write_model:
        from lmustream.models.registry import resolve_model

        write_calibrated_model(resolve_model(args.model), result, args.write_model)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"negatives: {plan.hours:.2f} h ({plan.composition['speech_items']} speech items over noise); "
          f"one false alarm = {1 / plan.hours:.2f} per hour")
    print(f"{'keyword':<12} {'threshold':>9} {'FA/h':>7}" + (f" {'FRR':>7}" if positives else ""))
    for k in keywords:
        fa = result["measured_fa_per_hour"][k]
        line = f"{k:<12} {result['thresholds'][k]:>9.4f} {'-' if fa is None else format(fa, '.2f'):>7}"
        if positives:
            frr = result["frr_at_target"][k]
            line += f" {'-' if frr is None else format(100 * frr, '.1f') + '%':>7}"
        print(line)
    if plan.hours * args.target_fa_per_hour < 1:
        print(f"note: {plan.hours:.2f} h of negatives cannot resolve {args.target_fa_per_hour:g} FA/h: the thresholds "
              "allow no false alarm at all on them (use --hours or more negatives)")
    for path in (args.out, args.write_model):
        if path:
            print(f"wrote {path}")
    return 0


# -- registration --------------------------------------------------------------------------------
def add_verbs(verbs) -> None:
    """Register stream, listen, enroll, calibrate and eval-stream on ``lmustream``'s subparsers."""
    from lmustream.cli import output_file, plot_file, positive_int

    stream = verbs.add_parser(
        "stream", help="detect keywords in audio files",
        description="Stream audio files of any length, format and sample rate through the keyword detector "
                    "(read in blocks, so memory stays constant; resampled to 16 kHz as it goes) and print one "
                    "line per detection: file, start - end (seconds), keyword, confidence. --json prints JSON "
                    "lines with type, keyword, start, end, confidence, detected_at and file. A file that cannot be "
                    "read is reported (on stderr; with --json also as a line of type \"error\") and the others "
                    "are still streamed; the exit status is then 2.")
    stream.add_argument("files", nargs="+", metavar="FILE",
                        help="audio files (WAV, FLAC, OGG, MP3, ...); - reads raw PCM from standard input as it "
                             "arrives (e.g. arecord -f S16_LE -r 16000 -c 1 -t raw | lmustream stream -, or "
                             "ffmpeg -i IN -f s16le -ac 1 -ar 16000 - | lmustream stream -); Ctrl-C ends it")
    _add_model_options(stream)
    stream.add_argument("--json", action="store_true", help="JSON lines instead of text")
    raw = stream.add_argument_group("raw PCM on standard input (FILE -)")
    raw.add_argument("--raw-rate", type=_raw_rate, metavar="HZ", help=f"sample rate (default {RAW_DEFAULT_RATE})")
    raw.add_argument("--raw-format", choices=("s16le", "s32le", "f32le"),
                     help="sample format: signed 16- or 32-bit or 32-bit float, little-endian (default s16le)")
    raw.add_argument("--raw-channels", type=_raw_channels, metavar="N",
                     help="interleaved channels, mixed down to mono (default 1)")
    _add_detector_options(stream)
    stream.set_defaults(func=_cmd_stream)

    listen = verbs.add_parser(
        "listen", help="detect keywords live from the microphone",
        description="Open an input device with PortAudio (sounddevice) at its native sample rate in small "
                    "blocks, resample to 16 kHz, detect keywords, and show a level meter with recent detections "
                    "(on a terminal). Input overflows are counted and reported, never fatal. Ctrl-C (or SIGTERM) "
                    "stops with a summary; --seconds stops after that much audio. --json prints one JSON line "
                    "per detection (type, keyword, start, end, confidence, detected_at: seconds since listening "
                    "began; wall_time) and a summary line.")
    _add_model_options(listen)
    listen.add_argument("--device", help="input device index or part of its name (default: the system default)")
    listen.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    listen.add_argument("--json", action="store_true", help="JSON lines instead of text")
    listen.add_argument("--seconds", type=_positive_seconds, help="stop after this many seconds of audio")
    listen.add_argument("--block-ms", type=_block_ms, default=20.0,
                        help=f"input block length in ms, at most {MAX_BLOCK_MS:g} (default 20)")
    listen.add_argument("--no-meter", action="store_true", help="no level meter")
    _add_detector_options(listen)
    listen.set_defaults(func=_cmd_listen)

    enroll = verbs.add_parser(
        "enroll", help="record examples of a new keyword from the microphone",
        description="Record COUNT utterances of a word, each after a prompt, trim each to a 1 s clip around the "
                    "speech (energy-based voice activity), resample to 16 kHz and save them as "
                    "OUT/WORD/SPEAKER_nohash_N.wav: a labelled folder for new-keyword fine-tuning. A take "
                    "without speech is asked for again.")
    enroll.add_argument("--word", required=True, help="the word (folder name)")
    enroll.add_argument("--count", type=positive_int, required=True, help="utterances to record")
    enroll.add_argument("--out", required=True, help="dataset folder (the clips go into OUT/WORD/)")
    enroll.add_argument("--speaker", default="user", help="speaker id in the file names (default user)")
    enroll.add_argument("--device", help="input device index or part of its name")
    enroll.add_argument("--seconds", type=_take_seconds, default=2.0, help="length of each take, at least 0.5 (default 2.0)")
    enroll.add_argument("--retries", type=non_negative_int, default=3,
                        help="takes without speech allowed per utterance (default 3)")
    enroll.set_defaults(func=_cmd_enroll)

    def add_stream_source(p, negatives_required: bool) -> None:
        p.add_argument("--negatives", nargs="+", required=negatives_required, default=[], metavar="PATH",
                       help="non-keyword speech: audio files or folders (searched recursively)")
        p.add_argument("--noise", nargs="+", metavar="PATH", help="background noise files or folders (default: none)")
        p.add_argument("--hours", type=_hours, default=1.0, help="length of the stream (default 1.0)")
        p.add_argument("--seed", type=non_negative_int, default=0, help="layout seed (default 0)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--json", action="store_true", help="print one JSON object")

    calibrate = verbs.add_parser(
        "calibrate", help="per-keyword thresholds for a target false-alarm rate",
        description="Lay the negative audio out as a continuous stream over background noise (reused in "
                    "reshuffled passes up to --hours), run the model over it once, and pick for each keyword "
                    "the lowest threshold whose false alarms per hour stay within the target. Writes a JSON "
                    "calibration that --threshold takes (--out; named MODEL.detector.json beside a model file, "
                    "it becomes that model's default) or a copy of the model with it as its default "
                    "(--write-model).")
    _add_model_options(calibrate)
    add_stream_source(calibrate, negatives_required=True)
    calibrate.add_argument("--target-fa-per-hour", type=_per_hour, default=1.0, help="per keyword (default 1.0)")
    calibrate.add_argument("--positives", help="optional: Speech Commands-style folder of keyword clips, to "
                                              "report the FRR the thresholds give")
    calibrate.add_argument("--out", type=output_file, help="write the calibration JSON here")
    calibrate.add_argument("--write-model", metavar="OUT", type=output_file,
                           help="write a copy of the model with these defaults")
    _add_detector_options(calibrate, thresholds=False)
    calibrate.set_defaults(func=_cmd_calibrate)

    ev = verbs.add_parser(
        "eval-stream", help="FRR at fixed false alarms per hour, DET curve and latency on a long stream",
        description="Build a continuous stream (deterministic by --seed): keyword clips from --positives "
                    "(one folder per word) inserted at random places between non-keyword speech (--negatives), "
                    "over background noise (--noise); run the detector's model over it once and sweep the "
                    "threshold. Reports, per keyword and pooled, the false rejection rate at 0.5, 1 and 5 false "
                    "alarms per hour, the threshold there and the median detection latency (detection time "
                    "minus the end of the keyword's speech); --plot draws the DET curves. A detection is a hit "
                    "when it comes between the start of its keyword's speech and --max-latency after its end.")
    _add_model_options(ev)
    ev.add_argument("--positives", required=True, help="Speech Commands-style folder: one folder of clips per keyword")
    add_stream_source(ev, negatives_required=False)
    ev.add_argument("--repeats", type=positive_int, default=1, help="insertions of each keyword clip (default 1)")
    ev.add_argument("--other-words", action="store_true",
                    help="also insert the clips of --positives' non-keyword folders, as negatives")
    ev.add_argument("--snr", type=_range(" in dB"), default=(5.0, 25.0), metavar="LO:HI",
                    help="speech-to-noise ratio range in dB (default 5:25)")
    ev.add_argument("--speech-level", type=_speech_level, default=(-32.0, -20.0), metavar="LO:HI",
                    help="active speech level range in dBFS (default -32:-20)")
    ev.add_argument("--max-latency", type=_seconds, default=1.0,
                    help="latest hit, seconds after the keyword's speech ends (default 1.0)")
    ev.add_argument("--plot", metavar="PNG", type=plot_file,
                    help="draw the DET curves into this image (PNG, or another format matplotlib writes, "
                         "named by the suffix)")
    ev.add_argument("--check-segments", type=_minutes, default=0.0, metavar="MIN",
                    help="also run the first MIN minutes as one continuous stream and report the largest "
                         "logit difference to the batched segments")
    _add_detector_options(ev, thresholds=False)
    ev.set_defaults(func=_cmd_eval_stream)
