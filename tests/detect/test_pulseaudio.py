"""`lmustream listen` and `lmustream enroll` on a real audio server.

A private PulseAudio server (tests/detect/pulse.py) plays examples/keywords.flac into a null
sink whose monitor is the default source; `lmustream listen --json --seconds ...` records it
through PortAudio at the device's native rate (44.1 kHz: resampled to 16 kHz by the detector)
and must report the recording's keywords, and nothing else, at the expected times. Skipped
only where PulseAudio cannot be started. The model is the shipped sc12-lmuformer
(LMUSTREAM_LISTEN_TEST_MODEL names another).
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
import soundfile as sf

from lmustream.stream.enroll import speech_region
from tests.conftest import REPO
from tests.detect.pulse import PulseServer, PulseUnavailable

MODEL = os.environ.get("LMUSTREAM_LISTEN_TEST_MODEL", "sc12-lmuformer")
RECORDING = REPO / "examples" / "keywords.flac"
TRUTH = json.loads((REPO / "examples" / "keywords.json").read_text())
OFFSET_SLACK_S = 0.4  # uncertainty of when playback starts on the listener's clock


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    server = PulseServer(tmp_path_factory.mktemp("pulse"))
    try:
        server.start()
    except PulseUnavailable as e:
        pytest.skip(str(e))
    yield server
    server.stop()


def start_lmustream(env, *args):
    # SIGINT back to its default: a shell running pytest in the background may have ignored it
    process = subprocess.Popen([sys.executable, "-m", "lmustream", *args], cwd=REPO, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue = queue.Queue()
    # each pipe has its own reader (communicate() would race the stderr reader for the lines)
    process.stderr_reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)
    process.stdout_text = []
    process.stdout_reader = threading.Thread(target=lambda: process.stdout_text.append(process.stdout.read()),
                                             daemon=True)
    process.stderr_reader.start()
    process.stdout_reader.start()
    return process, lines


def finish(process, timeout: float) -> str:
    """Wait for the process; its stdout, once both pipes have been read to the end."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    process.stderr_reader.join(timeout=10)
    process.stdout_reader.join(timeout=10)
    return "".join(process.stdout_text)


def wait_for(lines: queue.Queue, text: str, process, timeout: float = 120.0) -> list[str]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if text in line:
            return seen
    process.kill()
    raise AssertionError(f"no {text!r} from lmustream; stderr so far:\n{''.join(seen)}")


def test_portaudio_sees_the_virtual_source(pulse):
    out = subprocess.run([sys.executable, "-m", "lmustream", "listen", "--list-devices"], cwd=REPO, env=pulse.env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pulse" in out.stdout or "default" in out.stdout, out.stdout


def test_listen_detects_the_keywords_of_a_recording_at_their_times(pulse):
    seconds = TRUTH["seconds"] + 4.0
    process, stderr = start_lmustream(pulse.env, "listen", "--json", "--no-meter", "--seconds", str(seconds),
                                      "--model", MODEL, "--verbose")
    wait_for(stderr, "listening on", process)
    ready = time.monotonic()
    time.sleep(0.5)
    offset = time.monotonic() - ready  # the recording starts about here on the listener's clock
    played = pulse.play(RECORDING)
    assert played.returncode == 0, played.stderr
    out = finish(process, timeout=seconds + 60)
    errors = "".join(stderr.queue)
    assert process.returncode == 0, errors
    records = [json.loads(line) for line in out.splitlines()]
    detections = [r for r in records if r["type"] == "detection"]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["sample_rate"] != 16000  # resampled at the edge
    assert summary["seconds"] == pytest.approx(seconds, abs=0.05)
    found = [d["keyword"] for d in detections]
    heard = [(d["keyword"], d["start"], d["detected_at"], d["confidence"]) for d in detections]
    assert found == [k["keyword"] for k in TRUTH["keywords"]], (heard, offset, errors)
    for d, k in zip(detections, TRUTH["keywords"]):
        # decided between the word's start and a second after its end, on the recording's clock
        assert offset + k["start"] - OFFSET_SLACK_S <= d["detected_at"] <= offset + k["end"] + 1.0 + OFFSET_SLACK_S, \
            (d, k, offset)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_listen_stops_cleanly_with_a_summary(pulse, sig):
    process, stderr = start_lmustream(pulse.env, "listen", "--json", "--no-meter", "--model", MODEL)
    wait_for(stderr, "listening on", process)
    time.sleep(1.0)
    process.send_signal(sig)
    out = finish(process, timeout=60)
    assert process.returncode == 0, "".join(stderr.queue)
    summary = json.loads(out.splitlines()[-1])
    assert summary["type"] == "summary" and summary["input_overflows"] >= 0 and summary["wall_seconds"] > 0.5
    assert any("stopped after" in line for line in stderr.queue)


def test_enroll_records_trimmed_clips_from_the_server(pulse, tmp_path):
    process, stderr = start_lmustream(pulse.env, "enroll", "--word", "keyword", "--count", "2", "--seconds", "2.5",
                                      "--out", str(tmp_path), "--speaker", "ci")
    wait_for(stderr, "say \"keyword\" now", process)
    player = threading.Thread(target=pulse.play, args=(RECORDING,))
    player.start()
    finish(process, timeout=120)
    player.join()
    assert process.returncode == 0, "".join(stderr.queue)
    clips = sorted((tmp_path / "keyword").glob("ci_nohash_*.wav"))
    assert [c.name for c in clips] == ["ci_nohash_0.wav", "ci_nohash_1.wav"]
    for clip in clips:
        x, rate = sf.read(clip, dtype="float32")
        assert rate == 16000 and x.size >= 16000 and speech_region(x, rate) is not None
