"""Live detection cost: real-time factor of Detector.push per backend and input rate, one thread.

    python benchmarks/detect_speed.py [--model sc12-lmuformer] [--seconds 20] [--block-ms 20]

Feeds --seconds of noise in --block-ms blocks (as `lmustream listen` does) through a Detector
on each backend (the C++ kernel when built, the PyTorch step form) at 16 kHz and at 48 kHz (so
the streaming resampler runs too), and prints the compute time per second of audio, the
real-time factor, and the share the detector's own post-processing (smoothing, triggers,
spans) takes. Without --model, the paper-size LMUFormer with random weights (the cost does not
depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from lmustream.stream.backend import open_kernel
from lmustream.stream.detector import Detector


def random_paper_model(folder: str) -> str:
    from lmustream.models import LMUFormer, get_config
    from lmustream.models.artifact import ModelArtifact, save_model

    torch.manual_seed(0)
    labels = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_unknown_", "_silence_"]
    path = os.path.join(folder, "paper12.safetensors")
    save_model(path, ModelArtifact(LMUFormer(get_config("lmuformer", n_classes=12)).eval(), labels))
    return path


def run(detector: Detector, audio: np.ndarray, block: int) -> tuple[float, float]:
    """(total seconds, seconds inside the post-processing)."""
    post = 0.0
    original = detector.process_logits

    def timed(logits):
        nonlocal post
        t = time.perf_counter()
        out = original(logits)
        post += time.perf_counter() - t
        return out

    detector.process_logits = timed
    started = time.perf_counter()
    for i in range(0, audio.size, block):
        detector.push(audio[i:i + block])
    detector.flush()
    return time.perf_counter() - started, post


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--block-ms", type=float, default=20.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or random_paper_model(tmp)
        rng = np.random.default_rng(0)
        print(f"model {args.model or 'lmuformer (paper size, random weights)'}, {args.seconds:g} s of audio in "
              f"{args.block_ms:g} ms blocks, one thread")
        print(f"{'backend':<34} {'input Hz':>8} {'ms per s audio':>15} {'RTF':>8} {'post-processing':>16}")
        for backend in ("kernel", "torch"):
            try:
                kernel = open_kernel(model, backend)
            except Exception as e:
                print(f"{backend:<34} not available: {e}")
                continue
            for rate in (16000, 48000):
                audio = (0.05 * rng.standard_normal(int(args.seconds * rate))).astype(np.float32)
                detector = Detector(kernel, sample_rate=rate)
                total, post = run(detector, audio, int(rate * args.block_ms / 1000))
                print(f"{kernel.backend_note[:34]:<34} {rate:>8} {1000 * total / args.seconds:>15.2f} "
                      f"{total / args.seconds:>8.4f} {post / total:>15.1%}")


if __name__ == "__main__":
    main()
