"""Synthetic speakers, their speaker-disjoint split, and which speaker says each rendering.

A speaker is engine + voice + variant (``espeak-en-us-f3``, ``flite-slt-v04``) with fixed
properties drawn from ``(seed, speaker id)``: a pitch offset, a tempo and a vocal-tract
length (formant) factor. Everything here is deterministic for a seed and independent of
the order engines list their voices in.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from lmustream.data.splits import rank_speakers
from lmustream.data.synth.engines import Engine, Voice
from lmustream.errors import ConfigError

SPLITS = ("train", "validation", "test")

# Fixed per-speaker properties. Engine voices already differ in pitch (male / female
# variants), so the offset only spreads each voice a little; the formant factor is the
# vocal-tract-length trick (0.85 ~ a long adult male tract, 1.15 ~ a child's).
SPEAKER_PITCH_SEMITONES = (-3.0, 3.0)
SPEAKER_SPEED = (0.85, 1.2)
SPEAKER_FORMANT_FACTOR = (0.85, 1.15)

# Share of each split's renderings spoken by each engine (renormalised over the engines
# in use). espeak-ng has by far the most voices; Piper and Pico sound the most natural but
# have one and two voices; festival is slow (about 0.5 s a word, 20x espeak-ng) and its kal
# adds little over flite's kal. Pico came last: the others keep the shares they had before it, so
# a corpus made without it (--engines espeak,flite,festival:kal-diphone,piper) is the same as before.
DEFAULT_ENGINE_SHARES = {"espeak": 0.63, "flite": 0.20, "piper": 0.15, "festival": 0.02, "pico": 0.10}

# Stream ids for numpy SeedSequence so that different uses of one seed never share draws.
STREAM_SPEAKER = 1
STREAM_PLAN = 2


def stable_hash(text: str) -> int:
    """A 32-bit hash of ``text`` that is the same in every process and Python version (unlike hash())."""
    return zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: who speaks (engine voice) and how (fixed pitch, speed, formant factor)."""

    id: str
    voice: Voice
    pitch_semitones: float
    speed: float
    formant_factor: float

    @property
    def engine(self) -> str:
        return self.voice.engine

    def describe(self) -> dict:
        """JSON-ready description for corpus.json."""
        return {"engine": self.engine, "voice": self.voice.id, "pitch_semitones": round(self.pitch_semitones, 3),
                "speed": round(self.speed, 4), "formant_factor": round(self.formant_factor, 4)}


def make_speakers(engines: list[Engine], seed: int) -> list[Speaker]:
    """Every speaker of ``engines``: each voice once, or ``engine.variants_per_voice`` times (``-v00``, ``-v01``, ...)."""
    speakers = []
    for engine in engines:
        for voice in engine.voices():
            n = engine.variants_per_voice
            ids = [f"{engine.name}-{voice.id}"] if n == 1 else [f"{engine.name}-{voice.id}-v{i:02d}" for i in range(n)]
            speakers += [_speaker(speaker_id, voice, seed) for speaker_id in ids]
    seen = Counter(s.id for s in speakers)
    duplicates = [name for name, count in seen.items() if count > 1]
    if duplicates:
        raise ConfigError(f"two voices map to the same speaker id(s) {duplicates[:5]}")
    return speakers


def _speaker(speaker_id: str, voice: Voice, seed: int) -> Speaker:
    rng = np.random.default_rng([seed, STREAM_SPEAKER, stable_hash(speaker_id)])
    return Speaker(speaker_id, voice, pitch_semitones=float(rng.uniform(*SPEAKER_PITCH_SEMITONES)),
                   speed=float(rng.uniform(*SPEAKER_SPEED)), formant_factor=float(rng.uniform(*SPEAKER_FORMANT_FACTOR)))


def _held_out_count(fraction: float, total: int) -> int:
    return 0 if fraction <= 0 else max(1, round(fraction * total))


def assign_splits(speakers: list[Speaker], val_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, str]:
    """Speaker id -> "train" / "validation" / "test", by whole speakers, stratified by engine.

    Each engine gives ``val_fraction`` and ``test_fraction`` of its speakers (at least one
    when the fraction is > 0) to the held-out splits, chosen by the project's seeded
    speaker ranking, so every split hears every engine. An engine keeps at least one
    speaker for training; with fewer than three speakers it cannot fill every split.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction must be < 1 to leave speakers for training, "
                          f"got {val_fraction} + {test_fraction}")
    by_engine: dict[str, list[str]] = defaultdict(list)
    for speaker in speakers:
        by_engine[speaker.engine].append(speaker.id)
    split_of = {}
    for engine, ids in by_engine.items():
        ranked = rank_speakers(ids, seed)
        n_val = min(_held_out_count(val_fraction, len(ranked)), len(ranked) - 1)
        n_test = min(_held_out_count(test_fraction, len(ranked)), len(ranked) - 1 - n_val)
        for i, speaker_id in enumerate(ranked):
            split_of[speaker_id] = "validation" if i < n_val else "test" if i < n_val + n_test else "train"
    return split_of


@dataclass(frozen=True)
class Rendering:
    """One file to make: ``word`` said by ``speaker`` for the ``index``-th time (its ``_nohash_`` number)."""

    word: str
    speaker: Speaker
    index: int
    split: str

    @property
    def relative_path(self) -> str:
        return f"{self.word}/{self.speaker.id}_nohash_{self.index}.wav"


def split_counts(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Renderings of one word per split: the held-out fractions of ``n`` rounded, the rest train."""
    n_val = round(n * val_fraction)
    n_test = round(n * test_fraction)
    return {"train": n - n_val - n_test, "validation": n_val, "test": n_test}


def plan_renderings(words: list[str], speakers: list[Speaker], split_of: dict[str, str], n_per_word: int,
                    val_fraction: float, test_fraction: float, seed: int,
                    engine_shares: dict[str, float] | None = None) -> list[Rendering]:
    """The renderings of every word: ``n_per_word`` each, split in proportion to the fractions.

    Within a split, each rendering's engine is drawn by ``engine_shares`` and its speaker
    taken in turn from a per-(word, engine) shuffle of that engine's speakers in the
    split, so speakers are used evenly before any repeats. A word's plan depends only on
    the seed, the word and the speakers, not on the other words.
    """
    shares = _normalised_shares(engine_shares or DEFAULT_ENGINE_SHARES, {s.engine for s in speakers})
    pools: dict[tuple[str, str], list[Speaker]] = defaultdict(list)
    for speaker in speakers:
        pools[(split_of[speaker.id], speaker.engine)].append(speaker)
    plan = []
    for word in words:
        rng = np.random.default_rng([seed, STREAM_PLAN, stable_hash(word)])
        used: Counter = Counter()
        for split, count in split_counts(n_per_word, val_fraction, test_fraction).items():
            engines = sorted(e for e in shares if shares[e] > 0 and pools.get((split, e)))
            if count and not engines:
                raise ConfigError(f"no speaker is assigned to the {split} split; lower the number of held-out "
                                  "speakers or use more voices")
            if not count:
                continue
            weights = np.array([shares[e] for e in engines])
            drawn = rng.choice(len(engines), size=count, p=weights / weights.sum())
            for e_index, engine in enumerate(engines):
                order = rng.permutation(len(pools[(split, engine)]))
                n_engine = int(np.sum(drawn == e_index))
                for j in range(n_engine):
                    speaker = pools[(split, engine)][order[j % len(order)]]
                    plan.append(Rendering(word, speaker, used[speaker.id], split))
                    used[speaker.id] += 1
    return plan


def _normalised_shares(shares: dict[str, float], engines: set[str]) -> dict[str, float]:
    unknown = [e for e in engines if e not in shares]
    if unknown:
        raise ConfigError(f"engine_shares has no share for engine(s) {sorted(unknown)}")
    bad = {e: v for e, v in shares.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)}
    if bad:
        raise ConfigError(f"engine_shares must be finite numbers >= 0, got {bad}")
    used = {e: float(shares[e]) for e in engines}
    total = sum(used.values())
    if total <= 0:
        raise ConfigError(f"engine_shares of the engines in use ({sorted(engines)}) add up to 0")
    return {e: v / total for e, v in used.items()}


def speaker_table(speakers: list[Speaker], split_of: dict[str, str]) -> dict[str, dict]:
    """Speaker id -> its corpus.json description including its split."""
    return {s.id: {**s.describe(), "split": split_of[s.id]} for s in speakers}

