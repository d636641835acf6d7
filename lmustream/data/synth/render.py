"""One rendering, start to finish: engine speech -> 16 kHz, speaker's vocal tract -> a one-second clip in a room.

``render_clip(word, speaker, index, seed)`` is a pure function of its arguments (the
installed engines aside): every random choice comes from a generator seeded with
``(seed, word, speaker id, index)``, so a clip is the same whichever worker makes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmustream.data.synth import effects
from lmustream.data.synth.engines import EngineError, get_engine
from lmustream.data.synth.speakers import Speaker, stable_hash

SAMPLE_RATE = 16000  # Hz, as Speech Commands
CLIP_SECONDS = 1.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
# The word never touches the clip's edges: the first and last 10 ms stay silent.
EDGE_MARGIN_SAMPLES = int(0.010 * SAMPLE_RATE)
# Words longer than the clip are sped up by at most this factor before the rest is cropped
# (see effects.fit_length); 1.3x faster still sounds like fast speech, not like a glitch.
MAX_COMPRESSION = 1.3
TRIM_THRESHOLD_DB = -40.0  # frames this far below the loudest frame count as silence

# Per-rendering jitter on top of the speaker's fixed properties.
JITTER_PITCH_SEMITONES = 1.0  # +- this many semitones
JITTER_SPEED = 0.08  # tempo x (1 +- this)
WORD_LEVEL_DBFS = (-32.0, -14.0)  # RMS of the word itself, before the room
RT60_SECONDS = (0.1, 0.6)
DIRECT_TO_REVERB_DB = (0.0, 12.0)
DRY_PROBABILITY = 0.15  # share of renderings left without a room (close-talking microphone)

STREAM_RENDER = 3  # SeedSequence stream id (see speakers.STREAM_*)


def settings() -> dict:
    """The rendering constants, for corpus.json."""
    return {"sample_rate": SAMPLE_RATE, "clip_seconds": CLIP_SECONDS, "edge_margin_samples": EDGE_MARGIN_SAMPLES,
            "max_compression": MAX_COMPRESSION, "trim_threshold_db": TRIM_THRESHOLD_DB,
            "jitter_pitch_semitones": JITTER_PITCH_SEMITONES, "jitter_speed": JITTER_SPEED,
            "word_level_dbfs": list(WORD_LEVEL_DBFS), "rt60_seconds": list(RT60_SECONDS),
            "direct_to_reverb_db": list(DIRECT_TO_REVERB_DB), "dry_probability": DRY_PROBABILITY}


def rendering_rng(seed: int, word: str, speaker_id: str, index: int) -> np.random.Generator:
    """The generator of every random choice in one rendering."""
    return np.random.default_rng([seed, STREAM_RENDER, stable_hash(word), stable_hash(speaker_id), index])


def speak(text: str, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """``text`` said by ``speaker`` with per-rendering jitter: trimmed, 16 kHz, the speaker's vocal tract.

    The engine is asked for a pitch lowered by the formant shift so that, after
    :func:`effects.change_vocal_tract` raises pitch and formants together, only the formants
    end up moved (for engines with a native pitch control). EngineError when the engine
    fails or says nothing audible.
    """
    pitch = speaker.pitch_semitones + rng.uniform(-JITTER_PITCH_SEMITONES, JITTER_PITCH_SEMITONES)
    speed = speaker.speed * (1.0 + rng.uniform(-JITTER_SPEED, JITTER_SPEED))
    engine_pitch = pitch - 12.0 * math.log2(speaker.formant_factor)
    samples, rate = get_engine(speaker.engine).render(text, speaker.voice, pitch=engine_pitch, speed=speed)
    trimmed = effects.trim_silence(samples, rate, TRIM_THRESHOLD_DB)
    if trimmed.size == 0:
        raise EngineError(f"{speaker.id}: rendering {text!r} is silent")
    audio = effects.resample(trimmed, rate, SAMPLE_RATE)
    return effects.change_vocal_tract(audio, SAMPLE_RATE, speaker.formant_factor)


@dataclass(frozen=True)
class ClipInfo:
    """How a clip was made: word placement and the room, for statistics."""

    fit: str  # "kept", "compressed" or "compressed+cropped" (see effects.fit_length)
    word_seconds: float
    offset_seconds: float
    rt60: float | None  # None: dry


def render_clip(word: str, speaker: Speaker, index: int, seed: int,
                text: str | None = None) -> tuple[np.ndarray, ClipInfo]:
    """The ``index``-th rendering of ``word`` by ``speaker``: one second of 16 kHz float32, and how it was made.

    ``text`` is what the engine says (default: the word itself; e.g. the Arabic for the label
    ``open``); the random choices depend on the word, not the text.
    The word (trimmed, fitted to the clip) starts at a random offset, then the whole clip
    goes through a random synthetic room, so the reverberation tail stays inside the second.
    """
    rng = rendering_rng(seed, word, speaker.id, index)
    # Draw every room and level choice up front so the draws do not depend on the branch taken.
    level = rng.uniform(*WORD_LEVEL_DBFS)
    dry = rng.random() < DRY_PROBABILITY
    rt60 = rng.uniform(*RT60_SECONDS)
    direct_to_reverb = rng.uniform(*DIRECT_TO_REVERB_DB)
    placement = rng.random()
    room_rng = np.random.default_rng(rng.integers(2 ** 63))
    audio = speak(word if text is None else text, speaker, rng)
    fitted, fit = effects.fit_length(audio, CLIP_SAMPLES - 2 * EDGE_MARGIN_SAMPLES, SAMPLE_RATE, MAX_COMPRESSION)
    fitted = effects.fade_edges(effects.set_level(fitted, level), SAMPLE_RATE)
    free = CLIP_SAMPLES - 2 * EDGE_MARGIN_SAMPLES - fitted.size
    offset = EDGE_MARGIN_SAMPLES + int(placement * (free + 1))
    clip = np.zeros(CLIP_SAMPLES, np.float32)
    clip[offset:offset + fitted.size] = fitted
    if not dry:
        clip = effects.reverberate(clip, SAMPLE_RATE, rt60, direct_to_reverb, room_rng)
    info = ClipInfo(fit, fitted.size / SAMPLE_RATE, offset / SAMPLE_RATE, None if dry else float(rt60))
    return effects.limit_peak(clip), info
