"""benchmarks/train_throughput.py: the paths are timed round by round, and the table comes out."""

import subprocess
import sys

import torch

from tests.benchmark_scripts import BENCHMARKS, load_benchmark

SCRIPT = BENCHMARKS / "train_throughput.py"


def test_every_round_times_each_path_once_in_a_rotating_order():
    bench = load_benchmark("train_throughput")
    order = []
    steps = {name: (lambda name=name: order.append(name), n) for name, n in (("fft", 2), ("memory", 1), ("rnn", 1))}
    rates = bench.interleaved_rates(steps, batch=4, device=torch.device("cpu"), rounds=3)
    assert {name: len(r) for name, r in rates.items()} == {"fft": 3, "memory": 3, "rnn": 3}
    assert all(rate > 0 for r in rates.values() for rate in r)
    # round 0 starts with fft, round 1 with memory, round 2 with rnn; fft's windows are 2 steps
    assert order == ["fft", "fft", "memory", "rnn", "memory", "rnn", "fft", "fft", "rnn", "fft", "fft", "memory"]


def test_the_table_gives_each_ratio_as_a_median_and_range():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--batch", "2", "--steps", "1", "--slow-steps", "1",
         "--rounds", "2", "--models", "lmuformer-tiny", "--paths", "fft,rnn"],
        capture_output=True, text=True, timeout=300, cwd=BENCHMARKS.parent)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("lmuformer-tiny "))
    cells = row.split()
    assert cells[2] == "-"  # memory was not timed, nor its ratio
    assert cells[4] == "-"
    assert cells[5].endswith("x") and cells[6].startswith("(") and cells[6].endswith(")")
