"""Step form vs parallel model on a long stream of real speech, for trained (shipped) models.

    python benchmarks/step_equivalence_real.py [--models sc12-slmuformer,asc40-slmuformer]
        [--audio ../shared/data/fsdd/recordings ../shared/data/speech_commands_v0.01_sample] [--clips 300]

Concatenates the first --clips audio files found under --audio into one continuous stream (no
reset), runs the parallel model and the step form over it in float32 and float64, and prints the
largest logit differences and, for spiking models, how many spikes differ in every LIF layer.
Random inputs (benchmarks/step_equivalence.py) rarely bring a neuron's potential within float32
rounding of its threshold; real speech through trained weights is the case that matters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lmustream.audio.features import fbank, normalize
from lmustream.audio.io import load_audio
from lmustream.models.artifact import load_model
from lmustream.models.registry import resolve_model
from lmustream.stream.step import StepLMUFormer
from lmustream.stream.verify import compare_stream

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sc12-slmuformer,asc40-slmuformer,sc12-lmuformer")
    parser.add_argument("--audio", nargs="+", type=Path,
                        default=[Path("../shared/data/fsdd/recordings"),
                                 Path("../shared/data/speech_commands_v0.01_sample")])
    parser.add_argument("--clips", type=int, default=300, help="audio files in the stream")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(f for folder in args.audio for f in folder.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SystemExit(f"no audio files under {', '.join(map(str, args.audio))}")
    # every k-th file, so that the stream mixes speakers and sources
    files = files[:: max(1, len(files) // args.clips)][: args.clips]
    wave = np.concatenate([load_audio(f, 16000) for f in files])
    print(f"stream: {len(files)} files, {wave.size / 16000:.1f} s of audio")
    print(f"\n{'model':<22}{'dtype':<9}{'frames':>8}{'max |d running|':>17}{'max |d frame|':>15}"
          f"{'spikes':>13}{'differ':>8}{'rate':>10}")
    for name in args.models.split(","):
        art = load_model(resolve_model(name))
        x = normalize(fbank(torch.from_numpy(wave), art.frontend), art.frontend)[None]
        for dtype in (torch.float32, torch.float64):
            model = art.model.eval().to(dtype)
            result = compare_stream(model, StepLMUFormer(model).eval(), x.to(dtype))
            rate = result.spike_flips / result.spikes_compared if result.spikes_compared else float("nan")
            print(f"{name:<22}{str(dtype).replace('torch.', ''):<9}{result.frames:>8}"
                  f"{result.max_abs_running:>17.2e}{result.max_abs_per_frame:>15.2e}"
                  f"{result.spikes_compared:>13,}{result.spike_flips:>8}{rate:>10.1e}")


if __name__ == "__main__":
    main()
