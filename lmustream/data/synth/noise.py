"""Background noise for ``_background_noise_/``: white, pink and brown noise, and synthetic babble.

Coloured noise is white Gaussian noise shaped in the frequency domain (power ~ 1/f for
pink, 1/f^2 for brown). Babble is several streams of synthetic speakers saying random
phrases of filler words, mixed and put in one room. All deterministic for a seed; every
file is written at ``NOISE_LEVEL_DBFS`` RMS (training scales noise itself).
"""

from __future__ import annotations

import numpy as np

from lmustream.data.synth import effects
from lmustream.data.synth.engines import EngineError
from lmustream.data.synth.render import SAMPLE_RATE, speak
from lmustream.data.synth.speakers import Speaker, stable_hash

NOISE_LEVEL_DBFS = -20.0
COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # exponent of 1/f in the power spectrum
STREAM_NOISE = 4  # SeedSequence stream ids (see speakers.STREAM_*)
STREAM_BABBLE = 5

# Filler words for babble: everyday English, none of the Speech Commands words, so that
# background noise never says a keyword. Corpus words are removed again at run time.
BABBLE_VOCABULARY = (
    "about", "after", "again", "always", "animal", "answer", "apple", "around", "because", "before", "better",
    "between", "bottle", "bring", "brother", "called", "children", "city", "coffee", "color", "common",
    "country", "dinner", "doctor", "during", "early", "enough", "evening", "every", "family", "father",
    "finish", "flower", "garden", "great", "green", "heavy", "hello", "little", "morning", "mother", "music",
    "never", "number", "often", "orange", "paper", "people", "perhaps", "picture", "place", "question",
    "quiet", "really", "remember", "sister", "small", "something", "summer", "table", "thank", "there",
    "thing", "today", "together", "tomorrow", "travel", "under", "until", "water", "weather", "window",
    "winter", "without", "woman", "world", "would", "yellow", "yesterday",
)
BABBLE_PHRASE_WORDS = (2, 6)  # words per phrase: [low, high)
BABBLE_GAP_SECONDS = (0.05, 0.4)  # pause between a stream's phrases
BABBLE_STREAM_GAIN_DB = (-6.0, 0.0)  # relative loudness of each stream in the mix
BABBLE_RT60_SECONDS = 0.4
BABBLE_DIRECT_TO_REVERB_DB = 3.0
# Give up on a stream after this many failed phrases in a row (a broken engine, not bad luck).
BABBLE_MAX_CONSECUTIVE_FAILURES = 20


def coloured_noise(colour: str, seconds: float, seed: int) -> np.ndarray:
    """``seconds`` of ``colour`` ("white", "pink" or "brown") noise at 16 kHz, at NOISE_LEVEL_DBFS RMS."""
    if colour not in COLOURS:
        raise ValueError(f"unknown noise colour {colour!r}; known: {', '.join(COLOURS)}")
    n = int(round(seconds * SAMPLE_RATE))
    rng = np.random.default_rng([seed, STREAM_NOISE, stable_hash(colour)])
    white = rng.standard_normal(n)
    exponent = COLOURS[colour]
    if exponent:
        spectrum = np.fft.rfft(white)
        f = np.arange(spectrum.size, dtype=np.float64)
        spectrum[1:] /= f[1:] ** (exponent / 2.0)
        spectrum[0] = 0.0  # no DC offset
        white = np.fft.irfft(spectrum, n)
    return effects.limit_peak(effects.set_level(white.astype(np.float32), NOISE_LEVEL_DBFS))


def babble_stream(stream: int, seconds: float, speakers: list[Speaker], vocabulary: list[str],
                  seed: int) -> np.ndarray:
    """One talker track of babble: phrases by random ``speakers`` with pauses, exactly ``seconds`` long."""
    if not speakers or not vocabulary:
        raise ValueError("babble_stream needs at least one speaker and one word")
    rng = np.random.default_rng([seed, STREAM_BABBLE, stream])
    n = int(round(seconds * SAMPLE_RATE))
    pieces, length, failures = [], 0, 0
    while length < n:
        speaker = speakers[rng.integers(len(speakers))]
        phrase = " ".join(rng.choice(vocabulary, size=rng.integers(*BABBLE_PHRASE_WORDS)))
        try:
            audio = speak(phrase, speaker, rng)
        except EngineError as e:
            failures += 1
            if failures >= BABBLE_MAX_CONSECUTIVE_FAILURES:
                raise EngineError(f"babble stream {stream}: {failures} phrases in a row failed; last: {e}") from e
            continue
        failures = 0
        audio = effects.fade_edges(effects.set_level(audio, NOISE_LEVEL_DBFS), SAMPLE_RATE)
        gap = np.zeros(int(rng.uniform(*BABBLE_GAP_SECONDS) * SAMPLE_RATE), np.float32)
        pieces += [audio, gap]
        length += audio.size + gap.size
    track = np.concatenate(pieces)[:n]
    # Rotate by a random amount so the talkers' phrase boundaries do not line up across streams.
    return np.roll(track, int(rng.integers(n)))


def mix_babble(streams: list[np.ndarray], seed: int) -> np.ndarray:
    """Babble: the talker ``streams`` mixed at random relative levels, in one room, at NOISE_LEVEL_DBFS."""
    if not streams:
        raise ValueError("mix_babble needs at least one stream")
    rng = np.random.default_rng([seed, STREAM_BABBLE, len(streams), 0])
    mix = np.zeros(max(s.size for s in streams), np.float64)
    for track in streams:
        mix[:track.size] += track * 10.0 ** (rng.uniform(*BABBLE_STREAM_GAIN_DB) / 20.0)
    room = effects.reverberate(mix.astype(np.float32), SAMPLE_RATE, BABBLE_RT60_SECONDS,
                               BABBLE_DIRECT_TO_REVERB_DB, rng)
    return effects.limit_peak(effects.set_level(room, NOISE_LEVEL_DBFS))
