"""Write a synthetic keyword-spotting corpus in the Speech Commands layout.

``synthesize_corpus(SynthConfig(out_dir=..., words=...))`` produces::

    DIR/<word>/<speaker>_nohash_<n>.wav     16 kHz mono 16-bit, one second each
    DIR/validation_list.txt                 paths relative to DIR, speaker-disjoint
    DIR/testing_list.txt                    from each other and from training
    DIR/_background_noise_/{white,pink,brown,babble}_noise.wav
    DIR/corpus.json                         engines, voices, speakers, settings, seed, counts

Renderings run in a process pool (``jobs``); each file depends only on the seed, the word
and the speaker, so the corpus is byte-identical for a seed whatever the number of jobs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from lmustream.audio.io import write_audio
from lmustream.data.labels import SPEECH_COMMANDS_V2_WORDS
from lmustream.data.synth import noise, render
from lmustream.data.synth.engines import (DEFAULT_LANGUAGE, Engine, EngineError, VoiceSelection, available_engines,
                                          canonical_engine_name, check_language, get_engine)
from lmustream.data.synth.speakers import (DEFAULT_ENGINE_SHARES, SPLITS, Rendering, Speaker, assign_splits,
                                           make_speakers, plan_renderings, speaker_table)
from lmustream.errors import ConfigError

CORPUS_FORMAT = "lmustream-synth-corpus"
CORPUS_VERSION = 1
MANIFEST_NAME = "corpus.json"
LIST_FILES = {"validation": "validation_list.txt", "test": "testing_list.txt"}
NOISE_FOLDER = "_background_noise_"
REQUIRED_ENGINE = "espeak"  # the default engine set must include it: it supplies most of the voices

DEFAULT_RENDERINGS_PER_WORD = 500
DEFAULT_NOISE_SECONDS = 60.0  # as long as the Speech Commands noise files
MIN_NOISE_SECONDS = 1.0  # a _silence_ clip is cut from one second of noise
DEFAULT_BABBLE_TALKERS = 6
# A few failed renderings (an engine choking on one voice) are skipped and reported; more
# than this share means something is broken and the run stops.
MAX_FAILED_FRACTION = 0.02
POOL_CHUNKSIZE = 8  # renderings handed to a worker at a time: amortises IPC, keeps the bar moving

# A word is a label and a folder name: letters, single inner apostrophes, hyphens or spaces ("zoom in").
WORD_PATTERN = re.compile(r"[a-z]+(?:['\- ][a-z]+)*")
MAX_WORD_LENGTH = 40
MAX_TEXT_LENGTH = 100


@dataclass
class SynthConfig:
    """What to synthesize and where. ``engines=None`` means every installed engine (espeak-ng required).

    ``words``: labels (folder names), each spoken as written, or ``label=text`` entries that say
    ``text`` (any script, e.g. ``open=اِفْتَح``) into the folder ``label``. ``language``: an espeak-ng
    language code; English (the default) may use every engine, any other language espeak-ng only.
    """

    out_dir: str | os.PathLike
    words: Sequence[str] | str = SPEECH_COMMANDS_V2_WORDS
    language: str = DEFAULT_LANGUAGE
    seed: int = 0
    renderings_per_word: int = DEFAULT_RENDERINGS_PER_WORD
    engines: Sequence[str] | str | None = None
    jobs: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    noise_seconds: float = DEFAULT_NOISE_SECONDS
    babble_talkers: int = DEFAULT_BABBLE_TALKERS
    engine_shares: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ENGINE_SHARES))
    overwrite: bool = False
    progress: bool = True


def _split_list(value: Sequence[str] | str) -> list[str]:
    if isinstance(value, str):
        return value.split(",")
    return [str(v) for v in value]


def validate_words(words: Sequence[str] | str) -> list[str]:
    """``words`` (a list or a comma-separated string) as lower-case folder-safe words; ConfigError otherwise.

    A word is letters with single inner apostrophes, hyphens or spaces ("yes", "don't", "x-ray",
    "zoom in"); an entry ``label=text`` names the word ``label`` (see :func:`word_texts`).
    Empty entries, other characters and duplicates are errors, each named in the message.
    """
    return list(word_texts(words))


def word_texts(words: Sequence[str] | str) -> dict[str, str]:
    """``{word: text to speak}`` for a word list of ``word`` or ``word=text`` entries, in list order.

    The text of a plain entry is the word itself. A text is any non-empty line of at most
    MAX_TEXT_LENGTH characters (it goes to the engine, never to a file name).
    """
    entries = _split_list(words)
    if not entries or all(not e.strip() for e in entries):
        raise ConfigError("the word list is empty; give words like --words yes,no,up")
    cleaned, texts, problems = [], {}, []
    for position, entry in enumerate(entries, 1):
        label, equals, text = entry.partition("=")
        word, text = label.strip().lower(), " ".join(text.split())
        if not word:
            problems.append(f"entry {position} is empty" if not equals else f"entry {position} has no word before '='")
        elif len(word) > MAX_WORD_LENGTH:
            problems.append(f"{entry!r} is longer than {MAX_WORD_LENGTH} characters")
        elif not WORD_PATTERN.fullmatch(word):
            problems.append(f"{label.strip()!r} has characters other than letters and inner ', - or single spaces")
        elif equals and not text:
            problems.append(f"{entry!r} has nothing to say after '='")
        elif len(text) > MAX_TEXT_LENGTH:
            problems.append(f"the text of {word!r} is longer than {MAX_TEXT_LENGTH} characters")
        else:
            cleaned.append(word)
            texts.setdefault(word, text or word)
    duplicates = sorted(w for w, n in Counter(cleaned).items() if n > 1)
    if duplicates:
        problems.append(f"duplicate word(s) {duplicates}")
    if problems:
        raise ConfigError("bad word list: " + "; ".join(problems))
    return texts


def read_words_file(path: str | os.PathLike) -> list[str]:
    """The entries of a word-list file: one ``word``, ``word=text`` or ``word<TAB>text`` per line.

    Blank lines and lines starting with ``#`` are skipped. The file must be UTF-8.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()  # -sig: a BOM is not part of the first word
    except FileNotFoundError:
        raise ConfigError(f"word-list file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"word-list file {str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"cannot read word-list file {str(path)!r}: {e.strerror or e}") from None
    entries = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "," in line:
            raise ConfigError(f"{path}, line {number}: one word per line (no commas): {line!r}")
        entries.append("=".join(part.strip() for part in line.split("\t", 1)) if "\t" in line else line)
    if not entries:
        raise ConfigError(f"word-list file {str(path)!r} holds no words")
    return entries


def resolve_engines(names: Sequence[str] | str | None, language: str = DEFAULT_LANGUAGE) -> list[Engine]:
    """The engines to use: the named ones (each must be installed), or all installed ones with espeak-ng among them.

    An entry ``engine:voice+voice`` keeps only those voices of the engine (ids as ``--list-engines`` prints them).
    Each engine speaks ``language`` with all its voices of that language; one that has none is a ConfigError.
    """
    hint = "scripts/install_tts.sh installs the engines"
    if names is None:
        found = available_engines(language)
        if REQUIRED_ENGINE not in found:
            if language != DEFAULT_LANGUAGE and get_engine(REQUIRED_ENGINE).available():
                raise ConfigError(f"espeak-ng has no voice for language {language!r} "
                                  "(`espeak-ng --voices` lists the languages it speaks)")
            raise ConfigError(f"espeak-ng is not installed (needed by default); {hint}, or name other "
                              f"engines with --engines (installed: {', '.join(found) or 'none'})")
        return [get_engine(n, language) for n in found]
    selections: dict[str, list[str] | None] = {}
    for entry in (e.strip() for e in _split_list(names)):
        if not entry:
            continue
        name, colon, voice_list = entry.partition(":")
        key = canonical_engine_name(name)
        voice_ids = [v.strip() for v in voice_list.split("+") if v.strip()]
        if colon and not voice_ids:
            raise ConfigError(f"{entry!r}: name the voices after the colon, e.g. festival:kal-diphone+ked-diphone")
        if key in selections and selections[key] != (voice_ids or None):
            raise ConfigError(f"engine {key!r} is named twice in the engine list, with different voices")
        selections[key] = voice_ids or None
    if not selections:
        raise ConfigError("the engine list is empty; name engines like --engines espeak,flite")
    missing = [n for n in selections if not get_engine(n).available()]
    if missing:
        raise ConfigError(f"TTS engine(s) not installed: {', '.join(missing)}; {hint}")
    silent = [n for n in selections if not get_engine(n, language).voices()]
    if silent:
        raise ConfigError(f"{', '.join(silent)} has no voice for language {language!r} "
                          "(`espeak-ng --voices` lists the languages espeak-ng speaks)")
    return [get_engine(n, language) if voice_ids is None else VoiceSelection(get_engine(n, language), voice_ids)
            for n, voice_ids in selections.items()]


def _check_config(config: SynthConfig) -> None:
    def integer(name, value, low):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")

    check_language(config.language)
    integer("seed", config.seed, 0)
    integer("renderings_per_word", config.renderings_per_word, 1)
    integer("babble_talkers", config.babble_talkers, 1)
    if config.jobs is not None:
        integer("jobs", config.jobs, 1)
    seconds = config.noise_seconds
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not MIN_NOISE_SECONDS <= seconds <= 3600:
        raise ConfigError(f"noise_seconds must be a number in [{MIN_NOISE_SECONDS}, 3600], got {seconds!r}")


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready: absent or empty, or (with ``overwrite``) holding a corpus of ours, which is removed."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {str(out)!r} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    manifest = out / MANIFEST_NAME
    if not overwrite:
        raise ConfigError(f"output folder {str(out)!r} is not empty; choose a new folder, or pass --overwrite "
                          "to replace a corpus this tool made there")
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"refusing to overwrite {str(out)!r}: it has no readable {MANIFEST_NAME} of a "
                          f"synthetic corpus ({e})") from e
    if not isinstance(previous, dict) or previous.get("format") != CORPUS_FORMAT:
        raise ConfigError(f"refusing to overwrite {str(out)!r}: its {MANIFEST_NAME} is not from lmustream data synth")
    # Remove only what a previous run wrote (word folders whose names pass today's checks).
    for word in previous.get("words", []):
        if isinstance(word, str) and WORD_PATTERN.fullmatch(word) and (out / word).is_dir():
            shutil.rmtree(out / word)
    if (out / NOISE_FOLDER).is_dir():
        shutil.rmtree(out / NOISE_FOLDER)
    for name in LIST_FILES.values():
        (out / name).unlink(missing_ok=True)
    manifest.unlink()


# --------------------------------------------------------------------------- pool jobs (top level: picklable)

def _word_job(job: tuple[Rendering, str, int, str]) -> tuple[str, str | None, str | None]:
    """Render and write one clip: ``(relative path, fit, None)`` or ``(relative path, None, error)``."""
    rendering, text, seed, out_dir = job
    try:
        clip, info = render.render_clip(rendering.word, rendering.speaker, rendering.index, seed, text=text)
    except EngineError as e:
        return rendering.relative_path, None, str(e)
    write_audio(Path(out_dir) / rendering.relative_path, clip, render.SAMPLE_RATE)
    return rendering.relative_path, info.fit, None


def _babble_job(job: tuple[int, float, list[Speaker], list[str], int]) -> np.ndarray:
    stream, seconds, speakers, vocabulary, seed = job
    return noise.babble_stream(stream, seconds, speakers, vocabulary, seed)


class _InlinePool:
    """The Pool methods used here, run in this process (jobs=1: simpler tracebacks, no start-up cost)."""

    def imap_unordered(self, fn, items, chunksize=1):
        return map(fn, items)

    def apply_async(self, fn, args):
        value = fn(*args)
        return type("Done", (), {"get": lambda self, timeout=None: value})()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------------------- the corpus

def _write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / MANIFEST_NAME)


def synthesize_corpus(config: SynthConfig) -> dict:
    """Write the corpus ``config`` describes and return its manifest (what corpus.json holds).

    Raises ConfigError for bad settings (before anything is written) and EngineError when
    more than MAX_FAILED_FRACTION of the renderings fail; fewer failures are skipped, warned
    about and listed in the manifest.
    """
    _check_config(config)
    texts = word_texts(config.words)
    words = list(texts)
    engines = resolve_engines(config.engines, config.language)
    seed = int(config.seed)
    speakers = make_speakers(engines, seed)
    split_of = assign_splits(speakers, config.val_fraction, config.test_fraction, seed)
    plan = plan_renderings(words, speakers, split_of, config.renderings_per_word, config.val_fraction,
                           config.test_fraction, seed, config.engine_shares)
    vocabulary = [w for w in noise.BABBLE_VOCABULARY if w not in set(words)]
    babble_speakers = [s for s in speakers if split_of[s.id] == "train"]
    out = Path(os.path.abspath(os.fspath(config.out_dir)))
    _prepare_output(out, config.overwrite)

    manifest = {
        "format": CORPUS_FORMAT, "version": CORPUS_VERSION, "complete": False, "seed": seed, "words": words,
        **({"language": config.language} if config.language != DEFAULT_LANGUAGE else {}),
        **({"texts": texts} if any(text != word for word, text in texts.items()) else {}),
        "renderings_per_word": config.renderings_per_word,
        "val_fraction": config.val_fraction, "test_fraction": config.test_fraction,
        "engines": {e.name: {"version": e.version(), "voices": [v.id for v in e.voices()],
                             "speakers": sum(s.engine == e.name for s in speakers),
                             "share": config.engine_shares.get(e.name, 0.0)} for e in engines},
        "settings": {**render.settings(), "noise_seconds": config.noise_seconds,
                     "babble_talkers": config.babble_talkers, "noise_level_dbfs": noise.NOISE_LEVEL_DBFS},
        "speakers": speaker_table(speakers, split_of),
    }
    _write_manifest(out, manifest)  # marks the folder as ours even if the run is interrupted
    for word in words:
        (out / word).mkdir(exist_ok=True)
    (out / NOISE_FOLDER).mkdir(exist_ok=True)

    jobs = config.jobs or os.cpu_count() or 1
    written, failed, fits = {}, {}, Counter()
    split_of_path = {r.relative_path: r.split for r in plan}
    pool = _InlinePool() if jobs == 1 else multiprocessing.get_context("spawn").Pool(jobs)
    with pool, tqdm(total=len(plan) + config.babble_talkers, unit="clip", disable=not config.progress,
                    desc="synth") as bar:
        # Babble streams are the longest jobs: queue them first so they do not finish last.
        babble = [pool.apply_async(_babble_job, ((i, config.noise_seconds, babble_speakers, vocabulary, seed),))
                  for i in range(config.babble_talkers)]
        for path, fit, error in pool.imap_unordered(_word_job, ((r, texts[r.word], seed, str(out)) for r in plan), POOL_CHUNKSIZE):
            if error is None:
                written[path] = split_of_path[path]
                fits[fit] += 1
            else:
                failed[path] = error
            bar.update()
        streams = []
        for job in babble:
            streams.append(job.get())
            bar.update()

    if len(failed) > MAX_FAILED_FRACTION * len(plan):
        first = "; ".join(f"{p}: {e}" for p, e in sorted(failed.items())[:3])
        raise EngineError(f"{len(failed)} of {len(plan)} renderings failed (more than "
                          f"{MAX_FAILED_FRACTION:.0%}); first: {first}")
    if failed:
        warnings.warn(f"{len(failed)} of {len(plan)} renderings failed and were skipped; see "
                      f"'failed' in {out / MANIFEST_NAME}", stacklevel=2)

    noise_files = _write_noise(out, streams, config.noise_seconds, seed)
    for split, name in LIST_FILES.items():
        paths = sorted(p for p, s in written.items() if s == split)
        (out / name).write_text("".join(p + "\n" for p in paths), encoding="utf-8")

    manifest.update(complete=True, counts=_counts(words, written, plan), fits=dict(sorted(fits.items())),
                    noise_files=noise_files, failed=dict(sorted(failed.items())))
    _write_manifest(out, manifest)
    return manifest


def _write_noise(out: Path, streams: list[np.ndarray], seconds: float, seed: int) -> list[str]:
    files = {f"{colour}_noise.wav": noise.coloured_noise(colour, seconds, seed) for colour in noise.COLOURS}
    files["babble_noise.wav"] = noise.mix_babble(streams, seed)
    for name, samples in files.items():
        write_audio(out / NOISE_FOLDER / name, samples, render.SAMPLE_RATE)
    return [f"{NOISE_FOLDER}/{name}" for name in files]


def _counts(words: Iterable[str], written: dict[str, str], plan: list[Rendering]) -> dict:
    made = [r for r in plan if r.relative_path in written]
    per_word = Counter(r.word for r in made)
    speakers_used = {(r.speaker.id, r.split) for r in made}
    return {"files": len(made), "planned": len(plan),
            "per_word": {w: per_word[w] for w in words},
            "per_split": _in_order(Counter(r.split for r in made), SPLITS),
            "per_engine": _in_order(Counter(r.speaker.engine for r in made), sorted({r.speaker.engine for r in plan})),
            "speakers_per_split": _in_order(Counter(split for _, split in speakers_used), SPLITS)}


def _in_order(counts: Counter, keys: Iterable[str]) -> dict[str, int]:
    """``counts`` as a dict in the order of ``keys`` (a fixed order keeps corpus.json byte-identical)."""
    return {key: counts[key] for key in keys}
