"""Synthetic TTS corpus: engines, effects, speaker splits and the Speech Commands layout it writes."""

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lmustream.data.synth import effects, noise
from lmustream.data.synth.cli import add_arguments, run
from lmustream.data.synth.corpus import (SynthConfig, read_words_file, resolve_engines, synthesize_corpus,
                                         validate_words, word_texts)
from lmustream.data.synth.engines import Voice, canonical_engine_name, check_language, get_engine
from lmustream.data.synth.render import CLIP_SAMPLES, SAMPLE_RATE, render_clip
from lmustream.data.synth.speakers import Speaker, assign_splits, make_speakers, plan_renderings
from lmustream.errors import ConfigError

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed (scripts/install_tts.sh)")
WORDS = ("yes", "no", "forward")
RENDERINGS = 12
FILE_NAME = re.compile(r"^[a-z0-9-]+_nohash_\d+\.wav$")


def _speaker_of(relative_path: str) -> str:
    return Path(relative_path).name.split("_nohash_")[0]


def _tone(seconds=0.5, f0=120.0):
    """A vowel-like test signal: harmonics of ``f0`` with a 1/k roll-off."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 30))).astype(np.float32)


def _centroid(x):
    """Power-weighted mean frequency (a windowed power spectrum ignores the broadband floor of the edges)."""
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    return float(np.sum(np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE) * power) / np.sum(power))


def _f0(x, rate=SAMPLE_RATE):
    """Fundamental frequency (Hz) of the loudest 40 ms of ``x``: the autocorrelation peak in 60-400 Hz."""
    n = int(0.04 * rate)
    segment = max((x[i:i + n] for i in range(0, x.size - n, n // 2)), key=lambda f: float(np.sum(f * f)))
    segment = segment - segment.mean()
    lag = np.correlate(segment, segment, "full")[n - 1:]
    lo, hi = rate // 400, rate // 60
    return rate / (lo + int(np.argmax(lag[lo:hi])))


# ----------------------------------------------------------------- effects (no engine needed)

@pytest.mark.parametrize("factor", [0.85, 1.0, 1.15])
def test_vocal_tract_keeps_length_and_moves_spectrum(factor):
    x = _tone()
    y = effects.change_vocal_tract(x, SAMPLE_RATE, factor)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    ratio = _centroid(y) / _centroid(x)
    assert ratio == pytest.approx(factor, rel=0.02)


def test_reverb_keeps_length_and_is_finite(rng):
    x = _tone()
    for rt60 in (0.1, 0.6):
        y = effects.reverberate(x, SAMPLE_RATE, rt60, 3.0, rng)
        assert y.shape == x.shape and np.isfinite(y).all()
    # The tail lengthens an impulse's decay with RT60.
    impulse = np.zeros(SAMPLE_RATE, np.float32)
    impulse[0] = 1.0
    late = [np.sum(effects.reverberate(impulse, SAMPLE_RATE, rt, 0.0, np.random.default_rng(0))[4000:] ** 2)
            for rt in (0.1, 0.6)]
    assert late[1] > 10 * late[0]


def test_stretch_trim_fit():
    x = _tone(0.8)
    for n_out in (6000, 12800, 16000):
        y = effects.stretch_to_length(x, n_out, SAMPLE_RATE)
        assert y.size == n_out and np.isfinite(y).all()
    padded = np.concatenate([np.zeros(4000, np.float32), x, np.zeros(3000, np.float32)])
    trimmed = effects.trim_silence(padded, SAMPLE_RATE)
    assert x.size <= trimmed.size <= x.size + 2 * int(0.03 * SAMPLE_RATE)
    long_word = _tone(1.5)
    fitted, how = effects.fit_length(long_word, 15000, SAMPLE_RATE, 1.3)
    assert fitted.size == 15000 and how == "compressed+cropped"
    with pytest.raises(ConfigError):
        effects.change_vocal_tract(x, SAMPLE_RATE, 3.0)


def test_coloured_noise_spectra():
    low, high = {}, {}
    for colour in noise.COLOURS:
        x = noise.coloured_noise(colour, 2.0, seed=0)
        assert x.size == 2 * SAMPLE_RATE and np.isfinite(x).all()
        assert effects.rms_dbfs(x) == pytest.approx(noise.NOISE_LEVEL_DBFS, abs=0.5)
        power = np.abs(np.fft.rfft(x)) ** 2
        low[colour], high[colour] = power[10:400].mean(), power[-4000:].mean()
    assert low["white"] / high["white"] < low["pink"] / high["pink"] < low["brown"] / high["brown"]


# ----------------------------------------------------------------- speakers and splits

def _fake_speakers(engine, n):
    return [Speaker(f"{engine}-v{i}", Voice(engine, f"v{i}", f"v{i}"), 0.0, 1.0, 1.0) for i in range(n)]


def test_splits_are_speaker_disjoint_and_stratified():
    speakers = _fake_speakers("espeak", 50) + _fake_speakers("flite", 12)
    split_of = assign_splits(speakers, 0.1, 0.2, seed=3)
    for engine, n in (("espeak", 50), ("flite", 12)):
        splits = [split_of[s.id] for s in speakers if s.engine == engine]
        assert splits.count("validation") == max(1, round(0.1 * n))
        assert splits.count("test") == max(1, round(0.2 * n))
    plan = plan_renderings(["yes", "no"], speakers, split_of, 40, 0.1, 0.2, seed=3)
    assert len(plan) == 80 and all(r.split == split_of[r.speaker.id] for r in plan)
    assert len({r.relative_path for r in plan}) == 80
    assert plan == plan_renderings(["yes", "no"], speakers, split_of, 40, 0.1, 0.2, seed=3)
    with pytest.raises(ConfigError, match="val_fraction"):
        assign_splits(speakers, 1.5, 0.1, seed=0)


# ----------------------------------------------------------------- bad input

@pytest.mark.parametrize("words, problem", [
    ("", "empty"), (",", "empty"), ([], "empty"), ("yes,,no", "entry 2 is empty"), ("yes;no", "'yes;no'"),
    ("héllo", "'héllo'"), ("../etc", "'../etc'"), ("_background_noise_", "_background_noise_"),
    ("yes,Yes", "duplicate"), ("two  words", "'two  words'"), ("zoom in=", "nothing to say"),
    ("=افتح", "no word before"), ("افتح", "'افتح'"), ("open=افتح,open=فتح", "duplicate"),
])
def test_bad_word_lists_name_the_problem(words, problem, tmp_path):
    with pytest.raises(ConfigError, match=re.escape(problem)):
        validate_words(words)
    with pytest.raises(ConfigError, match="word list"):
        synthesize_corpus(SynthConfig(out_dir=tmp_path / "out", words=words))
    assert not (tmp_path / "out").exists()  # nothing written before the input is checked


def test_good_word_lists_are_normalised():
    assert validate_words(" Yes, no ,don't,x-ray, Zoom In") == ["yes", "no", "don't", "x-ray", "zoom in"]


def test_a_word_may_say_other_text():
    texts = word_texts(["open = اِفْتَح", "zoom in=تَكْبِير  ", "yes"])
    assert texts == {"open": "اِفْتَح", "zoom in": "تَكْبِير", "yes": "yes"}
    assert validate_words("open=اِفْتَح,yes") == ["open", "yes"]


def test_words_file(tmp_path):
    path = tmp_path / "words.tsv"
    path.write_text("# label, then what to say\nopen\tاِفْتَح\n\nzoom in = تَكْبِير\nyes\n", encoding="utf-8")
    assert read_words_file(path) == ["open=اِفْتَح", "zoom in = تَكْبِير", "yes"]
    assert word_texts(read_words_file(path)) == {"open": "اِفْتَح", "zoom in": "تَكْبِير", "yes": "yes"}
    path.write_text("\ufeffopen\tاِفْتَح\n", encoding="utf-8")  # a byte-order mark, as some editors write
    assert read_words_file(path) == ["open=اِفْتَح"]
    path.write_text("yes,no\n")
    with pytest.raises(ConfigError, match="line 1: one word per line"):
        read_words_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no words"):
        read_words_file(path)
    path.write_bytes(b"open\t\xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_words_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_words_file(tmp_path / "missing.tsv")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--words", "yes", "--words-file", str(path), "--out", str(tmp_path / "c")])
    with pytest.raises(ConfigError, match="not both"):
        run(args)


def test_only_espeak_speaks_other_languages(tmp_path):
    for bad in ("a b", "EN", "", "../ar"):
        with pytest.raises(ConfigError, match="not an espeak-ng language code"):
            check_language(bad)
    with pytest.raises(ConfigError, match="'flite' speaks English only"):
        get_engine("flite", "ar")
    with pytest.raises(ConfigError, match="language"):
        synthesize_corpus(SynthConfig(out_dir=tmp_path / "out", words="yes", language="a b"))
    assert not (tmp_path / "out").exists()


def test_unknown_engine_and_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="unknown TTS engine 'sapi'"):
        canonical_engine_name("sapi")
    assert canonical_engine_name("espeak-ng") == "espeak"
    with pytest.raises(ConfigError, match="renderings_per_word"):
        synthesize_corpus(SynthConfig(out_dir=tmp_path, words="yes", renderings_per_word=0))
    with pytest.raises(ConfigError, match="noise_seconds"):
        synthesize_corpus(SynthConfig(out_dir=tmp_path, words="yes", noise_seconds=0.1))


# ----------------------------------------------------------------- engines

@needs_espeak
def test_espeak_voices_and_one_rendering():
    engine = get_engine("espeak")
    voices = engine.voices()
    assert len(voices) > 10 and any(v.spec.startswith("en-us+") for v in voices)
    samples, rate = engine.render("yes", voices[0])
    assert rate > 0 and samples.dtype == np.float32 and np.abs(samples).max() > 0.05
    speaker = make_speakers([engine], seed=0)[0]
    clip, info = render_clip("yes", speaker, 0, seed=0)
    assert clip.shape == (CLIP_SAMPLES,) == (SAMPLE_RATE,) and np.isfinite(clip).all()
    assert effects.rms_dbfs(clip) > -45.0 and np.abs(clip).max() <= effects.PEAK_LIMIT
    assert info.fit == "kept"
    assert np.array_equal(clip, render_clip("yes", speaker, 0, seed=0)[0])


@pytest.mark.parametrize("name", ["flite", "festival", "piper", "pico"])
def test_optional_engine_renders_a_word(name):
    engine = get_engine(name)
    if not engine.available():
        pytest.skip(f"{name} is not installed (scripts/install_tts.sh)")
    voice = engine.voices()[0]
    for pitch in (0.0, 3.0):
        samples, rate = engine.render("seven", voice, pitch=pitch, speed=1.1)
        assert rate >= 8000 and np.isfinite(samples).all() and np.abs(samples).max() > 0.05
        # The corpus must be reproducible: the same request gives the same samples.
        assert np.array_equal(samples, engine.render("seven", voice, pitch=pitch, speed=1.1)[0])


def test_pico_speaks_both_english_voices_and_follows_pitch_and_tempo():
    engine = get_engine("pico")
    if not engine.available():
        pytest.skip("pico is not installed (scripts/install_tts.sh)")
    assert [v.spec for v in engine.voices()] == ["en-US", "en-GB"]
    for voice in engine.voices():
        plain, rate = engine.render("seven", voice)
        assert rate == 16000
        assert len(engine.render("seven", voice, speed=2.0)[0]) < 0.75 * len(plain)
        low, high = (_f0(engine.render("seven", voice, pitch=p)[0]) for p in (-5.0, 7.0))
        assert low < _f0(plain) < high


def test_festival_voices_follow_pitch_and_tempo():
    engine = get_engine("festival")
    if not engine.available():
        pytest.skip("festival is not installed (scripts/install_tts.sh --with-festival)")
    for voice in engine.voices():  # diphone voices (native controls) and HTS voices (rate + resampling)
        plain, rate = engine.render("no", voice)  # one long vowel: no octave errors in the pitch estimate
        assert len(engine.render("no", voice, speed=1.6)[0]) < 0.8 * len(plain)
        low, high = (_f0(engine.render("no", voice, pitch=p)[0], rate) for p in (-5.0, 7.0))
        assert low < _f0(plain, rate) < high, voice.id


@needs_espeak
def test_engine_entries_can_keep_some_voices(tmp_path):
    everyone = [v.id for v in get_engine("espeak").voices()]
    kept = resolve_engines(f"espeak:{everyone[3]}+{everyone[1]}")
    assert [e.name for e in kept] == ["espeak"] and [v.id for v in kept[0].voices()] == [everyone[1], everyone[3]]
    assert [s.voice.id for s in make_speakers(kept, seed=0)] == [everyone[1], everyone[3]]
    with pytest.raises(ConfigError, match="espeak has no voice 'nobody'"):
        resolve_engines("espeak:nobody")
    with pytest.raises(ConfigError, match="name the voices after the colon"):
        resolve_engines("espeak:")
    with pytest.raises(ConfigError, match="named twice"):
        resolve_engines(f"espeak:{everyone[0]},espeak")
    manifest = synthesize_corpus(SynthConfig(out_dir=tmp_path / "c", words="yes", renderings_per_word=4,
                                             engines=f"espeak:{everyone[0]}+{everyone[1]}", jobs=1,
                                             noise_seconds=2.0, babble_talkers=1, progress=False,
                                             val_fraction=0.0, test_fraction=0.0))
    assert manifest["engines"]["espeak"]["voices"] == everyone[:2]
    speakers = {_speaker_of(str(p)) for p in (tmp_path / "c" / "yes").glob("*.wav")}
    assert speakers and speakers <= {f"espeak-{v}" for v in everyone[:2]}


# ----------------------------------------------------------------- the corpus

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not HAVE_ESPEAK:
        pytest.skip("espeak-ng is not installed (scripts/install_tts.sh)")
    out = tmp_path_factory.mktemp("synth") / "corpus"
    manifest = synthesize_corpus(SynthConfig(out_dir=out, words=",".join(WORDS), renderings_per_word=RENDERINGS,
                                             engines="espeak", jobs=2, seed=7, noise_seconds=2.0,
                                             babble_talkers=2, progress=False))
    return out, manifest


def test_corpus_has_the_speech_commands_layout(corpus):
    out, manifest = corpus
    for word in WORDS:
        files = sorted((out / word).iterdir())
        assert len(files) == RENDERINGS
        for path in files:
            assert FILE_NAME.match(path.name), path.name
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (SAMPLE_RATE, 1, SAMPLE_RATE,
                                                                                    "PCM_16")
    clip, _ = sf.read(files[0], dtype="float32")
    assert np.abs(clip).max() > 0.01
    assert manifest["complete"] and manifest["counts"]["files"] == len(WORDS) * RENDERINGS
    assert json.loads((out / "corpus.json").read_text()) == manifest
    assert set(manifest["engines"]) == {"espeak"} and manifest["seed"] == 7


def test_split_lists_are_speaker_disjoint_and_cover_files(corpus):
    out, _ = corpus
    all_files = {f"{p.parent.name}/{p.name}" for w in WORDS for p in (out / w).iterdir()}
    held_out = {}
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        held_out[split] = (out / name).read_text().split()
        assert held_out[split], f"{name} is empty"
        assert set(held_out[split]) <= all_files
    train = all_files - set(held_out["validation"]) - set(held_out["test"])
    speakers = {split: {_speaker_of(p) for p in paths} for split, paths in
                {**held_out, "train": train}.items()}
    assert not speakers["train"] & speakers["validation"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["validation"] & speakers["test"]


def test_background_noise_files(corpus):
    out, manifest = corpus
    names = sorted(p.name for p in (out / "_background_noise_").iterdir())
    assert names == ["babble_noise.wav", "brown_noise.wav", "pink_noise.wav", "white_noise.wav"]
    for name in names:
        samples, rate = sf.read(out / "_background_noise_" / name, dtype="float32")
        assert rate == SAMPLE_RATE and samples.size == 2 * SAMPLE_RATE and np.abs(samples).max() > 0.01


def test_same_seed_same_bytes_through_the_cli(corpus, tmp_path):
    out, _ = corpus
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--words", ",".join(WORDS), "--out", str(tmp_path / "again"), "--seed", "7",
                              "--renderings-per-word", str(RENDERINGS), "--engines", "espeak", "--jobs", "1",
                              "--noise-seconds", "2", "--babble-talkers", "2", "--no-progress"])
    assert run(args) == 0
    chosen = sorted((out / "forward").iterdir())[3].relative_to(out)
    assert (tmp_path / "again" / chosen).read_bytes() == (out / chosen).read_bytes()
    for name in ("validation_list.txt", "testing_list.txt", "corpus.json", "_background_noise_/babble_noise.wav"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name


@needs_espeak
def test_espeak_speaks_arabic_words_into_english_labels(tmp_path):
    if not get_engine("espeak", "ar").voices():
        pytest.skip("this espeak-ng has no Arabic voice")
    with pytest.raises(ConfigError, match="no voice for language 'zz'"):
        resolve_engines("espeak", "zz")
    words = ["open=اِفْتَح", "zoom in=تَكْبِير"]
    manifest = synthesize_corpus(SynthConfig(out_dir=tmp_path / "c", words=words, language="ar", renderings_per_word=3,
                                             jobs=1, noise_seconds=1.0, babble_talkers=1, progress=False,
                                             val_fraction=0.0, test_fraction=0.0))
    assert manifest["words"] == ["open", "zoom in"] and manifest["language"] == "ar"
    assert manifest["texts"] == {"open": "اِفْتَح", "zoom in": "تَكْبِير"}
    assert set(manifest["engines"]) == {"espeak"}
    assert all(s["voice"].startswith("ar") for s in manifest["speakers"].values())
    for word in ("open", "zoom in"):
        files = sorted((tmp_path / "c" / word).iterdir())
        assert len(files) == 3 and all(FILE_NAME.match(f.name) for f in files)
    # The engine says the text, not the label: the Arabic clip is not the English word.
    speaker = make_speakers([get_engine("espeak", "ar")], seed=0)[0]
    arabic, _ = render_clip("open", speaker, 0, seed=0, text="اِفْتَح")
    english, _ = render_clip("open", speaker, 0, seed=0)
    assert not np.allclose(arabic, english)


@needs_espeak
def test_output_folder_rules(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    config = SynthConfig(out_dir=tmp_path, words="yes", renderings_per_word=3, engines="espeak", jobs=1,
                         noise_seconds=1.0, babble_talkers=1, progress=False, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(ConfigError, match="not empty"):
        synthesize_corpus(config)
    config.overwrite = True
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        synthesize_corpus(config)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    fresh = tmp_path / "fresh"
    config.out_dir = fresh
    first = synthesize_corpus(config)
    config.words = "no"
    second = synthesize_corpus(config)  # overwrite replaces the corpus made before
    assert first["words"] == ["yes"] and second["words"] == ["no"]
    assert not (fresh / "yes").exists() and len(list((fresh / "no").iterdir())) == 3
    assert (fresh / "validation_list.txt").read_text() == ""


def test_the_arabic_example_words_are_the_asc40_labels():
    from lmustream.models.artifact import read_header
    from lmustream.models.registry import resolve_model

    root = Path(__file__).resolve().parents[2]
    texts = word_texts(read_words_file(root / "examples" / "words" / "arabic_speech_commands.tsv"))
    assert sorted(texts) == sorted(read_header(resolve_model("asc40-lmuformer"))["labels"])
    assert all(text != word for word, text in texts.items())
