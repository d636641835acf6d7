"""Detector logic on synthetic posteriors and on a kernel whose logits are known exactly."""

import json

import numpy as np
import pytest

from lmustream.errors import AudioError, ConfigError
from lmustream.stream.detector import (Detector, DetectorConfig, Event, FrameClock, KeywordTrigger, MovingAverage,
                                       LevelMeter, PosteriorSmoother, evidence_run, frame_levels, load_thresholds,
                                       is_isolated, override_config, resolve_posterior,
                                       speech_run)
from tests.detect.fakes import EnergyKernel, LogitsKernel, silence, tone


def reference_triggers(p, threshold, refractory, hold):
    """Frame by frame, the rules as the documentation states them."""
    out, armed, last_fire, pending = [], True, None, None
    for t, value in enumerate(p):
        if pending is not None:  # following a crossing to its peak
            fire, best, last = pending
            if value < last or t - fire >= hold:
                out.append((fire, t, max(best, value)))
                pending = None
                armed = armed or value < threshold
            else:
                pending = (fire, max(best, value), value)
            continue
        if value < threshold:
            armed = True
        elif armed and (last_fire is None or t - last_fire >= refractory):
            last_fire, armed = t, False
            if hold == 0:
                out.append((t, t, value))
            else:
                pending = (t, value, value)
    return out


def bumps(centres, width, n, heights=None, rng=None):
    t = np.arange(n)
    p = np.zeros(n)
    for i, c in enumerate(centres):
        h = 1.0 if heights is None else heights[i]
        p = np.maximum(p, h * np.exp(-0.5 * ((t - c) / width) ** 2))
    if rng is not None:
        p = np.clip(p + rng.normal(0, 0.03, n), 0, 1)
    return p


def split_push(trigger, p, rng):
    out, i = [], 0
    while i < p.size:
        k = int(rng.integers(1, 40))
        out += trigger.push(p[i:i + k])
        i += k
    return [(t.fire, t.emit, t.confidence) for t in out]


def push_in_random_blocks(average, x, rng, largest):
    """The rows ``average`` gives for ``x`` pushed in blocks of 0..largest rows."""
    parts, i = [], 0
    while i < len(x):
        k = int(rng.integers(0, largest))
        parts.append(average.push(x[i:i + k]))
        i += k
    return np.concatenate(parts)


def test_moving_average_blocks_equal_one_push(rng):
    x = rng.normal(size=(500, 3))
    whole = MovingAverage(37, 3).push(x)
    naive = np.array([x[max(0, i - 36):i + 1].mean(axis=0) for i in range(500)])
    np.testing.assert_allclose(whole, naive, atol=1e-12)
    np.testing.assert_allclose(push_in_random_blocks(MovingAverage(37, 3), x, rng, 60), naive, atol=1e-12)


def test_a_prior_fills_the_window_before_the_stream_began(rng):
    x = rng.normal(size=(120, 3))
    prior = np.array([-4.0, 0.5, 2.0])
    padded = np.concatenate([np.tile(prior, (37, 1)), x])
    naive = np.array([padded[i + 1:i + 38].mean(axis=0) for i in range(120)])  # the window over prior + rows
    ma = MovingAverage(37, 3, prior)
    np.testing.assert_allclose(push_in_random_blocks(ma, x, rng, 20), naive, atol=1e-12)
    ma.reset()
    np.testing.assert_allclose(ma.push(x), naive, atol=1e-12)
    with pytest.raises(ConfigError, match="prior"):
        MovingAverage(37, 3, np.zeros(4))
    with pytest.raises(ConfigError, match="prior"):
        MovingAverage(37, 3, np.array([0.0, np.nan, 0.0]))


def test_smoother_is_softmax_of_the_window_mean_then_averaged(rng):
    logits = rng.normal(size=(200, 4))
    post = PosteriorSmoother(4, window_frames=10, smoothing_frames=5).push(logits)
    avg = np.array([logits[max(0, i - 9):i + 1].mean(axis=0) for i in range(200)])
    soft = np.exp(avg) / np.exp(avg).sum(axis=1, keepdims=True)
    expected = np.array([soft[max(0, i - 4):i + 1].mean(axis=0) for i in range(200)])
    np.testing.assert_allclose(post, expected, atol=1e-12)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-12)


def test_sigmoid_posteriors_are_per_class(rng):
    logits = 30 * rng.normal(size=(50, 3))  # large values: no overflow warnings either
    post = PosteriorSmoother(3, window_frames=4, smoothing_frames=1, posterior="sigmoid").push(logits)
    avg = np.array([logits[max(0, i - 3):i + 1].mean(axis=0) for i in range(50)])
    np.testing.assert_allclose(post, 1 / (1 + np.exp(-avg)), atol=1e-12)
    with pytest.raises(ConfigError, match="posterior"):
        PosteriorSmoother(3, 4, 1, posterior="auto")


def test_posterior_follows_the_training_loss(tmp_path):
    from tests.detect.fakes import tiny_model_file

    assert resolve_posterior(DetectorConfig(), "bce").posterior == "sigmoid"
    assert resolve_posterior(DetectorConfig(), "ce").posterior == "softmax"
    assert resolve_posterior(DetectorConfig(), None).posterior == "softmax"
    assert resolve_posterior(DetectorConfig(posterior="softmax"), "bce").posterior == "softmax"
    bce = tiny_model_file(tmp_path / "bce.safetensors", extra={"recipe": {"optim": {"loss": "bce"}}})
    assert Detector(str(bce), backend="torch").config.posterior == "sigmoid"
    assert Detector(str(bce), backend="torch", posterior="softmax").config.posterior == "softmax"
    # A model fine-tuned from a BCE base was last trained with softmax cross-entropy: that decides.
    tuned = tiny_model_file(tmp_path / "tuned.safetensors",
                            extra={"recipe": {"optim": {"loss": "bce"}}, "finetune": {"loss": "ce"}})
    assert Detector(str(tuned), backend="torch").config.posterior == "softmax"
    with pytest.raises(ConfigError, match="posterior"):
        DetectorConfig(posterior="tanh")


def test_trigger_fires_once_per_bump_and_respects_refractory():
    p = bumps([100, 400, 430], 8, 600, heights=[0.9, 0.9, 0.95])
    hits = KeywordTrigger(0.5, refractory_frames=100, hold_frames=0).push(p)
    # the bump at 430 is 30 frames after the one at 400: inside the refractory period
    assert [h.fire for h in hits] == [int(np.argmax(p >= 0.5)), 300 + int(np.argmax(p[300:] >= 0.5))]
    assert KeywordTrigger(0.99, 100).push(p) == []


def test_plateau_does_not_refire_until_the_posterior_drops():
    p = np.r_[np.zeros(10), np.full(500, 0.9), np.zeros(10), np.full(5, 0.9)]
    hits = KeywordTrigger(0.5, refractory_frames=50).push(p)
    assert [h.fire for h in hits] == [10, 520]


def test_hold_waits_for_the_peak_but_not_longer():
    p = bumps([100], 10, 300)
    fire = int(np.argmax(p >= 0.5))
    (hit,) = KeywordTrigger(0.5, 100, hold_frames=50).push(p)
    assert hit.fire == fire and hit.emit == 101 and hit.confidence == pytest.approx(1.0)
    (hit,) = KeywordTrigger(0.5, 100, hold_frames=3).push(p)
    assert hit.emit == fire + 3 and hit.confidence == pytest.approx(p[fire + 3])
    with pytest.raises(ConfigError, match="hold"):
        KeywordTrigger(0.5, refractory_frames=2, hold_frames=3)


@pytest.mark.parametrize("hold", [0, 1, 7])
@pytest.mark.parametrize("threshold", [0.3, 0.6])
def test_trigger_equals_frame_by_frame_rules_in_any_blocks(rng, hold, threshold):
    p = bumps(rng.integers(0, 3000, 25), 6, 3000, heights=rng.uniform(0.2, 1.0, 25), rng=rng)
    expected = reference_triggers(p, threshold, 40, hold)
    whole = [(t.fire, t.emit, t.confidence) for t in KeywordTrigger(threshold, 40, hold).push(p)]
    assert whole == expected and len(expected) > 5
    assert split_push(KeywordTrigger(threshold, 40, hold), p, rng) == expected


def test_evidence_run_brackets_the_peak():
    x = np.full(100, -5.0)
    x[40:60] = 0.0
    start, end = evidence_run(x)
    assert 38 <= start <= 41 and 58 <= end <= 61


def test_levels_in_blocks_equal_one_pass(rng):
    x = rng.standard_normal(16000).astype(np.float32)
    whole = frame_levels(x)
    meter = LevelMeter()
    parts = [meter.push(x[i:i + 777]) for i in range(0, x.size, 777)]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-4)
    assert whole.size == 1 + (16000 - 400) // 160


def test_speech_run_picks_the_word_the_evidence_points_at():
    levels = np.full(200, -70.0)
    levels[20:50] = -20.0  # an earlier word
    levels[100:130] = -25.0  # the keyword, with a 100 ms closure inside it
    levels[140:160] = -25.0
    assert speech_run(levels, anchor=170) == (100, 159)  # the evidence comes after the word
    assert speech_run(levels, anchor=110) == (100, 159)
    assert speech_run(levels, anchor=60) == (20, 49)
    assert speech_run(levels, anchor=5) == (20, 49)
    assert speech_run(np.full(50, -40.0), anchor=10) is None  # nothing stands out


def test_isolation_tells_commands_from_running_speech():
    quiet, loud = -70.0, -25.0
    command = np.r_[np.full(150, quiet), np.full(40, loud), np.full(10, quiet)]
    assert is_isolated(command, limit_frames=100, gap_frames=20, lookback_frames=300)
    talk = np.r_[np.full(50, quiet), np.tile(np.r_[np.full(30, loud), np.full(8, quiet)], 4)]  # 8-frame pauses
    assert not is_isolated(talk, limit_frames=100, gap_frames=20, lookback_frames=300)
    assert is_isolated(talk, limit_frames=200, gap_frames=20, lookback_frames=300)
    # speech all through the look-back: the floor comes from the longer history before it
    long_talk = np.r_[np.full(500, quiet), np.full(300, loud)]
    assert not is_isolated(long_talk, 100, 20, lookback_frames=300)
    assert is_isolated(np.full(300, -40.0), 100, 20, 300)  # nothing stands out: nothing to judge
    # digital silence before a recording starts does not make its background noise speech; silence inside it counts
    after_silence = np.r_[np.full(500, -120.0), np.full(100, -45.0), np.full(40, -25.0), np.full(10, -45.0)]
    assert is_isolated(after_silence, 100, 20, lookback_frames=300)
    assert not is_isolated(np.r_[np.full(100, -120.0), np.tile(np.r_[np.full(30, -25.0), np.full(8, -120.0)], 6)],
                           100, 20, lookback_frames=300)


def test_detector_drops_keywords_inside_running_speech(rng):
    # 3.4 s of talk: "yes" and "no" words with 80 ms between them, then a "no" on its own
    word = np.concatenate([tone(0.35, 500), silence(0.08), tone(0.35, 1500), silence(0.08)])
    x = np.concatenate([silence(1.0), np.tile(word, 4), silence(1.0), tone(0.4, 1500), silence(1.5)])
    x += 0.002 * rng.standard_normal(x.size).astype(np.float32)  # a quiet room, not digital silence
    # (one_per_word off: words 80 ms apart share a speech run, and this is about the isolation check alone)
    kwargs = dict(threshold=0.5, window=0.3, smoothing=0.05, refractory=0.5, hold=0.05, one_per_word=False)
    ungated = run_blocks(Detector(EnergyKernel(), isolation=0, **kwargs), x, rng)
    assert len(ungated) >= 7 and ungated[-1].start == pytest.approx(5.44, abs=0.03)
    at_crossing = run_blocks(Detector(EnergyKernel(), trailing_pause=0, **kwargs), x, rng)
    # deciding at the crossing, words decided within the talk's first second pass (nothing yet
    # says it is not a command); the later ones are dropped; the "no" on its own is kept
    assert all(e.detected_at < 2.1 for e in at_crossing[:-1]) and 2 <= len(at_crossing) < len(ungated) - 3
    assert (at_crossing[-1].keyword, round(at_crossing[-1].start, 2)) == ("no", ungated[-1].start.__round__(2))
    # by default a keyword also waits for the pause after its word: the talk never pauses for
    # 0.2 s, so none of its words is reported; the "no" on its own is, once 0.2 s of quiet follow it
    default = Detector(EnergyKernel(), **kwargs)
    assert (default.config.isolation, default.config.trailing_pause) == (1.0, 0.2)  # on by default
    gated = run_blocks(default, x, rng)
    assert [(e.keyword, round(e.start, 2)) for e in gated] == [("no", round(ungated[-1].start, 2))]
    assert 5.44 + 0.4 + 0.2 <= gated[0].detected_at <= 5.44 + 0.4 + 0.3
    assert gated[0].end == pytest.approx(5.44 + 0.4, abs=0.05)  # the whole word, heard before reporting it


def test_thresholds_parsing(tmp_path):
    assert load_thresholds(0.7) == (0.7, {})
    assert load_thresholds("0.8") == (0.8, {})
    assert load_thresholds("yes=0.9, no=0.6") == (None, {"yes": 0.9, "no": 0.6})
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"thresholds": {"yes": 0.95}, "target_fa_per_hour": 1.0}))
    assert load_thresholds(str(path)) == (None, {"yes": 0.95})
    for bad in ("yes=high", "=0.5", "nonsense", str(tmp_path / "missing.json")):
        with pytest.raises(ConfigError):
            load_thresholds(bad)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        load_thresholds(1.5)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="window"):
        DetectorConfig(window=0)
    with pytest.raises(ConfigError, match="refractory"):
        DetectorConfig(refractory=-1)
    with pytest.raises(ConfigError, match="threshold of 'yes'"):
        DetectorConfig(thresholds={"yes": 2})


def test_a_whole_config_is_the_base_and_arguments_override_it(rng):
    config = DetectorConfig(threshold=0.5, window=0.3, smoothing=0.05, refractory=2.0, hold=0.05,
                            thresholds={"no": 0.6}, one_per_word=False)
    det = Detector(EnergyKernel(), config=config, smoothing=0.1, threshold={"yes": 0.7})
    assert (det.config.window, det.config.smoothing, det.config.refractory) == (0.3, 0.1, 2.0)
    assert det.thresholds == {"yes": 0.7, "no": 0.6} and det.config.one_per_word is False
    # Given as a config, the settings detect exactly as when given one by one.
    x = keyword_audio()
    one_by_one = Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05, refractory=2.0, hold=0.05)
    whole = Detector(EnergyKernel(), config=DetectorConfig(threshold=0.5, window=0.3, smoothing=0.05,
                                                           refractory=2.0, hold=0.05))
    assert run_blocks(whole, x, np.random.default_rng(1)) == run_blocks(one_by_one, x, np.random.default_rng(1))
    with pytest.raises(ConfigError, match="DetectorConfig"):
        Detector(EnergyKernel(), config={"threshold": 0.5})
    import lmustream
    assert (lmustream.Detector, lmustream.DetectorConfig) == (Detector, DetectorConfig)
    with pytest.raises(ConfigError, match="unknown detector setting"):
        override_config(config, windw=1.0)


def keyword_audio():
    """yes (500 Hz) at 1.0-1.4 s, no (1500 Hz) at 3.0-3.4 s, yes again at 3.7-4.1 s, then quiet."""
    return np.concatenate([silence(1.0), tone(0.4, 500), silence(1.6), tone(0.4, 1500), silence(0.3),
                           tone(0.4, 500), silence(2.0)])


def run_blocks(detector, x, rng, rate=None):
    events, i = [], 0
    while i < x.size:
        k = int(rng.integers(1, 3000))
        events += detector.push(x[i:i + k], rate)
        i += k
    return events + detector.flush()


def test_detector_events_times_and_refractory(rng):
    det = Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05, refractory=1.0, hold=0.05)
    events = run_blocks(det, keyword_audio(), rng)
    assert [e.keyword for e in events] == ["yes", "no", "yes"]
    yes, no, _ = events
    assert 1.0 <= yes.detected_at <= 1.6
    # "no" is reported once 0.2 s of quiet follow its word (the trailing pause), before the next word
    assert 3.4 + 0.2 <= no.detected_at <= 3.7
    # the span: from the word's first frame to the last one seen when the detector decided
    assert yes.start == pytest.approx(1.0, abs=0.03) and no.start == pytest.approx(3.0, abs=0.03)
    assert 1.15 <= yes.end <= min(1.43, yes.detected_at) and 3.15 <= no.end <= min(3.43, no.detected_at)
    assert 0.5 <= yes.confidence <= 1.0
    keyword, start, end, confidence = yes  # unpacks as the 4-tuple
    assert (keyword, start, end, confidence) == (yes.keyword, yes.start, yes.end, yes.confidence)


def test_each_keyword_has_its_own_refractory(rng):
    det = Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05, refractory=2.0, hold=0.05)
    x = np.concatenate([silence(1.0), tone(0.4, 500), silence(0.3), tone(0.4, 1500), silence(0.3),
                        tone(0.4, 500), silence(2.0), tone(0.4, 500), silence(1.0)])
    words = [(e.keyword, round(e.start, 1)) for e in run_blocks(det, x, rng)]
    assert words == [("yes", 1.0), ("no", 1.7), ("yes", 4.8)]  # yes at 2.4 s is inside yes's 2 s refractory


def test_one_word_reports_one_keyword():
    from lmustream.stream.stream_eval import _LogitsOnly

    def events(yes, no, **settings):
        """Loud frames 100-159; "yes" evidence on frames ``yes``, "no" evidence on frames ``no``."""
        logits = np.zeros((300, 4), np.float32)
        logits[:, 3] = 8
        logits[100:160, 3] = 0
        logits[slice(*yes), 0], logits[slice(*no), 1] = 8, 6
        levels = np.full(300, -80.0)
        levels[100:160] = -20
        det = Detector(_LogitsOnly(["yes", "no", "_unknown_", "_silence_"], 5), threshold=0.5, window=0.3,
                       smoothing=0.05, hold=0.05, **settings)
        got = []
        for i in range(0, 300, 37):  # blocks: the word's two events may come from different pushes
            got += det.process_logits(logits[i:i + 37], levels[i + 5 if i else 0:i + 37 + 5])
        return got

    both = events((100, 150), (110, 160), one_per_word=False)  # "no" rises inside "yes"'s word
    assert [e.keyword for e in both] == ["yes", "no"] and both[1].start < both[0].end
    first = events((100, 150), (110, 160))  # the default: one keyword per word, the first to fire
    assert [(e.keyword, e.start, e.end) for e in first] == [(e.keyword, e.start, e.end) for e in both[:1]]


def test_one_word_keeps_the_first_keyword_to_fire_in_any_blocks():
    from lmustream.stream.stream_eval import _LogitsOnly

    logits = np.zeros((300, 4), np.float32)
    logits[:, 3] = 8
    logits[100:160, 3] = 0
    logits[112:160, 0], logits[100:150, 1] = 8, 8  # "no" rises first, then "yes", on one word
    levels = np.full(300, -80.0)
    levels[100:160] = -20

    def keywords(block):
        det = Detector(_LogitsOnly(["yes", "no", "_unknown_", "_silence_"], 5), threshold=0.5, window=0.3,
                       smoothing=0.05)
        got = []
        for i in range(0, 300, block):  # both wait for the word's trailing pause and are decided at once
            got += det.process_logits(logits[i:i + block], levels[i + 5 if i else 0:i + block + 5])
        return [e.keyword for e in got]

    assert keywords(300) == keywords(1) == ["no"]


def test_event_span_does_not_depend_on_the_block_size():
    """Pushed at once, the frames after a decision's last logits were at hand and used to move its end."""
    from lmustream.stream.stream_eval import _LogitsOnly

    logits = np.zeros((300, 4), np.float32)
    logits[:, 3] = 8
    logits[100:160, 3], logits[100:160, 0] = 0, 8

    def events(block):
        det = Detector(_LogitsOnly(["yes", "no", "_unknown_", "_silence_"], 5), threshold=0.5, window=0.3,
                       smoothing=0.05)
        got = []
        for i in range(0, 300, block):
            got += det.process_logits(logits[i:i + block])
        return [(e.keyword, e.start, e.end, e.detected_at) for e in got]

    whole = events(300)
    assert whole == events(1) == events(7) and len(whole) == 1
    (_, _, end, detected_at), = whole
    assert end <= detected_at - 0.05 + 1e-9  # the last logits known then are 5 frames of look-ahead back


def test_a_crossing_still_held_when_the_stream_ends_is_reported():
    rows = np.zeros((150, 4), np.float32)
    rows[:, 3] = 4
    rows[100:, 3], rows[100:, 0] = 0, np.linspace(1, 12, 50)  # "yes" still rising at the last frame
    audio = silence((149 * 160 + 400) / 16000)
    for hold in (0.0, 0.1, 0.3):
        det = Detector(LogitsKernel(rows), threshold=0.5, window=0.3, smoothing=0.05, hold=hold, isolation=0)
        events = list(det.detect([audio]))
        assert [e.keyword for e in events] == ["yes"], hold
    assert events[0].detected_at == pytest.approx(1.515)  # the end of the last frame: no later one came


def test_back_to_back_words_keep_their_keywords(rng):
    x = np.concatenate([silence(1.0), tone(0.3, 500), tone(0.3, 1500), silence(1.5)])  # "yes" then "no", no pause
    got = run_blocks(Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05, hold=0.05), x, rng)
    assert [e.keyword for e in got] == ["yes", "no"]
    with pytest.raises(ConfigError, match="one_per_word must be true or false"):
        DetectorConfig(one_per_word="yes")
    assert DetectorConfig.from_dict({"one_per_word": False}).one_per_word is False


def test_any_sample_rate_and_channels_give_the_same_events(rng):
    from lmustream.audio import resample

    x = keyword_audio()
    ref = run_blocks(Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05), x, rng)
    x48 = resample(x, 16000, 48000)
    stereo = np.stack([x48, x48], axis=1)
    det = Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05, sample_rate=48000)
    got = run_blocks(det, stereo, rng)
    assert [e.keyword for e in got] == [e.keyword for e in ref]
    for a, b in zip(got, ref):
        assert abs(a.detected_at - b.detected_at) <= 0.03 and abs(a.end - b.end) <= 0.03
    int16 = (x * 32767).astype(np.int16)
    got16 = run_blocks(Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05), int16, rng)
    assert [(e.keyword, e.detected_at) for e in got16] == [(e.keyword, e.detected_at) for e in ref]


def test_callbacks_iterator_reset_and_keyword_selection(rng):
    seen = []
    det = Detector(EnergyKernel(), keywords=["no"], threshold=0.5, window=0.3, smoothing=0.05, on_event=seen.append)
    x = keyword_audio()
    events = list(det.detect(x[i:i + 1600] for i in range(0, x.size, 1600)))
    assert [e.keyword for e in events] == ["no"] and seen == events
    assert det.time == 0.0  # detect() flushes, which resets
    det.push(x[:16000])
    assert det.time == pytest.approx(1.0)
    det.reset()
    assert det.time == 0 and det.frames == 0
    again = list(det.detect([x]))
    assert [(e.keyword, e.detected_at) for e in again] == [(e.keyword, e.detected_at) for e in events]


def test_the_window_starts_full_of_the_models_silence_logits():
    det = Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05)
    fresh = EnergyKernel().open()
    expected = np.asarray(fresh.push(silence(1.0)), np.float64).mean(axis=0)
    np.testing.assert_allclose(det.prior_logits, expected, atol=1e-6)
    assert det.labels[int(np.argmax(det.prior_logits))] == "_silence_"
    # computing it left the detector's own stream fresh: a new stream reports what a second detector does
    x = keyword_audio()
    other = Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05)
    assert [(e.keyword, e.detected_at) for e in det.detect([x])] == \
        [(e.keyword, e.detected_at) for e in other.detect([x[:8000], x[8000:]])]


def test_a_stream_that_opens_on_digital_silence_raises_no_alarm_at_its_start():
    """The input opening: 60 ms of exact zeros, then a real recording's room noise. The step
    used to decide alone over the few frames of a fresh logit window (a false 'stop' at 0.2 s
    from a live audio server); with the window primed by silence it weighs 6 frames in 100."""
    import soundfile as sf

    from tests.conftest import REPO

    truth = json.loads((REPO / "examples" / "keywords.json").read_text())
    x, rate = sf.read(REPO / "examples" / "keywords.flac", dtype="float32")
    det = Detector("sc12-lmuformer", backend="torch")
    for pad_s in (0.04, 0.06, 0.08, 0.1):
        y = np.concatenate([np.zeros(int(pad_s * rate), np.float32), x])
        events = list(det.detect(y[i:i + 320] for i in range(0, y.size, 320)))
        assert [e.keyword for e in events] == [k["keyword"] for k in truth["keywords"]], (pad_s, events)


def test_unknown_and_silence_are_never_reported(rng):
    det = Detector(EnergyKernel(), threshold=0.01, window=0.3, smoothing=0.05)
    assert det.keywords == ["yes", "no"]
    assert run_blocks(det, silence(5.0), rng) == []  # _silence_'s posterior is ~1 all along


def test_per_keyword_thresholds_and_errors(rng):
    det = Detector(EnergyKernel(), threshold={"yes": 0.999}, window=0.3, smoothing=0.05)
    assert det.thresholds == {"yes": 0.999, "no": 0.5}
    assert [e.keyword for e in run_blocks(det, keyword_audio(), rng)] == ["no"]
    with pytest.raises(ConfigError, match="not among the model's labels"):
        Detector(EnergyKernel(), keywords=["maybe"])
    with pytest.raises(ConfigError, match="not among the model's labels"):
        Detector(EnergyKernel(), threshold={"maybe": 0.5})
    det = Detector(EnergyKernel())
    det.push(silence(0.1), 16000)
    with pytest.raises(AudioError, match="sample rate changed"):
        det.push(silence(0.1), 44100)
    with pytest.raises(AudioError, match="non-finite"):
        Detector(EnergyKernel()).push(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioError):
        Detector(EnergyKernel()).push(np.zeros((2, 2, 2), np.float32))
    for rate in (0, -16000, 44100.5, "16k"):  # 0 used to fall back to the model's rate silently
        with pytest.raises(AudioError, match="sample rate must be a positive integer"):
            Detector(EnergyKernel(), sample_rate=rate)
        with pytest.raises(AudioError, match="sample rate must be a positive integer"):
            Detector(EnergyKernel()).push(silence(0.1), rate)
    assert Detector(EnergyKernel(), sample_rate=np.int64(48000)).sample_rate == 48000
    # [channels, samples] (torchaudio's layout) instead of [samples, channels]: said, not averaged
    with pytest.raises(AudioError, match=r"expected \[samples, channels\].*transpose"):
        Detector(EnergyKernel()).push(np.zeros((2, 1600), np.float32))
    stereo = np.stack([silence(0.1), silence(0.1)], axis=1)
    Detector(EnergyKernel()).push(stereo)  # [samples, 2]: averaged
    with pytest.raises(AudioError, match=r"raw bytes.*numpy.frombuffer"):  # a PyAudio callback's buffer
        Detector(EnergyKernel()).push(np.zeros(1600, np.int16).tobytes())


def test_frame_clock():
    clock = FrameClock(lookahead=5)
    assert clock.start(10) == pytest.approx(0.1) and clock.end(10) == pytest.approx(0.125)
    assert clock.decided(10) == pytest.approx(0.175)
    assert clock.frames(1.0) == 100 and clock.frames(0.0) == 1


def test_event_dict():
    e = Event("yes", 1.23456, 1.5, 0.912345, 1.7)
    assert e.to_dict() == {"keyword": "yes", "start": 1.235, "end": 1.5, "confidence": 0.9123, "detected_at": 1.7}
