"""The kernel's C++ test program and fuzzer, built without Python: under AddressSanitizer and
UndefinedBehaviorSanitizer on this machine, and cross-compiled for aarch64 (NEON) and run under
qemu-aarch64 against golden outputs exported from this (x86-64) build."""

import platform
import subprocess
import sys

import pytest

from tests.kernel.native import build, export_golden, fuzz_seeds, toolchain


def _run(cmd, timeout=300):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def test_unit_tests_under_sanitizers(plain, spiking):
    binary = build("asan", "kernel_test")
    code, out = _run([binary, "unit", plain[1], spiking[1]])
    assert code == 0, out
    assert " 0 failed" in out and "ERROR: AddressSanitizer" not in out and "runtime error" not in out


def test_short_fuzz_run_under_sanitizers(tmp_path):
    binary = build("asan", "artifact_fuzz")
    seeds = fuzz_seeds(tmp_path)
    code, out = _run([binary, "-runs=3000", "-seed=7", *seeds])
    assert code == 0, out[-3000:]
    assert "fuzzed 3000 inputs" in out and "no crash" in out


@pytest.mark.skipif(not toolchain("aarch64-linux-gnu-g++", "qemu-aarch64"),
                    reason="needs g++-aarch64-linux-gnu and qemu-user (scripts/setup.sh installs them)")
def test_aarch64_neon_matches_x86_golden_files(tmp_path, plain):
    golden = export_golden(tmp_path / "golden")
    binary = build("aarch64", "kernel_test")
    code, out = _run(["qemu-aarch64", binary, "golden", golden])
    assert code == 0, out
    assert "(neon)" in out and " 0 failed" in out, out
    code, out = _run(["qemu-aarch64", binary, "unit", plain[1]])
    assert code == 0 and " 0 failed" in out, out


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or sys.platform != "linux",
                    reason="the AVX2 copies of csrc/multiversion.h exist on x86-64 Linux only")
def test_avx2_copies_give_the_baseline_bits(tmp_path):
    """The frontend and the engine's glue run an AVX2 copy where the CPU has AVX2 (the Python
    module here); a build without those copies must give the same logits, bit for bit."""
    golden = export_golden(tmp_path / "golden", tolerance=0.0)
    binary = build("baseline", "kernel_test")
    code, out = _run([binary, "golden", golden])
    assert code == 0, out
    assert out.count("ok    golden") == 6 and " 0 failed" in out, out


def test_time_mode_reports_the_cost_of_a_push(plain):
    binary = build("asan", "kernel_test")
    code, out = _run([binary, "time", plain[1], "int8", "20", "1"])
    assert code == 0, out
    assert "int8 weights, 20 ms pushes" in out and "us per 10 ms of audio (frontend " in out, out
    code, out = _run([binary, "time", plain[1], "int8", "0"])
    assert code != 0 and "push_ms must be 1..10000" in out, out
