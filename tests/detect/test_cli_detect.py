"""The detection verbs end to end on a small random model (output format, files, errors)."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from lmustream.audio import load_audio, write_audio
from lmustream.cli import main
from lmustream.stream import microphone
from lmustream.stream.detector import Detector
from tests.detect.fakes import FakeMicrophone, silence, tiny_model_file, tone


@pytest.fixture
def model(tmp_path):
    return str(tiny_model_file(tmp_path / "tiny.safetensors"))


def refused(argv, capsys) -> str:
    """The one-line error of a command line that argparse refuses (exit status 2), without 'prog: error: '."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(lines)
    return lines[-1].split(": error: ", 1)[1]


def varied_signal(rng):
    parts = []
    for i in range(6):
        parts += [(0.02 * rng.standard_normal(8000)).astype(np.float32), tone(0.4, 300 + 400 * i, amplitude=0.5),
                  (0.002 * rng.standard_normal(4800)).astype(np.float32)]  # a quiet room between the sounds
    return np.concatenate(parts)


def crossing_threshold(model, x):
    """A keyword and a threshold its smoothed posterior crosses on ``x`` (mid-way through its range)."""
    from lmustream.stream.detector import PosteriorSmoother
    from lmustream.stream.torch_stream import TorchKernel

    stream = TorchKernel(model).open()
    logits = np.concatenate([stream.push(x), stream.flush()])
    post = PosteriorSmoother(logits.shape[1], 30, 10).push(logits)[:, :2]  # yes, no
    k = int(np.argmax(post.max(0) - post.min(0)))
    return ["yes", "no"][k], round(float(post[:, k].min() + post[:, k].max()) / 2, 4)


def test_stream_matches_the_detector_on_the_whole_file(tmp_path, model, rng, capsys):
    from lmustream.audio import resample

    path = tmp_path / "a.flac"
    write_audio(path, varied_signal(rng))
    x = load_audio(path)  # as the file holds it (16-bit)
    wav44 = tmp_path / "b.wav"
    write_audio(wav44, np.stack([resample(x, 16000, 44100)] * 2, axis=1), 44100)  # stereo, 44.1 kHz
    keyword, threshold = crossing_threshold(model, x)
    options = ["--window", "0.3", "--threshold", str(threshold), "--keywords", keyword]
    assert main(["stream", str(path), str(wav44), "--model", model, "--json", "--backend", "torch", *options]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = [e.to_dict() for e in Detector(model, keywords=[keyword], threshold=threshold, window=0.3,
                                              backend="torch").detect([x])]
    assert expected
    got_a = [{k: v for k, v in d.items() if k not in ("type", "file")} for d in lines if d["file"] == str(path)]
    assert got_a == expected
    # the 44.1 kHz stereo file: downmixed and resampled as it streams, as the Detector does it
    x44 = np.asarray(sf.read(wav44, dtype="float32")[0])
    expected_b = [e.to_dict() for e in Detector(model, keywords=[keyword], threshold=threshold, window=0.3,
                                                backend="torch", sample_rate=44100).detect([x44])]
    got_b = [{k: v for k, v in d.items() if k not in ("type", "file")} for d in lines if d["file"] == str(wav44)]
    assert got_b == expected_b
    assert abs(len(expected_b) - len(expected)) <= 1  # and about the same as at 16 kHz
    assert all(d["type"] == "detection" for d in lines)


def test_stream_text_output_and_errors(tmp_path, model, capsys):
    path = tmp_path / "quiet.wav"
    write_audio(path, silence(1.0))
    assert main(["stream", str(path), "--model", model, "--threshold", "0.99", "--verbose"]) == 0
    captured = capsys.readouterr()
    assert "backend:" in captured.err and "0 detection(s) in 1 file(s)" in captured.err
    assert "trailing pause 0.2 s" in captured.err  # the default
    assert main(["stream", str(path), "--model", model, "--trailing-pause", "0", "--verbose"]) == 0
    assert "trailing pause 0 s" in capsys.readouterr().err
    assert refused(["stream", str(path), "--model", model, "--trailing-pause", "-1"], capsys) \
        == "argument --trailing-pause: expected a number of seconds >= 0, got '-1'"
    assert main(["stream", str(tmp_path / "nope.wav"), "--model", model]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["stream", str(path), "--model", model, "--keywords", "maybe"]) == 2
    assert "not among the model's labels" in capsys.readouterr().err
    assert main(["stream", str(path), "--model", str(tmp_path / "none.safetensors")]) == 2
    assert "no shipped model" in capsys.readouterr().err


def test_stream_reports_unreadable_files_and_streams_the_others(tmp_path, model, rng, capsys):
    good = tmp_path / "good.flac"
    x = varied_signal(rng)
    write_audio(good, x)
    keyword, threshold = crossing_threshold(model, load_audio(good))
    garbage = tmp_path / "garbage.wav"
    garbage.write_text("not audio")
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(good.read_bytes()[:2000])
    files = [str(tmp_path / "missing.wav"), str(garbage), str(tmp_path), str(good)]
    options = ["--model", model, "--backend", "torch", "--window", "0.3", "--threshold", str(threshold),
               "--keywords", keyword]
    assert main(["stream", *files, *options, "--json"]) == 2
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    errors = {d["file"]: d["error"] for d in lines if d["type"] == "error"}
    assert set(errors) == set(files[:3])
    assert "no such file" in errors[files[0]]
    assert "cannot open as audio" in errors[files[1]]
    assert "is a folder" in errors[files[2]]
    detections = [d for d in lines if d["type"] == "detection"]
    assert detections and all(d["file"] == str(good) for d in detections)  # the good file, after three bad ones
    assert "3 of 4 file(s) could not be read" in captured.err
    # a file that breaks off part-way: its error is reported, the file after it still streams
    assert main(["stream", str(truncated), str(good), *options]) == 2
    captured = capsys.readouterr()
    assert "truncated.flac" in captured.err and str(good) in captured.out


def test_stream_int8_says_what_runs_and_refuses_torch(model, tmp_path, capsys):
    pytest.importorskip("lmustream._kernel")
    path = tmp_path / "x.wav"
    write_audio(path, varied_signal(np.random.default_rng(0)))
    assert main(["stream", str(path), "--model", model, "--int8", "--verbose"]) == 0
    assert "int8 weights" in capsys.readouterr().err
    assert main(["stream", str(path), "--model", model, "--int8", "--backend", "torch"]) == 2
    assert "int8 weights run on the C++ kernel only" in capsys.readouterr().err


def test_listen_without_an_input_device(model, monkeypatch, capsys):
    monkeypatch.setattr(microphone, "input_devices", lambda: [])
    assert main(["listen", "--model", model]) == 2
    assert "no audio input device" in capsys.readouterr().err
    assert main(["listen", "--list-devices"]) == 1


@pytest.mark.parametrize("zeros_s, warned", [(4.0, True), (2.5, False), (0.0, False)])
def test_listen_warns_once_about_an_input_of_exact_zeros(model, monkeypatch, capsys, rng, zeros_s, warned):
    sound = (0.01 * rng.standard_normal(16000 * 2)).astype(np.float32)
    signal = np.concatenate([silence(zeros_s), sound, silence(4.0)])
    monkeypatch.setattr(microphone, "Microphone",
                        lambda device=None, block_seconds=0.02: FakeMicrophone(signal, block_seconds=block_seconds))
    assert main(["listen", "--model", model, "--json", "--seconds", str(zeros_s + 6.0)]) == 0
    err = capsys.readouterr().err
    assert err.count("digital silence") == int(warned), err  # zeros after sound are a quiet room, not a mute


@pytest.fixture
def small_corpus(tmp_path, rng):
    pos = tmp_path / "pos"
    for word in ("yes", "no", "cat"):
        (pos / word).mkdir(parents=True)
        for i in range(2):
            write_audio(pos / word / f"s{i}_nohash_0.wav",
                        np.concatenate([silence(0.3), tone(0.4, 400 + 300 * i), silence(0.3)])
                        + (0.001 * rng.standard_normal(16000)).astype(np.float32))
    neg = tmp_path / "neg"
    neg.mkdir()
    write_audio(neg / "talk.wav", (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32))
    return pos, neg


def test_eval_stream_json_and_plot(tmp_path, model, small_corpus, capsys):
    pos, neg = small_corpus
    png = tmp_path / "det.png"
    args = ["eval-stream", "--model", model, "--positives", str(pos), "--negatives", str(neg), "--hours", "0.01",
            "--no-progress"]
    assert main(args + ["--json", "--plot", str(png), "--other-words", "--check-segments", "0.2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["stream"]["keyword_insertions"] == 4 and result["stream"]["other_word_insertions"] == 2
    assert set(result["summary"]) >= {"yes", "no", "all (per-keyword thresholds)"}
    assert set(result["summary"]["yes"]) == {"positives", "0.5", "1", "5"}
    assert result["segmented_vs_continuous_max_abs_diff"] < 1e-3
    check = result["detector_at_1_fa_per_hour"]
    assert check["hits"] == check["sweep_hits"]  # the Detector makes the decisions the sweep scored
    assert result["at_default_thresholds"]["positives"] == 4
    assert png.stat().st_size > 10_000
    assert main(args) == 0  # text table
    out = capsys.readouterr().out
    assert "FRR@1FA/h" in out and "stream: " in out and "Detector at each keyword's 1 FA/h threshold" in out


def test_calibrate_writes_a_usable_calibration(tmp_path, model, small_corpus, capsys):
    pos, neg = small_corpus
    out = tmp_path / "new" / "cal.json"  # its folder is made
    copy = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", "--model", model, "--negatives", str(neg), "--hours", "0.01", "--no-progress",
                 "--target-fa-per-hour", "100", "--positives", str(pos), "--out", str(out),
                 "--write-model", str(copy)]) == 0
    text = capsys.readouterr().out
    assert "threshold" in text and f"wrote {out}" in text
    calibration = json.loads(out.read_text())
    assert set(calibration["thresholds"]) == {"yes", "no"}
    assert all(0 <= t <= 1 for t in calibration["thresholds"].values())
    det = Detector(model, threshold=str(out), backend="torch")
    assert det.thresholds == calibration["thresholds"]
    assert Detector(str(copy), backend="torch").thresholds == calibration["thresholds"]
    # the --out file renamed to sit beside a model is that model's default calibration, as documented
    beside = tmp_path / "beside"
    beside.mkdir()
    shutil.copy(model, beside / "m.safetensors")
    shutil.copy(out, beside / "m.detector.json")
    assert Detector(str(beside / "m.safetensors"), backend="torch").thresholds == calibration["thresholds"]
    assert main(["calibrate", "--model", model, "--negatives", str(tmp_path / "none")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("lead_in", [0.0, 1.2])
def test_shipped_model_finds_the_example_keywords(tmp_path, capsys, lead_in):
    """The README's quick start, with and without digital silence before the recording (as an audio
    device delivers before it starts): the isolation check must not take the zeros for a noise floor."""
    from tests.conftest import REPO

    truth = json.loads((REPO / "examples" / "keywords.json").read_text())
    x, rate = sf.read(REPO / "examples" / "keywords.flac", dtype="float32")
    path = tmp_path / "kw.wav"
    sf.write(path, np.concatenate([np.zeros(int(lead_in * rate), np.float32), x]), rate)
    assert main(["stream", str(path), "--model", "sc12-lmuformer", "--json"]) in (0, None)
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    events = [e for e in events if e.get("type", "detection") == "detection" and "keyword" in e]
    assert [e["keyword"] for e in events] == [k["keyword"] for k in truth["keywords"]]
    for e, k in zip(events, truth["keywords"]):
        assert k["start"] - 0.15 <= e["start"] - lead_in <= k["end"], (e, k)
