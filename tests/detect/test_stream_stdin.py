"""`lmustream stream -`: raw PCM from a pipe, detected as it arrives."""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "examples" / "keywords.flac"


def lmustream(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "lmustream", *args], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def detections(stdout: str) -> list[tuple]:
    return [(d["keyword"], d["start"], d["end"]) for d in map(json.loads, stdout.splitlines())]


def file_detections() -> list[tuple]:
    out = subprocess.run([sys.executable, "-m", "lmustream", "stream", "--json", str(RECORDING)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return detections(out)


def test_a_pipe_gives_the_detections_of_the_file_in_every_raw_format():
    samples, rate = sf.read(RECORDING, dtype="float32")
    expected = file_detections()
    assert [k for k, _, _ in expected] == ["yes", "stop", "right", "no"]
    for raw, options in (((samples * 32768).round().clip(-32768, 32767).astype("<i2").tobytes(), []),
                         (np.repeat(samples[:, None], 2, 1).astype("<f4").tobytes(),
                          ["--raw-format", "f32le", "--raw-channels", "2"])):
        p = lmustream("stream", "-", "--json", *options)
        out, err = p.communicate(raw, timeout=120)
        assert p.returncode == 0, err
        got = detections(out.decode())
        assert [k for k, _, _ in got] == [k for k, _, _ in expected]
        np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in expected], atol=0.011)


def test_detections_come_while_the_pipe_is_still_open_and_ctrl_c_ends_it():
    samples, _ = sf.read(RECORDING, dtype="int16")
    p = lmustream("stream", "-", "--json")
    p.stdin.write(samples[:3 * 16000].tobytes())  # "yes" and the quiet after it; the pipe stays open
    p.stdin.flush()
    ready, _, _ = select.select([p.stdout], [], [], 60)
    assert ready, "no detection printed while the input was still open"
    first = json.loads(p.stdout.readline())
    assert first["keyword"] == "yes" and first["file"] == "-"
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert "interrupted after 3.00 s of input" in err.decode()


def test_raw_options_and_bad_input_are_clear_errors(tmp_path):
    p = subprocess.run([sys.executable, "-m", "lmustream", "stream", str(RECORDING), "--raw-rate", "8000"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--raw-rate describe raw PCM on standard input" in p.stderr
    p = subprocess.run([sys.executable, "-m", "lmustream", "stream", "-", "-"], cwd=ROOT, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "once only" in p.stderr
    p = subprocess.run([sys.executable, "-m", "lmustream", "stream", "-", "--raw-channels", "0"], cwd=ROOT,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "a channel count, an integer in [1, 64]" in p.stderr
    bad = np.zeros(16000, "<f4")
    bad[8000] = np.nan
    proc = lmustream("stream", "-", "--raw-format", "f32le", env={**os.environ})
    out, err = proc.communicate(bad.tobytes(), timeout=60)
    assert proc.returncode == 2 and "standard input: a non-finite sample (NaN or Inf) at frame 8000" in err.decode()
