"""``lmustream data synth``: options (``add_arguments``) and the command (``run``), which returns an exit code."""

from __future__ import annotations

import argparse
import os
import time

from lmustream.data.labels import SPEECH_COMMANDS_V2_WORDS
from lmustream.data.synth.corpus import (DEFAULT_BABBLE_TALKERS, DEFAULT_NOISE_SECONDS, DEFAULT_RENDERINGS_PER_WORD,
                                         SynthConfig, synthesize_corpus)
from lmustream.data.synth.engines import ENGINE_CLASSES, get_engine
from lmustream.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``data synth`` options to ``parser``."""
    parser.add_argument("--words", default=",".join(SPEECH_COMMANDS_V2_WORDS),
                        help="comma-separated words to speak (default: the 35 Speech Commands v2 words)")
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


def _list_engines() -> int:
    for name in ENGINE_CLASSES:
        engine = get_engine(name)
        if not engine.available():
            print(f"{name:<9} not installed")
            continue
        voices = engine.voices()
        sample = ", ".join(v.id for v in voices[:6]) + (", ..." if len(voices) > 6 else "")
        print(f"{name:<9} {engine.version():<18} {len(voices):>4} voice(s) x {engine.variants_per_voice} "
              f"speaker(s) each: {sample}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``lmustream data synth`` with parsed ``args``; 0 on success (errors raise LmuStreamError)."""
    if args.list_engines:
        return _list_engines()
    if not args.out:
        raise ConfigError("--out is required: the folder to write the corpus to")
    config = SynthConfig(out_dir=args.out, words=args.words, seed=args.seed,
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
