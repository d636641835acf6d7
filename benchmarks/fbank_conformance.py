"""Print the max error of our log-mel frontend against torchaudio's Kaldi fbank, per golden case.

Usage: python benchmarks/fbank_conformance.py [CONFORMANCE_DIR] [--seed N]

CONFORMANCE_DIR holds fbank/*.npz (default: $LMUSTREAM_SHARED/conformance, else
<repo>/../shared/conformance). Errors are absolute, in natural-log power units, split into
bins within 80 dB of their frame's max ("in range", tolerance 2e-3) and the fainter ones
(tolerance 0.1; "-" where a case has none). Batch = torch float32 ``fbank``; streaming = numpy ``StreamingFbank`` fed
random chunks of 1..4000 samples; "norm" = the normalized batch output vs the golden one.
Exits 1 if any case is out of tolerance.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from lmustream.audio import FbankConfig, StreamingFbank, fbank, normalize  # noqa: E402

TOL, LOW_TOL, RANGE_DB = 2e-3, 0.1, 80.0
MAX_CHUNK = 4000  # samples


def default_dir() -> Path:
    return Path(os.environ.get("LMUSTREAM_SHARED", REPO.parent / "shared")) / "conformance"


def stream_in_chunks(wave: np.ndarray, config: FbankConfig, rng: np.random.Generator) -> np.ndarray:
    stream, pieces, start = StreamingFbank(config), [np.zeros((0, config.n_mels), np.float32)], 0
    while start < wave.size:
        size = int(rng.integers(1, MAX_CHUNK + 1))
        pieces.append(stream.push(wave[start:start + size]))
        start += size
    return np.concatenate(pieces)


def split_errors(ours: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """(max |error| over bins within RANGE_DB of their frame max, max over the rest: NaN if none).

    inf on a shape mismatch.
    """
    if ours.shape != gold.shape:
        return float("inf"), float("inf")
    err = np.abs(ours.astype(np.float64) - gold)
    in_range = gold >= gold.max(axis=1, keepdims=True, initial=-np.inf) - RANGE_DB * np.log(10) / 10
    faint = err[~in_range]
    return float(err[in_range].max(initial=0.0)), float(faint.max()) if faint.size else float("nan")


def fmt(value: float, width: int) -> str:
    """An error for the table; "-" where the case has no such bins."""
    return f"{'-':>{width}}" if np.isnan(value) else f"{value:>{width}.2e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("conformance_dir", nargs="?", type=Path, default=default_dir())
    parser.add_argument("--seed", type=int, default=0, help="seed of the streaming chunk sizes (0)")
    args = parser.parse_args(argv)
    folder = args.conformance_dir
    folder = folder if folder.name == "fbank" else folder / "fbank"
    cases = sorted(folder.glob("*.npz"))
    if not cases:
        print(f"no fbank/*.npz golden vectors under {folder}", file=sys.stderr)
        return 2
    config, rng, failed = FbankConfig(), np.random.default_rng(args.seed), 0
    header = f"{'case':<20} {'frames':>6} {'batch':>9} {'stream':>9} {'batch<80dB':>10} {'stream<80dB':>11} {'norm':>9}"
    print(header)
    print("-" * len(header))
    worst = np.zeros(5)
    for path in cases:
        case = np.load(path)
        wave, gold = case["waveform"], case["fbank"].astype(np.float64)
        batch = fbank(torch.from_numpy(wave), config).numpy()
        batch_hi, batch_lo = split_errors(batch, gold)
        stream_hi, stream_lo = split_errors(stream_in_chunks(wave, config, rng), gold)
        norm_hi, norm_lo = split_errors(normalize(batch, config), case["normalized"].astype(np.float64))
        row = np.array([batch_hi, stream_hi, batch_lo, stream_lo, np.fmax(norm_hi, norm_lo)])
        worst = np.fmax(worst, row)
        lows = [e for e in (batch_lo, stream_lo, norm_lo) if not np.isnan(e)]
        ok = max(batch_hi, stream_hi, norm_hi) <= TOL and max(lows, default=0.0) <= LOW_TOL
        failed += not ok
        print(f"{path.stem:<20} {gold.shape[0]:>6} {fmt(row[0], 9)} {fmt(row[1], 9)} {fmt(row[2], 10)} "
              f"{fmt(row[3], 11)} {fmt(row[4], 9)}{'' if ok else '  FAIL'}")
    print("-" * len(header))
    print(f"{'max':<20} {'':>6} {worst[0]:>9.2e} {worst[1]:>9.2e} {worst[2]:>10.2e} {worst[3]:>11.2e} {worst[4]:>9.2e}")
    print(f"tolerances: {TOL:g} within {RANGE_DB:g} dB of the frame max, {LOW_TOL:g} below; "
          f"{len(cases) - failed}/{len(cases)} cases pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
