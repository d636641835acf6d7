"""Build examples/keywords.flac: real speakers saying keywords, with a spoken sentence in between.

    python examples/make_keywords_recording.py --data ../shared/data --out examples

The pieces are read from the Speech Commands v0.01 sample (keywords, CC BY 4.0) and the
spoken-sentences collection (non-keyword speech, Apache 2.0), each trimmed to its speech
with a short margin, brought to a common speech level, faded in and out and separated by
quiet gaps with a little room noise (so the stream never goes digitally silent). Writes the
recording and ``keywords.json``: for each keyword, where its speech starts and ends.
Deterministic: the same inputs give the same file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lmustream.audio import load_audio, write_audio
from lmustream.stream.enroll import speech_region

RATE = 16000
SPEECH_LEVEL_DBFS = -24.0  # active speech RMS of every piece
ROOM_NOISE_DBFS = -65.0
MARGIN_S = 0.15
FADE_S = 0.01
GAP_S = 1.2

# (kind, relative path under the data folder)
PIECES = [
    ("keyword", "speech_commands_v0.01_sample/yes/b87bdb22_nohash_1.wav"),
    ("keyword", "speech_commands_v0.01_sample/stop/a8cb6dda_nohash_0.wav"),
    ("sentence", "spoken_sentences/9cc7945a-4667-4b69-8234-b68b0270501c.flac"),
    ("keyword", "speech_commands_v0.01_sample/right/93ec8b84_nohash_0.wav"),
    ("keyword", "speech_commands_v0.01_sample/no/6d818f6c_nohash_2.wav"),
]


def trimmed(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``x`` cut to its speech plus margins; the speech's start and end within the cut."""
    region = speech_region(x, RATE)
    if region is None:
        raise SystemExit("a piece has no speech in it")
    margin = int(MARGIN_S * RATE)
    a, b = max(0, region.start - margin), min(x.size, region.end + margin)
    piece = x[a:b].astype(np.float64)
    speech = piece[region.start - a:region.end - a]
    piece *= 10 ** (SPEECH_LEVEL_DBFS / 20) / np.sqrt(np.mean(speech ** 2))
    n = int(FADE_S * RATE)
    ramp = np.linspace(0.0, 1.0, n)
    piece[:n] *= ramp
    piece[-n:] *= ramp[::-1]
    return piece, region.start - a, region.end - a


def build(data: Path) -> tuple[np.ndarray, list[dict], list[str]]:
    rng = np.random.default_rng(0)
    parts, truth, sources = [], [], []
    position = int(0.8 * RATE)
    parts.append(np.zeros(position))
    for kind, rel in PIECES:
        piece, start, end = trimmed(load_audio(data / rel))
        if kind == "keyword":
            truth.append({"keyword": Path(rel).parent.name, "start": round((position + start) / RATE, 3),
                          "end": round((position + end) / RATE, 3)})
        sources.append(rel)
        gap = np.zeros(int(GAP_S * RATE))
        parts += [piece, gap]
        position += piece.size + gap.size
    x = np.concatenate(parts)
    x += 10 ** (ROOM_NOISE_DBFS / 20) * rng.standard_normal(x.size)
    return x.astype(np.float32), truth, sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="folder holding the two collections")
    parser.add_argument("--out", default="examples", help="output folder")
    args = parser.parse_args()
    x, truth, sources = build(Path(args.data))
    out = Path(args.out)
    write_audio(out / "keywords.flac", x, RATE)
    (out / "keywords.json").write_text(json.dumps({"sample_rate": RATE, "seconds": round(x.size / RATE, 3),
                                                   "keywords": truth, "sources": sources}, indent=2) + "\n")
    print(f"wrote {out / 'keywords.flac'} ({x.size / RATE:.1f} s) and {out / 'keywords.json'}: "
          + ", ".join(f"{t['keyword']} {t['start']:.2f}-{t['end']:.2f} s" for t in truth))


if __name__ == "__main__":
    main()
