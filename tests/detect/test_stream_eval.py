"""The streaming evaluation: stream layout, rendering, scoring, segmented logits, calibration."""

import numpy as np
import pytest

from lmustream.audio import write_audio
from lmustream.data.clips import SkippedFileWarning, collect_audio
from lmustream.errors import ConfigError
from lmustream.stream.calibrate import calibrate
from lmustream.stream.detector import DetectorConfig
from lmustream.stream.stream_eval import (build_plan, detector_events, frame_logits, keyword_clips, render,
                                          score_detections, score_events, span_errors, stream_levels, summarize,
                                          sweep)
from lmustream.stream.torch_stream import TorchKernel
from tests.detect.fakes import EnergyKernel, silence, tiny_artifact, tone


@pytest.fixture
def corpus(tmp_path, rng):
    """Keyword "clips" (tones inside quiet 1 s files), other speech (chirps), noise."""
    pos = tmp_path / "positives"
    for word, freq in (("yes", 500), ("no", 1500), ("cat", 1000)):
        (pos / word).mkdir(parents=True)
        for i in range(3):
            x = np.concatenate([silence(0.3), tone(0.4, freq + 10 * i), silence(0.3)])
            x += 0.001 * rng.standard_normal(x.size).astype(np.float32)
            write_audio(pos / word / f"spk{i}_nohash_0.wav", x)
    neg = tmp_path / "negatives"
    neg.mkdir()
    for i in range(2):
        t = np.arange(32000) / 16000
        write_audio(neg / f"s{i}.flac", (0.2 * np.sin(2 * np.pi * (3000 + 500 * t) * t)).astype(np.float32))
    noise = tmp_path / "noise"
    noise.mkdir()
    write_audio(noise / "hiss.wav", (0.05 * rng.standard_normal(16000 * 5)).astype(np.float32))
    return pos, neg, noise


def test_plan_is_deterministic_and_renders_in_pieces(corpus):
    pos, neg, noise = corpus
    kw, others = keyword_clips(pos, ["yes", "no"])
    assert sorted(kw) == ["no", "yes"] and sorted(others) == ["cat"]
    make = lambda seed: build_plan(kw, collect_audio([neg]), collect_audio([noise]), hours=0.03, seed=seed,  # noqa
                                   repeats=2, other_words=others)
    a, b, c = make(1), make(1), make(2)
    assert [(i.source, i.start) for i in a.items] == [(i.source, i.start) for i in b.items]
    assert [(i.source, i.start) for i in a.items] != [(i.source, i.start) for i in c.items]
    comp = a.composition
    assert comp["keyword_insertions"] == 12 and comp["other_word_insertions"] == 6 and comp["keyword_clips"] == 6
    assert comp["hours"] >= 0.03 and comp["speech_passes"] >= 2 and comp["speech_items"] > 4
    whole = render(a, 0, a.n_samples)
    pieces = np.concatenate([render(a, s, min(s + 7777, a.n_samples)) for s in range(0, a.n_samples, 7777)])
    np.testing.assert_array_equal(whole, pieces)
    for item in a.positives():  # the speech span sits inside the item, where the tone is
        assert item.start <= item.speech[0] < item.speech[1] <= item.end
        assert abs((item.speech[1] - item.speech[0]) / 16000 - 0.4) < 0.03
    items = sorted(a.items, key=lambda i: i.start)
    assert all(x.end <= y.start for x, y in zip(items, items[1:]))  # nothing overlaps


def test_scoring_hits_misses_false_alarms():
    spans = np.array([[1.0, 1.5], [5.0, 5.4], [9.0, 9.5]])
    times = np.array([0.5, 1.6, 1.7, 5.3, 11.0])
    hits, fas, lat = score_detections(times, spans, max_latency=1.0)
    # 0.5 before any word; 1.6 hits word 1, 1.7 is a second detection of it; 5.3 hits word 2; 11.0 too late
    assert hits == 2 and fas == 3 and lat == pytest.approx([0.1, -0.1])


def test_sweep_on_a_kernel_with_known_answers(corpus):
    pos, neg, noise = corpus
    kw, _ = keyword_clips(pos, ["yes", "no"])
    plan = build_plan(kw, collect_audio([neg]), [], hours=0.01, seed=0, repeats=2, snr=(30, 30))
    kernel = EnergyKernel(lookahead=5)
    logits = frame_logits(kernel, plan)
    config = DetectorConfig(window=0.3, smoothing=0.05, posterior="softmax")
    curves = sweep(logits, kernel.labels, plan, config, kernel.lookahead, thresholds=[0.5, 0.9])
    for word in ("yes", "no"):
        c = curves[word]
        assert c.n_positives == 6 and list(c.hits) == [6, 6]
        # decided once most of the 0.3 s window holds the tone: before it ends (latency < 0), not long before
        assert all(-0.4 < x < 0.0 for x in c.latencies[0])
    # the chirps (3-4 kHz) are not tones of 500 / 1500 Hz but loud: the fake kernel calls them "no"
    assert curves["no"].false_alarms[0] > 0 and curves["yes"].false_alarms[0] == 0
    table = summarize(curves, plan.hours)
    assert table["yes"]["1"]["frr"] == 0.0 and table["no"]["5"]["frr"] is None
    # the Detector itself, fed the same logits block by block, makes the sweep's decisions
    events = detector_events(logits, kernel.labels, config, kernel.lookahead, {"yes": 0.5, "no": 0.9})
    assert sum(e.keyword == "yes" for e in events) == 6 + curves["yes"].false_alarms[0]
    assert sum(e.keyword == "no" for e in events) == 6 + curves["no"].false_alarms[1]
    scored = score_events(events, plan, ["yes", "no"])
    assert scored["hits"] == 12 and scored["frr"] == 0.0
    assert scored["false_alarms"] == curves["yes"].false_alarms[0] + curves["no"].false_alarms[1]
    spans = span_errors(events, plan)
    assert spans["hits"] == 12 and spans["median_start_error_ms"] < 40
    assert spans["median_end_error_ms"] < 250  # the decision comes before the tone ends (see above)


def test_the_stream_end_decides_as_the_detector_does():
    """A keyword still waiting for its trailing pause, or for its peak (hold), when the stream ends
    is decided by the end: by the sweep and by the Detector fed the same logits."""
    from lmustream.stream.stream_eval import StreamPlan

    labels = ["yes", "no", "_unknown_", "_silence_"]
    logits = np.zeros((300, 4), np.float32)
    logits[:, 3] = 8
    logits[240:290, 3], logits[240:290, 0] = 0, 8
    levels = np.full(300, -70.0, np.float32)
    levels[240:295] = -20  # 5 quiet frames at the end: less than the 0.2 s pause
    plan = StreamPlan([], [], 299 * 160 + 400, {})
    config = DetectorConfig(window=0.3, smoothing=0.05, posterior="softmax")
    curves = sweep(logits, labels, plan, config, 5, thresholds=[0.5], levels=levels, keywords=["yes"])
    events = detector_events(logits, labels, config, 5, {"yes": 0.5}, ["yes"], levels=levels)
    assert list(curves["yes"].false_alarms) == [1] and [e.keyword for e in events] == ["yes"]
    rising = logits.copy()
    rising[240:, 3], rising[240:, 0] = 0, np.linspace(1, 12, 60)  # at its peak on the last frame
    held = DetectorConfig(window=0.3, smoothing=0.05, posterior="softmax", hold=0.5, isolation=0)
    curves = sweep(rising, labels, plan, held, 5, thresholds=[0.5], keywords=["yes"])
    events = detector_events(rising, labels, held, 5, {"yes": 0.5}, ["yes"])
    assert list(curves["yes"].false_alarms) == [1] and [e.keyword for e in events] == ["yes"]


def test_the_sweep_starts_its_window_full_of_silence_as_the_detector_does():
    """A stream opening on 0.2 s of noise the model takes for "no": the detector, its window full
    of the model's silence, raises nothing; the sweep and the calibration must not count it either."""
    from lmustream.stream.stream_eval import StreamPlan

    labels = ["yes", "no", "_unknown_", "_silence_"]
    logits = np.zeros((500, 4), np.float32)
    logits[:, 3] = 8
    logits[:20, 3], logits[:20, 1] = 0, 8
    silence_logits = np.array([0.0, 0.0, 0.0, 8.0])
    plan = StreamPlan([], [], 499 * 160 + 400, {})
    config = DetectorConfig(window=1.0, smoothing=0.1, posterior="softmax", isolation=0)
    primed = sweep(logits, labels, plan, config, 5, thresholds=[0.5], keywords=["no"], prior_logits=silence_logits)
    unprimed = sweep(logits, labels, plan, config, 5, thresholds=[0.5], keywords=["no"])
    assert list(primed["no"].false_alarms) == [0] and list(unprimed["no"].false_alarms) == [1]
    assert detector_events(logits, labels, config, 5, {"no": 0.5}, ["no"], prior_logits=silence_logits) == []


def test_commands_are_told_from_running_speech_as_the_detector_tells_them(corpus):
    """The sweep drops and times detections as the live detector does (isolation and trailing pause)."""
    pos, neg, noise = corpus
    kw, _ = keyword_clips(pos, ["yes", "no"])
    # the chirps (2 s of "running speech", which the fake kernel calls "no") between isolated tones
    plan = build_plan(kw, collect_audio([neg]), collect_audio([noise]), hours=0.01, seed=0, repeats=2, snr=(30, 30))
    kernel = EnergyKernel(lookahead=5)
    logits, levels = frame_logits(kernel, plan), stream_levels(plan)
    spans = np.array([it.speech for it in plan.positives()]) / 16000
    curves = {}
    for pause in (0.0, 0.2):
        config = DetectorConfig(window=0.3, smoothing=0.05, posterior="softmax", trailing_pause=pause)
        curves[pause] = sweep(logits, kernel.labels, plan, config, kernel.lookahead, thresholds=[0.5], levels=levels)
        events = detector_events(logits, kernel.labels, config, kernel.lookahead, {"yes": 0.5, "no": 0.5},
                                 levels=levels)
        for word in ("yes", "no"):
            c = curves[pause][word]
            assert c.n_positives == 6 and c.hits[0] == 6
            assert sum(e.keyword == word for e in events) == 6 + c.false_alarms[0]  # the detector agrees
        if pause:  # every tone is reported after its word and the pause that follows it, spanning the word
            hits = [(e, spans[np.argmin(np.abs(spans[:, 0] - e.start))]) for e in events]
            hits = [(e, span) for e, span in hits if abs(e.start - span[0]) < 0.05]
            assert len(hits) == 12, [(e.keyword, e.start, e.end, e.detected_at) for e in events]
            assert all(span[1] + pause <= e.detected_at <= span[1] + pause + 0.1 for e, span in hits)
            assert all(abs(e.end - span[1]) < 0.05 for e, span in hits)
    # a chirp's first second passes the isolation check alone; waiting for its end tells it is no command
    assert curves[0.0]["no"].false_alarms[0] > 0 and curves[0.2]["no"].false_alarms[0] == 0
    assert curves[0.0]["yes"].false_alarms[0] == curves[0.2]["yes"].false_alarms[0] == 0


def test_segmented_logits_equal_one_continuous_stream(corpus):
    pos, neg, noise = corpus
    kw, _ = keyword_clips(pos, ["yes", "no"])
    plan = build_plan(kw, collect_audio([neg]), collect_audio([noise]), hours=0.004, seed=3)
    kernel = TorchKernel(tiny_artifact())

    class Continuous:
        lookahead, labels, open = kernel.lookahead, kernel.labels, kernel.open

    exact = frame_logits(Continuous(), plan)
    segmented = frame_logits(kernel, plan, segment_s=2.0, warmup_s=3.0, batch=4)
    assert segmented.shape == exact.shape == ((plan.n_samples - 400) // 160 + 1, 4)
    np.testing.assert_allclose(segmented, exact, atol=1e-3)


def test_calibration_meets_the_target_on_its_negatives(corpus):
    pos, neg, noise = corpus
    kernel = EnergyKernel()
    config = DetectorConfig(window=0.3, smoothing=0.05, posterior="softmax")
    result, curves, plan = calibrate(kernel, collect_audio([neg]), collect_audio([noise]), config,
                                     target_fa_per_hour=20.0, hours=0.02, keywords=["yes", "no"])
    for word in ("yes", "no"):
        fa = curves[word].false_alarms[list(curves[word].thresholds).index(result["thresholds"][word])]
        assert fa / plan.hours <= 20.0
    assert result["thresholds"]["no"] > result["thresholds"]["yes"]  # the chirps look like "no"
    assert result["negative_hours"] == pytest.approx(plan.hours, abs=1e-3)
    with pytest.raises(ConfigError, match="target"):
        calibrate(kernel, collect_audio([neg]), [], config, 0, 0.01, ["yes"])


def test_calibration_sweeps_from_the_silence_the_detector_starts_from(corpus, monkeypatch):
    """calibrate's sweep starts its window full of the model's silence logits, as the Detector does
    (test_the_sweep_starts_its_window_full_of_silence_as_the_detector_does shows what that changes)."""
    import lmustream.stream.calibrate as calibration
    from lmustream.stream.detector import silence_logits

    pos, neg, noise = corpus
    seen = []

    def recording_sweep(*args, **kwargs):
        seen.append(kwargs.get("prior_logits"))
        return sweep(*args, **kwargs)

    monkeypatch.setattr(calibration, "sweep", recording_sweep)
    kernel = EnergyKernel()
    config = DetectorConfig(window=0.3, smoothing=0.05, posterior="softmax")
    calibration.calibrate(kernel, collect_audio([neg]), collect_audio([noise]), config, target_fa_per_hour=20.0,
                          hours=0.01, keywords=["yes"])
    assert len(seen) == 1 and seen[0] is not None
    np.testing.assert_array_equal(seen[0], silence_logits(kernel.open(), 16000))


def test_bad_inputs(tmp_path, corpus):
    pos, neg, noise = corpus
    with pytest.raises(ConfigError, match="no such file"):
        collect_audio([tmp_path / "missing"])
    with pytest.raises(ConfigError, match="no folder named after a keyword"):
        keyword_clips(pos, ["stop"])
    with pytest.raises(ConfigError, match="hours"):
        build_plan({}, [], [], hours=0)


def test_unreadable_files_are_skipped_and_named(tmp_path, corpus, capsys):
    from lmustream.cli import main

    pos, neg, noise = corpus
    (pos / "yes" / "broken_nohash_0.wav").write_text("not audio")
    (neg / "broken.flac").write_bytes(b"fLaC and nothing after")
    (noise / "broken.wav").write_bytes(b"RIFF")
    kw, _ = keyword_clips(pos, ["yes", "no"])
    with pytest.warns(SkippedFileWarning, match="skipped 3 unusable audio file"):
        plan = build_plan(kw, collect_audio([neg]), collect_audio([noise]), hours=0.02)
    skipped = plan.composition["skipped_unreadable_files"]
    assert len(skipped) == 3 and all("broken" in s for s in skipped)
    assert plan.composition["keyword_clips"] == 6 and plan.composition["speech_files"] == 2
    assert all("broken" not in i.source for i in plan.items)
    assert all("broken" not in s.source for s in plan.noise)
    model = tmp_path / "tiny.safetensors"
    from lmustream.models.artifact import save_model
    save_model(model, tiny_artifact())
    assert main(["eval-stream", "--model", str(model), "--backend", "torch", "--positives", str(pos),
                 "--keywords", "yes,no", "--negatives", str(neg), "--noise", str(noise), "--hours", "0.02",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    # one warning line naming all three (the project's warning for skipped files)
    (line,) = [line for line in err.splitlines() if line.startswith("warning: skipped")]
    assert line.startswith("warning: skipped 3 unusable audio file(s) building the stream")
    assert all(str(path) in line for path in (pos / "yes" / "broken_nohash_0.wav", neg / "broken.flac",
                                              noise / "broken.wav"))


def test_a_stream_of_only_unreadable_files_is_an_error(tmp_path, corpus):
    pos, neg, noise = corpus
    kw, _ = keyword_clips(pos, ["yes", "no"])
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.wav", "b.flac"):
        (bad / name).write_text("not audio")
    with pytest.raises(ConfigError, match="none of the 2 negative recordings could be read"):
        build_plan(kw, collect_audio([bad]), collect_audio([noise]), hours=0.02)
    with pytest.raises(ConfigError, match="none of the 2 noise recordings could be read"):
        build_plan(kw, collect_audio([neg]), collect_audio([bad]), hours=0.02)
    with pytest.raises(ConfigError, match="none of the 2 keyword clips could be read"):
        build_plan({"yes": collect_audio([bad])}, collect_audio([neg]), [], hours=0.02)


def test_negatives_are_read_only_as_far_as_the_stream_needs(tmp_path, corpus, monkeypatch):
    """A large collection of negatives must not be loaded whole for a short stream."""
    from lmustream.stream import stream_eval

    pos, neg, noise = corpus
    for i in range(2, 40):
        (neg / f"s{i}.flac").write_bytes((neg / "s0.flac").read_bytes())
    read = []
    real_load = stream_eval.load_audio
    monkeypatch.setattr(stream_eval, "load_audio", lambda path: read.append(path) or real_load(path))
    kw, _ = keyword_clips(pos, ["yes", "no"])
    plan = build_plan(kw, collect_audio([neg]), collect_audio([noise]), hours=0.005)
    sentences = {i.source for i in plan.items if i.kind == "speech"}
    assert len([p for p in read if p.parent == neg]) == len(sentences) < 40
