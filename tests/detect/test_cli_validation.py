"""Bad input to the detection verbs: one clear line, no traceback, and before the work it would waste."""

import json
import math
import os

import numpy as np
import pytest
import soundfile as sf

from lmustream.audio import write_audio
from lmustream.cli import build_parser, main
from lmustream.errors import ConfigError
from lmustream.stream import microphone, stream_eval
from lmustream.stream.calibrate import calibrate
from lmustream.stream.detector import Detector, DetectorConfig
from lmustream.stream.enroll import check_enrollment, enroll
from tests.detect.fakes import EnergyKernel, FakeMicrophone, forbid_audio_devices, silence, tiny_model_file, tone


@pytest.fixture
def model(tmp_path):
    return str(tiny_model_file(tmp_path / "tiny.safetensors"))


@pytest.fixture
def corpus(tmp_path, rng):
    pos = tmp_path / "pos"
    for word in ("yes", "no"):
        (pos / word).mkdir(parents=True)
        write_audio(pos / word / "s0_nohash_0.wav", np.concatenate([silence(0.3), tone(0.4, 500), silence(0.3)])
                    + (0.001 * rng.standard_normal(16000)).astype(np.float32))
    neg = tmp_path / "neg"
    neg.mkdir()
    write_audio(neg / "talk.wav", (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32))
    return str(pos), str(neg)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a stream is laid out or the model run over one: the error must come first."""
    def work(*args, **kwargs):
        raise AssertionError("the expensive work started before the bad input was refused")

    monkeypatch.setattr(stream_eval, "build_plan", work)
    monkeypatch.setattr(stream_eval, "frame_logits", work)
    import lmustream.stream.calibrate as calibrate_module

    monkeypatch.setattr(calibrate_module, "build_plan", work)


def refused(argv, capsys) -> str:
    """The message of a command line argparse refuses (exit status 2), without its 'prog: error: '."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1].split(": error: ", 1)[1]


def failed(argv, capsys) -> str:
    """The one ``error: ...`` line of a command that stops with exit status 2."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, captured.err
    return errors[0][len("error: "):]


# -- 1. --plot: a format matplotlib writes, checked before the stream runs --------------------------
@pytest.mark.parametrize("name", ["det.txt", "det", "det."])
def test_eval_stream_refuses_a_plot_format_matplotlib_cannot_write(tmp_path, name, capsys):
    message = refused(["eval-stream", "--model", str(tmp_path / "no-model"), "--positives", str(tmp_path),
                       "--plot", str(tmp_path / name)], capsys)
    assert "the suffix names the image format" in message and "png" in message and "svg" in message


def test_eval_stream_plot_path_checks(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    base = ["eval-stream", "--positives", str(tmp_path)]
    assert "is a file, not a folder" in refused(base + ["--plot", str(blocker / "det.png")], capsys)
    assert "folder" in refused(base + ["--plot", str(tmp_path)], capsys)
    parser = build_parser()
    for name in ("det.png", "DET.PDF", "sub/dir/det.svg"):  # a missing folder is made when the plot is drawn
        assert parser.parse_args(base + ["--plot", str(tmp_path / name)]).plot == str(tmp_path / name)
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)  # pgf goes through TeX, which this machine lacks
    assert "pgf output needs" in refused(base + ["--plot", str(tmp_path / "det.pgf")], capsys)


def test_eval_stream_prints_its_figures_before_a_failing_plot(tmp_path, model, corpus, capsys, monkeypatch):
    def broken(curves, hours, path):
        raise ValueError("the backend cannot draw this")

    monkeypatch.setattr(stream_eval, "plot_det", broken)
    pos, neg = corpus
    message = failed(["eval-stream", "--model", model, "--positives", pos, "--negatives", neg, "--hours", "0.005",
                      "--no-progress", "--json", "--plot", str(tmp_path / "det.png")], capsys)
    assert message == f"--plot {str(tmp_path / 'det.png')!r}: the backend cannot draw this"


# -- 2-4. numeric options: finite, the right sign, ordered ranges --------------------------------------
BAD_VALUES = [
    ("calibrate", "--hours", "nan", "expected a number of hours > 0"),
    ("calibrate", "--hours", "inf", "expected a number of hours > 0"),
    ("calibrate", "--hours", "0", "expected a number of hours > 0"),
    ("eval-stream", "--hours", "nan", "expected a number of hours > 0"),
    ("eval-stream", "--hours", "-1", "expected a number of hours > 0"),
    ("calibrate", "--target-fa-per-hour", "nan", "expected a number per hour > 0"),
    ("calibrate", "--target-fa-per-hour", "0", "expected a number per hour > 0"),
    ("calibrate", "--target-fa-per-hour", "-inf", "expected a number per hour > 0"),
    ("calibrate", "--seed", "-1", "expected an integer >= 0"),
    ("eval-stream", "--seed", "1.5", "expected an integer >= 0"),
    ("eval-stream", "--check-segments", "-1", "expected a number of minutes >= 0"),
    ("eval-stream", "--check-segments", "nan", "expected a number of minutes >= 0"),
    ("eval-stream", "--max-latency", "-1", "expected a number of seconds >= 0"),
    ("eval-stream", "--max-latency", "nan", "expected a number of seconds >= 0"),
    ("eval-stream", "--snr", "nan:nan", "finite numbers in dB"),
    ("eval-stream", "--snr", "5:inf", "finite numbers in dB"),
    ("eval-stream", "--snr", "25:5", "LOW must not exceed HIGH"),
    ("eval-stream", "--snr", "five", "expected LOW:HIGH (e.g. 5:25) in dB"),
    ("eval-stream", "--speech-level", "10:20", "in dBFS, at most 0 (full scale)"),
    ("eval-stream", "--speech-level", "-20:3", "in dBFS, at most 0 (full scale)"),
    ("eval-stream", "--speech-level", "-inf:-20", "finite numbers in dBFS"),
    ("stream", "--window", "nan", "expected a number of seconds > 0"),
    ("stream", "--smoothing", "-0.1", "expected a number of seconds >= 0"),
    ("calibrate", "--refractory", "inf", "expected a number of seconds >= 0"),
    ("eval-stream", "--hold", "nan", "expected a number of seconds >= 0"),
    ("listen", "--isolation", "-1", "expected a number of seconds >= 0"),
    ("stream", "--trailing-pause", "nan", "expected a number of seconds >= 0"),
    ("stream", "--keywords", " , ", "expected comma-separated keywords"),
    ("listen", "--seconds", "-1", "expected a number of seconds > 0"),
    ("listen", "--seconds", "nan", "expected a number of seconds > 0"),
    ("listen", "--block-ms", "0", "expected a number of milliseconds > 0 and <= 1000"),
    ("listen", "--block-ms", "-20", "expected a number of milliseconds > 0 and <= 1000"),
    ("listen", "--block-ms", "nan", "expected a number of milliseconds > 0 and <= 1000"),
    ("listen", "--block-ms", "6000", "expected a number of milliseconds > 0 and <= 1000"),
    ("enroll", "--seconds", "nan", "expected a number of seconds >= 0.5"),
    ("enroll", "--seconds", "-2", "expected a number of seconds >= 0.5"),
    ("enroll", "--retries", "-1", "expected an integer >= 0"),
]
REQUIRED = {"stream": ["x.wav"], "listen": [], "enroll": ["--word", "hi", "--count", "1", "--out", "clips"],
            "calibrate": ["--negatives", "neg"], "eval-stream": ["--positives", "pos"]}


@pytest.mark.parametrize("verb, option, value, expected", BAD_VALUES)
def test_numeric_options_are_refused_when_parsed(verb, option, value, expected, capsys, monkeypatch):
    forbid_audio_devices(monkeypatch)
    message = refused([verb, *REQUIRED[verb], "--model", "no-such-model", f"{option}={value}"], capsys)
    assert message.startswith(f"argument {option}: ") and expected in message, message
    assert repr(value) in message  # the value as typed


@pytest.mark.parametrize("verb, option, value, parsed", [
    ("eval-stream", "--speech-level", "-40:0", (-40.0, 0.0)),
    ("eval-stream", "--snr", "-5:10", (-5.0, 10.0)),
    ("eval-stream", "--snr", "10", (10.0, 10.0)),
    ("eval-stream", "--check-segments", "0", 0.0),
    ("eval-stream", "--max-latency", "0", 0.0),
    ("stream", "--smoothing", "0", 0.0),
    ("stream", "--keywords", "yes, no,yes", ["yes", "no"]),
    ("listen", "--block-ms", "1000", 1000.0),
    ("enroll", "--seconds", "0.5", 0.5),
    ("enroll", "--retries", "0", 0),
])
def test_sensible_values_still_parse(verb, option, value, parsed):
    args = build_parser().parse_args([verb, *REQUIRED[verb], f"{option}={value}"])
    assert getattr(args, option.lstrip("-").replace("-", "_")) == parsed


def test_the_library_refuses_non_finite_settings_too(corpus):
    from pathlib import Path

    pos, neg = corpus
    clips = {"yes": sorted(Path(pos, "yes").iterdir())}
    for kwargs, message in (({"hours": math.nan}, "--hours must be a number > 0"),
                            ({"hours": 0.001, "snr": (math.nan, math.nan)}, "--snr must be a range"),
                            ({"hours": 0.001, "speech_level": (10.0, 20.0)}, "at most 0 dBFS")):
        with pytest.raises(ConfigError, match=message):
            stream_eval.build_plan(clips, [], [], **kwargs)
    with pytest.raises(ConfigError, match="--target-fa-per-hour must be a number > 0, got nan"):
        calibrate(EnergyKernel(), [Path(neg, "talk.wav")], [], DetectorConfig(posterior="sigmoid"), math.nan,
                  0.001, ["yes"])
    with pytest.raises(ConfigError, match="--max-latency must be a number of seconds >= 0"):
        stream_eval.sweep(np.zeros((10, 4)), ["yes", "no", "_unknown_", "_silence_"],
                          stream_eval.StreamPlan([], [], 2000, {}), DetectorConfig(posterior="sigmoid"), 5,
                          max_latency=math.nan)


def test_check_segments_shorter_than_the_look_ahead_is_refused_before_the_stream(model, corpus, capsys, no_work):
    pos, neg = corpus
    message = failed(["eval-stream", "--model", model, "--positives", pos, "--negatives", neg,
                      "--check-segments", "0.0001"], capsys)
    assert message.startswith("--check-segments 0.0001 min is 0 frame(s), within the model's look-ahead")


# -- 5. --window: one rule, one message -------------------------------------------------------------
@pytest.mark.parametrize("window", [0, 0.0, -1, -0.5, math.nan])
def test_window_has_one_rule_and_says_it(window):
    with pytest.raises(ConfigError, match=r"detector window must be a number of seconds > 0, got"):
        DetectorConfig(window=window)
    if window != 0:  # the other settings may be 0, and say so
        with pytest.raises(ConfigError, match=r"detector smoothing must be a number of seconds >= 0, got"):
            DetectorConfig(smoothing=window)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_stream_window_messages_agree(value, capsys):
    assert refused(["stream", "x.wav", "--window", value], capsys) \
        == f"argument --window: expected a number of seconds > 0, got '{value}'"


# -- 6. labels starting with _ are not keywords ------------------------------------------------------
def test_underscore_labels_are_not_keywords(tmp_path, model, corpus, capsys, no_work):
    with pytest.raises(ConfigError, match=r"\['_silence_'\]: labels starting with '_' are not keywords.*"
                                          r"the model's keywords: yes, no"):
        Detector(EnergyKernel(), keywords=["yes", "_silence_"])
    path = tmp_path / "quiet.wav"
    write_audio(path, silence(1.0))
    message = failed(["stream", str(path), "--model", model, "--keywords", "_unknown_"], capsys)
    assert "'_unknown_'" in message and "not keywords" in message and "yes, no" in message
    pos, neg = corpus
    for verb in (["calibrate", "--negatives", neg], ["eval-stream", "--positives", pos]):
        message = failed([*verb, "--model", model, "--keywords", "yes,_unknown_"], capsys)
        assert message.startswith("--keywords ['_unknown_']: labels starting with '_' are not keywords")


# -- 7. non-finite samples in a file: named by the file, counted over it -----------------------------
def test_stream_names_the_file_with_non_finite_samples(tmp_path, model, capsys):
    bad = tmp_path / "nan.wav"
    x = np.stack([tone(2.0, 500), tone(2.0, 700)], axis=1)  # stereo, 2 s: four 0.5 s blocks
    x[12000, 1] = np.nan  # one channel is enough to spoil the mono mix
    x[20000:20010, 0] = np.inf
    x[30000, :] = -np.inf
    sf.write(bad, x, 16000, subtype="FLOAT")
    good = tmp_path / "good.wav"
    write_audio(good, silence(1.0))
    assert main(["stream", str(bad), str(good), "--model", model, "--json"]) == 2
    captured = capsys.readouterr()
    expected = f"{str(bad)!r}: 12 non-finite sample(s) (NaN or Inf), first at frame 12000 (0.75 s)"
    assert f"error: {expected}\n" in captured.err and "Detector.push" not in captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert {"type": "error", "file": str(bad), "error": expected} in lines
    assert "1 of 2 file(s) could not be read" in captured.err


# -- 8. noise and negatives: a folder without audio is an error, not audio left out -------------------
def test_an_empty_or_unreadable_noise_folder_is_refused(tmp_path, model, corpus, capsys, no_work):
    pos, neg = corpus
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not audio")
    base = ["calibrate", "--model", model, "--negatives", neg, "--no-progress"]
    assert failed(base + ["--noise", str(empty)], capsys) == f"--noise {empty}: no audio files in this folder"
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "a.wav").write_text("not audio")
    (garbage / "b.wav").write_bytes(b"")
    message = failed(base + ["--noise", str(garbage)], capsys)
    assert message.startswith(f"--noise: none of the 2 file(s) can be read as audio (first: {garbage / 'a.wav'}")
    assert failed(base + ["--noise", str(tmp_path / "missing")], capsys) \
        == f"--noise {tmp_path / 'missing'}: no such file or folder"
    assert failed(["eval-stream", "--model", model, "--positives", pos, "--negatives", str(empty)], capsys) \
        == f"--negatives {empty}: no audio files in this folder"


# -- 9. output files: checked before the computation -------------------------------------------------
def test_calibrate_checks_its_output_paths_first(tmp_path, corpus, capsys, no_work, monkeypatch):
    pos, neg = corpus
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    base = ["calibrate", "--model", "no-such-model", "--negatives", neg]
    for option in ("--out", "--write-model"):
        message = refused(base + [option, str(blocker / "c.json")], capsys)
        assert message.startswith(f"argument {option}: ") and "is a file, not a folder" in message
    same = str(tmp_path / "c.json")
    assert failed(base + ["--out", same, "--write-model", same], capsys).startswith(
        "--out and --write-model name the same file")
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # a folder we may not write in
    assert "cannot write" in refused(base + ["--out", str(tmp_path / "c.json")], capsys)


# -- 10. listen and enroll: their options are checked before any device is opened ---------------------
@pytest.mark.parametrize("options, expected", [
    (["--model", "no-such-model"], "no shipped model"),
    (["--keywords", "maybe"], "not among the model's labels"),
    (["--keywords", "_silence_"], "not keywords"),
    (["--threshold", "1.5"], "must be a number in [0, 1]"),
    (["--hold", "2", "--refractory", "1"], "must not exceed refractory"),
])
def test_listen_checks_the_model_and_detector_before_the_device(model, options, expected, capsys, monkeypatch):
    forbid_audio_devices(monkeypatch)
    assert expected in failed(["listen", "--model", model, *options], capsys)


def test_listen_learns_the_rate_from_the_device(model, monkeypatch, capsys, rng):
    """The detector is made before the device is opened; the device's rate reaches it with the blocks."""
    signal = (0.05 * rng.standard_normal(48000 * 3)).astype(np.float32)
    mics = []

    def fake(device=None, block_seconds=0.02):
        mics.append(FakeMicrophone(signal, 48000, block_seconds))
        return mics[-1]

    monkeypatch.setattr(microphone, "Microphone", fake)
    assert main(["listen", "--model", model, "--json", "--seconds", "2", "--block-ms", "50"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["sample_rate"] == 48000 and summary["seconds"] == 2.0 and mics[0].opened
    assert mics[0].block_size == 2400


@pytest.mark.parametrize("options, expected", [
    (["--word", "../x"], "--word must be letters"),
    (["--speaker", "a b"], "--speaker must be letters"),
    (["--out", "{file}"], "is a file, not a folder"),
    (["--out", "{file}/deeper"], "is a file, not a folder"),
])
def test_enroll_checks_its_arguments_before_the_device(tmp_path, options, expected, capsys, monkeypatch):
    forbid_audio_devices(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    options = [o.replace("{file}", str(blocker)) for o in options]
    argv = ["enroll", "--word", "hi", "--count", "1", "--out", str(tmp_path / "clips"), *options]
    assert expected in failed(argv, capsys)


def test_enroll_refuses_non_finite_and_negative_settings(tmp_path):
    for kwargs, message in (({"seconds": math.nan}, "--seconds must be a number >= 0.5"),
                            ({"seconds": math.inf}, "--seconds must be a number >= 0.5"),
                            ({"retries": -1}, "--retries must be a whole number >= 0"),
                            ({"count": 1.5}, "--count must be a whole number >= 1")):
        args = {"count": 1, **kwargs}
        with pytest.raises(ConfigError, match=message):
            check_enrollment("hi", args.pop("count"), tmp_path, **args)
        with pytest.raises(ConfigError, match=message):  # enroll() itself, before anything is recorded
            enroll(FakeMicrophone(silence(1.0)), "hi", kwargs.get("count", 1), tmp_path, pause=0,
                   **{k: v for k, v in kwargs.items() if k != "count"})
    assert check_enrollment("hi", 2, tmp_path / "new") == tmp_path / "new" / "hi"
    assert not (tmp_path / "new").exists()  # checked, not made


def test_microphone_refuses_a_bad_block_length_before_looking_for_devices(monkeypatch):
    real = microphone.Microphone
    forbid_audio_devices(monkeypatch)
    for seconds in (0, -0.02, math.nan, math.inf):
        with pytest.raises(ConfigError, match="block length must be a number of seconds > 0"):
            real(None, block_seconds=seconds)
