"""Fuzz the kernel's model-file parser (and the engine behind it) with >= 100,000 inputs.

    python benchmarks/kernel_fuzz.py [--runs 100000] [--driver auto|libfuzzer|mutator] [--seed 1]

Builds fuzz/artifact_fuzz.cc with AddressSanitizer and UndefinedBehaviorSanitizer, either linked
with libFuzzer (clang: coverage-guided, with fuzz/artifact.dict) or with fuzz/driver.cc (any
compiler: structure-aware random mutations of the seeds), seeds it with small valid model files
(plain and spiking) and runs it. Every input must parse and run, or be rejected with an
ArtifactError; a crash, a sanitizer report or a hang fails the run. A short run of the same
target is part of the test suite (tests/kernel/test_native.py).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kernel.native import REPO, build, fuzz_seeds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--driver", choices=("auto", "libfuzzer", "mutator"), default="auto")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    driver = args.driver
    if driver == "auto":
        driver = "libfuzzer" if shutil.which("clang++") else "mutator"
    print(f"building the fuzz target ({driver}, ASan + UBSan) ...", flush=True)
    binary = build("libfuzzer" if driver == "libfuzzer" else "asan", "artifact_fuzz")
    with tempfile.TemporaryDirectory() as tmp:
        seeds = fuzz_seeds(Path(tmp) / "seeds")
        if driver == "libfuzzer":
            corpus = Path(tmp) / "corpus"
            corpus.mkdir()
            for s in seeds:
                shutil.copy(s, corpus)
            cmd = [str(binary), f"-runs={args.runs}", f"-seed={args.seed}", f"-dict={REPO / 'fuzz' / 'artifact.dict'}",
                   "-max_len=30000", "-timeout=20", "-rss_limit_mb=4096", "-print_final_stats=1", str(corpus)]
        else:
            cmd = [str(binary), f"-runs={args.runs}", f"-seed={args.seed}", *map(str, seeds)]
        print(" ".join(cmd), flush=True)
        start = time.time()
        result = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.time() - start
        lines = (result.stdout + result.stderr).splitlines()
        keep = [ln for ln in lines if ln.startswith(("stat::", "Done", "fuzzed", "==", "SUMMARY", "ERROR"))
                or "runtime error" in ln]
        print("\n".join(keep[-20:]))
        verdict = "no crash, no sanitizer report" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"\n{args.runs:,} inputs in {elapsed:.0f} s with {driver}: {verdict}")
        if result.returncode != 0:
            print("\n".join(lines[-60:]))
            sys.exit(1)


if __name__ == "__main__":
    main()
