"""``lmustream data synth``: options (``add_arguments``) and the command (``run``), which returns an exit code."""

from __future__ import annotations

import argparse
import os
import time

from lmustream.data.labels import SPEECH_COMMANDS_V2_WORDS
from lmustream.data.synth.corpus import (DEFAULT_BABBLE_TALKERS, DEFAULT_NOISE_SECONDS, DEFAULT_RENDERINGS_PER_WORD,
                                         SynthConfig, read_words_file, synthesize_corpus)
from lmustream.data.synth.engines import (DEFAULT_LANGUAGE, ENGINE_CLASSES, MULTILINGUAL_ENGINES, check_language,
                                          get_engine)
from lmustream.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``data synth`` options to ``parser``."""
    parser.add_argument("--words", default=None,
                        help="comma-separated words to speak (default: the 35 Speech Commands v2 words); an "
                             "entry WORD=TEXT speaks TEXT into the folder WORD, e.g. 'open=افتح' with "
                             "--language ar. A word may hold single spaces ('zoom in')")
    parser.add_argument("--words-file", default=None,
                        help="UTF-8 file with one WORD, WORD=TEXT or WORD<tab>TEXT per line (# comments); "
                             "instead of --words")
    parser.add_argument("--language", default=DEFAULT_LANGUAGE,
                        help="espeak-ng language code of the speech (default en). English uses every "
                             "engine; another language (ar, de, hi, pt-br, ...) uses espeak-ng's voices "
                             "of it, the only engine here that speaks more than English")
    parser.add_argument("--out", help="output folder (created; must be empty unless --overwrite)")
    parser.add_argument("--seed", type=int, default=0, help="seed: the same seed gives identical files (default 0)")
    parser.add_argument("--renderings-per-word", type=int, default=DEFAULT_RENDERINGS_PER_WORD,
                        help=f"clips per word, across speakers and jitter (default {DEFAULT_RENDERINGS_PER_WORD})")
    parser.add_argument("--engines", default=None,
                        help=f"comma-separated TTS engines among {','.join(ENGINE_CLASSES)} "
                             "(default: every installed one; espeak-ng must be installed); ENGINE:VOICE+VOICE "
                             "keeps only those voices (ids as --list-engines prints them), e.g. "
                             "festival:kal-diphone to make a corpus as it was before more festival voices "
                             "were installed")
    parser.add_argument("--jobs", type=int, default=None,
                        help=f"worker processes (default: the number of CPUs, {os.cpu_count()})")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of each engine's speakers held out for validation (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1,
                        help="share of each engine's speakers held out for testing (default 0.1)")
    parser.add_argument("--noise-seconds", type=float, default=DEFAULT_NOISE_SECONDS,
                        help=f"length of each background-noise file (default {DEFAULT_NOISE_SECONDS:g})")
    parser.add_argument("--babble-talkers", type=int, default=DEFAULT_BABBLE_TALKERS,
                        help=f"voices mixed into the babble noise (default {DEFAULT_BABBLE_TALKERS})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a corpus this tool wrote earlier in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list-engines", action="store_true",
                        help="list the TTS engines, whether each is installed, and its voices; then exit")


def _list_engines(language: str) -> int:
    for name in ENGINE_CLASSES:
        if language != DEFAULT_LANGUAGE and name not in MULTILINGUAL_ENGINES:
            print(f"{name:<9} English only")
            continue
        engine = get_engine(name, language)
        if not engine.available():
            print(f"{name:<9} not installed" + (f" or no voice for {language!r}" if language != DEFAULT_LANGUAGE else ""))
            continue
        voices = engine.voices()
        sample = ", ".join(v.id for v in voices[:6]) + (", ..." if len(voices) > 6 else "")
        print(f"{name:<9} {engine.version():<18} {len(voices):>4} voice(s) x {engine.variants_per_voice} "
              f"speaker(s) each: {sample}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``lmustream data synth`` with parsed ``args``; 0 on success (errors raise LmuStreamError)."""
    check_language(args.language)
    if args.list_engines:
        return _list_engines(args.language)
    if not args.out:
        raise ConfigError("--out is required: the folder to write the corpus to")
    if args.words is not None and args.words_file is not None:
        raise ConfigError("give the words with --words or --words-file, not both")
    words = (read_words_file(args.words_file) if args.words_file is not None
             else args.words if args.words is not None else list(SPEECH_COMMANDS_V2_WORDS))
    config = SynthConfig(out_dir=args.out, words=words, language=args.language, seed=args.seed,
                         renderings_per_word=args.renderings_per_word, engines=args.engines, jobs=args.jobs,
                         val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                         noise_seconds=args.noise_seconds, babble_talkers=args.babble_talkers,
                         overwrite=args.overwrite, progress=not args.no_progress)
    start = time.perf_counter()
    manifest = synthesize_corpus(config)
    elapsed = time.perf_counter() - start
    counts = manifest["counts"]
    engines = ", ".join(f"{name} ({info['speakers']} speakers)" for name, info in manifest["engines"].items())
    print(f"wrote {counts['files']} clips of {len(manifest['words'])} word(s) to {args.out} in {elapsed:.1f} s "
          f"({counts['files'] / max(elapsed, 1e-9):.1f} clips/s)")
    print(f"engines: {engines}")
    print("per split: " + ", ".join(f"{k} {v}" for k, v in sorted(counts["per_split"].items())))
    if manifest["failed"]:
        print(f"skipped {len(manifest['failed'])} failed rendering(s); see corpus.json")
    return 0
