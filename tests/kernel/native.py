"""Builds of the kernel without Python (csrc/tests/Makefile) and the files they run on.

    python3 -m tests.kernel.native golden DIR   # models, audio and x86 outputs for kernel_test golden
    python3 -m tests.kernel.native seeds DIR    # small model files to seed the parser fuzzer
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "native"
GOLDEN_TOL = 1e-5  # NEON vs x86 float32 logits


def toolchain(*names: str) -> bool:
    return all(shutil.which(n) for n in names)


def build(kind: str, target: str) -> Path:
    """``kind``: "asan" (ASan + UBSan, host g++), "release" (host), "baseline" (host, without the
    AVX2 copies of csrc/multiversion.h), "aarch64" (cross, static), "libfuzzer" (clang + libFuzzer
    + sanitizers). Returns the built binary."""
    out = BUILD / kind
    args = {"asan": ["SANITIZE=1"], "release": [], "baseline": ["EXTRA=-DLMU_NO_CLONES"],
            "aarch64": ["CXX=aarch64-linux-gnu-g++", "LDFLAGS=-static"],
            "libfuzzer": ["CXX=clang++", "SANITIZE=1", "LIBFUZZER=1"]}[kind]
    jobs = os.environ.get("LMUSTREAM_BUILD_JOBS") or str(os.cpu_count() or 2)
    cmd = ["make", "-s", "-C", str(REPO / "csrc" / "tests"), f"-j{jobs}", f"BUILD={out}", *args, str(out / target)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"native build failed: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return out / target


def export_golden(directory: str | os.PathLike, tolerance: float | None = None) -> Path:
    """Two small models (plain, spiking), 1.5 s of audio and this machine's kernel outputs.
    ``tolerance``: the largest logit difference a run may show (default: the NEON vs x86 bounds)."""
    from lmustream.stream import Kernel
    from tests.kernel.helpers import audio, make_model, save

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    wave = audio(1.5, 21)
    wave.astype("<f4").tofile(d / "input.f32")
    lines = []
    for name, spiking in (("plain", False), ("spiking", True)):
        save(make_model(spiking=spiking, seed=3), d / f"{name}.safetensors")
        for int8, chunk in ((0, 160), (0, 1777), (1, 4000)):
            stream = Kernel(d / f"{name}.safetensors", int8=bool(int8)).open()
            parts = [stream.push(wave[i:i + chunk]) for i in range(0, wave.size, chunk)]
            logits = np.concatenate(parts + [stream.flush()])
            expected = f"{name}_int8{int8}_chunk{chunk}.f32"
            logits.astype("<f4").tofile(d / expected)
            # int8 activations are rounded to integers: a float32 difference at a rounding
            # boundary moves one step, so int8 gets a looser bound
            bound = tolerance if tolerance is not None else GOLDEN_TOL if not int8 else 2e-3
            lines.append(f"{name}.safetensors {int8} {chunk} input.f32 {expected} {bound}")
    (d / "cases.txt").write_text("\n".join(lines) + "\n")
    return d


def fuzz_seeds(directory: str | os.PathLike) -> list[Path]:
    """Very small valid model files (a few kB) so that each fuzz input is cheap to parse."""
    from lmustream.audio.features import FbankConfig
    from lmustream.models import LMUFormer, LMUFormerConfig
    from lmustream.models.artifact import ModelArtifact, save_model

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spiking, convs in (("plain", False, 1), ("spiking", True, 2)):
        config = LMUFormerConfig(n_mels=8, n_classes=3, dim=8, memory_size=8, mlp_ratio=1, embed_convs=convs,
                                 spiking=spiking)
        path = d / f"seed_{name}.safetensors"
        save_model(path, ModelArtifact(LMUFormer(config).eval(), ["a", "b", "c"], FbankConfig(n_mels=8)))
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("golden", "seeds"):
        sys.exit(__doc__)
    if sys.argv[1] == "golden":
        print(export_golden(sys.argv[2]))
    else:
        print("\n".join(str(p) for p in fuzz_seeds(sys.argv[2])))
