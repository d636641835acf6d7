"""lmustream.data datasets: every layout, speaker-disjoint seeded splits, bad files, features and their cache."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import lmustream.audio.features as frontend
from lmustream.audio import FbankConfig, fbank, normalize
from lmustream.data.clips import Clip, SkippedFileWarning, speaker_from_name
from lmustream.data.datasets import DatasetIndex, detect_kind, open_dataset
from lmustream.data.feature_dataset import FeatureDataset, clip_features, pad_or_crop
from lmustream.data.labels import SPEECH_COMMANDS_12
from lmustream.data.silence import SILENCE_GAIN_RANGE, add_silence, cut_silence
from lmustream.data.sources import parse_label_map
from lmustream.data.splits import held_out_speakers, rank_speakers, split_by_speaker
from lmustream.errors import AudioError, ConfigError
from tests.conftest import require_shared

RATE = 16000
SHORT_S = 0.3  # most synthetic clips: short keeps the tests fast
CORE = list(SPEECH_COMMANDS_12[:10])
SPEAKERS = [f"spk{i:02d}" for i in range(6)]


def write_tone(path: Path, seconds: float = SHORT_S, rate: int = RATE, freq: float = 440.0, seed: int = 0) -> Path:
    """A sine tone plus a little noise, written with soundfile (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(seed).normal(0.0, 0.01, t.size)
    sf.write(path, (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32), rate)
    return path


def make_speech_commands(root: Path, words, speakers=SPEAKERS, *, lists=True, noise=True) -> Path:
    """A tiny Speech Commands tree: one clip per (word, speaker); lists hold spk01 (val) and spk02 (test)."""
    for w, word in enumerate(words):
        for s, speaker in enumerate(speakers):
            write_tone(root / word / f"{speaker}_nohash_0.wav", freq=200 + 40 * w, seed=s)
    if noise:
        path = root / "_background_noise_" / "white_noise.wav"
        path.parent.mkdir(parents=True)
        sf.write(path, np.random.default_rng(7).uniform(-0.5, 0.5, 10 * RATE).astype(np.float32), RATE)
        (root / "_background_noise_" / "README.md").write_text("not audio")
    if lists:
        (root / "validation_list.txt").write_text("".join(f"{w}/{SPEAKERS[1]}_nohash_0.wav\n" for w in words))
        (root / "testing_list.txt").write_text("".join(f"{w}/{SPEAKERS[2]}_nohash_0.wav\n" for w in words))
    return root


def relative_paths(index: DatasetIndex, split: str) -> set[str]:
    return {c.path.relative_to(index.root).as_posix() for c in index.splits[split] if c.path is not None}


def assert_speaker_disjoint(index: DatasetIndex) -> None:
    sets = [set(index.speakers(split)) for split in ("train", "validation", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


# ----------------------------------------------------------------------------- Speech Commands


def test_speech_commands_35_with_official_lists(tmp_path):
    words = ["yes", "cat", "dog", "no", "up"]
    root = make_speech_commands(tmp_path / "sc", words)
    index = open_dataset(root)
    assert index.kind == "speech_commands" and index.official_split and index.task == "35"
    assert index.labels == sorted(words)  # background noise is not a class
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        assert relative_paths(index, split) == set((root / name).read_text().split())
    assert len(index.splits["train"]) == len(words) * (len(SPEAKERS) - 2)
    assert all(c.label != "_silence_" for c in index.clips())
    assert index.speakers("validation") == [SPEAKERS[1]]


def test_speech_commands_12_unknown_and_silence(tmp_path):
    root = make_speech_commands(tmp_path / "sc", CORE + ["cat", "dog"])
    index = open_dataset(root, task=12)
    assert index.labels == list(SPEECH_COMMANDS_12)
    assert {c.path.parent.name for c in index.clips() if c.label == "_unknown_"} == {"cat", "dog"}
    regions = {}
    for split in ("train", "validation", "test"):
        counts = index.counts(split)
        average = len([c for c in index.splits[split] if c.label != "_silence_"]) / 11
        assert counts["_silence_"] == round(average) >= 1  # about as many as an average class
        silence = [c for c in index.splits[split] if c.label == "_silence_"]
        assert all(c.path is None and c.speaker is None and c.noise[0].name == "white_noise.wav" for c in silence)
        assert all(SILENCE_GAIN_RANGE[0] <= c.gain <= SILENCE_GAIN_RANGE[1] for c in silence)
        regions[split] = [(c.noise[1], c.noise[1] + RATE) for c in silence]
    # Splits cut disjoint stretches of the noise; deterministic on reopening.
    spans = [(min(a for a, _ in r), max(b for _, b in r)) for r in regions.values()]
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0]
    assert open_dataset(root, task="12").splits == index.splits
    dataset = index.dataset("validation", cache=False)
    position = next(i for i, c in enumerate(dataset.clips) if c.label == "_silence_")
    features, target = dataset[position]
    assert target == 11 and features.shape == (128, 128) and torch.isfinite(features).all()


def test_speech_commands_without_lists_splits_by_speaker(tmp_path):
    root = make_speech_commands(tmp_path / "sc", ["yes", "no"], [f"s{i}" for i in range(10)], lists=False)
    index = open_dataset(root)
    assert not index.official_split
    assert_speaker_disjoint(index)
    assert [len(index.speakers(s)) for s in ("train", "validation", "test")] == [8, 1, 1]


def test_missing_required_split_list(tmp_path):
    root = make_speech_commands(tmp_path / "sc", ["yes", "no"], lists=False)
    with pytest.raises(ConfigError, match="validation_list.txt"):
        open_dataset(root, split_lists=True)
    (root / "testing_list.txt").write_text("yes/spk02_nohash_0.wav\n")
    with pytest.raises(ConfigError, match="validation_list.txt"):
        open_dataset(root)  # one list without the other: never guess the missing split
    assert not open_dataset(root, split_lists=False).official_split


def test_a_recipe_names_the_split_lists(tmp_path):
    """data.split_lists: true refuses a tree without its lists before training; false splits by speaker."""
    from lmustream.train.config import load_config
    from lmustream.train.data import prepare_data

    root = make_speech_commands(tmp_path / "sc", ["yes", "no"], [f"s{i}" for i in range(10)], lists=False)
    overrides = [f"data.path={root}", f"data.cache_dir={tmp_path / 'cache'}", "augment.noise_prob=0"]
    with pytest.raises(ConfigError, match="validation_list.txt"):
        prepare_data(load_config(None, overrides + ["data.split_lists=true"]), verbose=False)
    (root / "testing_list.txt").write_text("yes/s1_nohash_0.wav\n")
    with pytest.raises(ConfigError, match="data.split_lists=false"):
        prepare_data(load_config(None, overrides), verbose=False)
    data = prepare_data(load_config(None, overrides + ["data.split_lists=false"]), verbose=False)
    assert len(data.train.labels) == 16 and len(data.validation.labels) == 2  # 8 / 1 / 1 speakers


def test_empty_official_lists_mean_no_held_out_clips(tmp_path):
    # A corpus made without validation or test speakers (`lmustream data synth --val-fraction 0
    # --test-fraction 0`) writes empty lists: every clip trains, and evaluation sees them all.
    root = make_speech_commands(tmp_path / "sc", ["yes", "no"])
    (root / "validation_list.txt").write_text("")
    index = open_dataset(root)
    assert index.splits["validation"] == [] and relative_paths(index, "test") == {"yes/spk02_nohash_0.wav",
                                                                                   "no/spk02_nohash_0.wav"}
    (root / "testing_list.txt").write_text("\n")
    assert len(open_dataset(root).splits["train"]) == 2 * len(SPEAKERS)
    # A list that names files, none of them found, still leaves its split empty by mistake: an error.
    (root / "validation_list.txt").write_text("yes/nobody_nohash_0.wav\n")
    with pytest.warns(UserWarning, match="not found"), pytest.raises(ConfigError, match="validation split is empty"):
        open_dataset(root)


def test_task_12_needs_noise(tmp_path):
    root = make_speech_commands(tmp_path / "sc", CORE, noise=False)
    with pytest.raises(ConfigError, match="noise.*data.silence_dir=DIR.*--noise-dir DIR"):
        open_dataset(root, task="12")


def test_silence_cut_outside_a_dataset_is_what_a_split_with_all_the_noise_gets(tmp_path):
    """cut_silence (silence clips to score a model on) cuts as add_silence does, over whole files."""
    noise = [write_tone(tmp_path / f"noise{i}.wav", seconds=5.0, freq=200.0 + 100 * i) for i in range(2)]
    clips = cut_silence(noise, 6, split="test", seed=3)
    splits = {"train": [], "validation": [], "test": [Clip(tmp_path / f"{i}.wav", "yes", "s") for i in range(66)]}
    add_silence(splits, noise, 11, seed=3)  # 66 clips / 11 classes: 6 silence clips, all in test
    assert clips == [c for c in splits["test"] if c.label == "_silence_"]
    assert {c.noise[0] for c in clips} == set(noise)
    assert [c.noise[1] for c in clips if c.noise[0] == noise[0]] == [0, 2 * RATE, 4 * RATE]  # evenly spaced
    assert len({c.gain for c in clips}) == 6 and all(0.0 <= c.gain <= 1.0 for c in clips)
    assert cut_silence(noise, 0) == []
    with pytest.raises(ConfigError, match="none of the 1 noise file"), pytest.warns(SkippedFileWarning, match="short"):
        cut_silence([write_tone(tmp_path / "short.wav", seconds=0.5)], 3)

def test_training_cuts_silence_from_another_folder(tmp_path):
    """A Speech Commands tree without _background_noise_ trains task 12 with data.silence_dir."""
    from lmustream.train.config import load_config
    from lmustream.train.data import prepare_data

    root = make_speech_commands(tmp_path / "sc", CORE + ["cat"], noise=False)
    noise = tmp_path / "noise" / "hum.wav"
    noise.parent.mkdir()
    sf.write(noise, np.random.default_rng(3).uniform(-0.3, 0.3, 5 * RATE).astype(np.float32), RATE)
    overrides = [f"data.path={root}", "data.task=12", f"data.cache_dir={tmp_path / 'cache'}", "augment.noise_prob=0"]
    with pytest.raises(ConfigError, match="data.silence_dir"):
        prepare_data(load_config(None, overrides), verbose=False)
    data = prepare_data(load_config(None, overrides + [f"data.silence_dir={noise.parent}"]), verbose=False)
    silence = data.labels.index("_silence_")
    assert (data.train.labels == silence).sum() >= 1


# ----------------------------------------------------------------------------- other layouts


def test_labelled_folders_with_space_and_formats(tmp_path):
    root = tmp_path / "folders"
    for s in range(5):
        write_tone(root / "zoom in" / f"take{s}.wav", rate=8000, seed=s)
        write_tone(root / "stop" / "nested" / f"take{s}.flac", seed=s)
    write_tone(root / "stop" / "abc_nohash_1.ogg")
    (root / "stop" / "notes.txt").write_text("not audio")
    index = open_dataset(root)
    assert index.kind == "folders" and index.labels == ["stop", "zoom in"]
    assert sum(index.counts(s)["stop"] for s in index.splits) == 6
    assert "abc" in index.speakers() and "take0" in index.speakers()  # _nohash_ prefix, else the stem
    assert_speaker_disjoint(index)
    dataset = index.dataset("train", cache=False)
    position = dataset.targets.index(1)  # an 8 kHz clip: resampled to the frontend's 16 kHz
    features, target = dataset[position]
    assert features.dtype == torch.float32 and features.shape == (128, 128) and target == 1


def test_csv_manifest_class_header(tmp_path):
    root = tmp_path / "arabic"
    rows = ["file,class,speaker"]
    for s in range(6):
        for label in ("zoom in", "yes"):
            rel = f"train/{label}/{s:08d}_NO_01.flac"
            write_tone(root / rel, seed=s)
            rows.append(f"{rel},{label},{s:08d}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    index = open_dataset(root / "train.csv", validation_speakers=["00000003"], test_speakers=1)
    assert index.kind == "manifest" and index.labels == ["yes", "zoom in"]
    assert index.speakers("validation") == ["00000003"] and len(index.speakers("test")) == 1
    assert all(c.path.is_file() and c.path.is_absolute() for c in index.clips())
    assert_speaker_disjoint(index)
    (root / "bad.csv").write_text("audio,class\nx.wav,yes\n")
    with pytest.raises(ConfigError, match="'file' column"):
        open_dataset(root / "bad.csv")


def test_csv_manifest_split_column(tmp_path):
    rows = ["path,label,split"]
    for i, split in enumerate(["train", "train", "val", "test"]):
        write_tone(tmp_path / f"c{i}.wav")
        rows.append(f"c{i}.wav,word,{split}")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    index = open_dataset(tmp_path / "m.csv")
    assert index.official_split and [len(index.splits[s]) for s in ("train", "validation", "test")] == [2, 1, 1]


def test_filename_pattern_with_label_map(tmp_path):
    root = tmp_path / "fsdd"
    for speaker in ("george", "jackson", "theo", "yweweler"):
        for digit in range(3):
            for n in range(2):
                write_tone(root / f"{digit}_{speaker}_{n}.wav", rate=8000, freq=300 + 50 * digit)
    write_tone(root / "odd-name.wav")
    with pytest.warns(SkippedFileWarning, match="odd-name"):
        index = open_dataset(root, pattern="{label}_{speaker}_{index}.wav", label_map="0=zero, 1=one,2=two",
                             test_fraction=0)
    assert index.kind == "pattern" and index.labels == ["zero", "one", "two"]  # ordered as the map
    assert index.speakers() == ["george", "jackson", "theo", "yweweler"]
    assert [len(index.speakers(s)) for s in ("train", "validation", "test")] == [3, 1, 0]
    assert any("odd-name" in path for path, _ in index.skipped)
    with pytest.raises(ConfigError, match="'2'"), warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFileWarning)
        open_dataset(root, pattern="{label}_{speaker}_{index}.wav", label_map={"0": "zero", "1": "one"})


def test_filename_pattern_without_a_speaker_field_keeps_nohash_speakers_whole(tmp_path):
    # Speech Commands-style names read by a pattern that names no {speaker}: the _nohash_ prefix is the
    # speaker, as for labelled folders, so no speaker's takes are spread over two splits.
    root = tmp_path / "d"
    for word in ("yes", "no"):
        for speaker in SPEAKERS:
            for take in range(3):
                write_tone(root / word / f"{speaker}_nohash_{take}.wav")
    index = open_dataset(root, pattern="{label}/{name}.wav", validation_speakers=1, test_speakers=1)
    assert index.speakers() == SPEAKERS
    by_split = {name: set(index.speakers(name)) for name in ("train", "validation", "test")}
    assert not (by_split["train"] & by_split["validation"]) and not (by_split["train"] & by_split["test"])


def test_parse_label_map():
    assert parse_label_map("0=zero,1=one") == {"0": "zero", "1": "one"}
    assert parse_label_map('{"0": "zero"}') == {"0": "zero"}
    assert parse_label_map({0: "zero"}) == {"0": "zero"}
    for bad in ("0zero", "0=zero,0=nil", "=x", 5):
        with pytest.raises(ConfigError):
            parse_label_map(bad)


def test_detect_kind_and_bad_arguments(tmp_path):
    root = make_speech_commands(tmp_path / "sc", ["yes", "no"], lists=False)
    assert detect_kind(root) == "speech_commands"
    assert detect_kind(root / "yes") == "folders"
    assert detect_kind(root, pattern="{label}.wav") == "pattern"
    with pytest.raises(ConfigError, match="no such"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(ConfigError, match="task"):
        open_dataset(root, task="7")
    with pytest.raises(ConfigError, match="kind"):
        open_dataset(root, kind="zip")
    with pytest.raises(ConfigError, match="pattern"):
        open_dataset(root, kind="pattern")
    with pytest.raises(ConfigError, match="validation_fraction"):
        open_dataset(root, validation_fraction=1.5)


# ----------------------------------------------------------------------------- splits


def test_speaker_split_is_disjoint_and_deterministic(tmp_path):
    speakers = [f"s{i}" for i in range(12)]
    clips = [Clip(tmp_path / f"{w}_{s}.wav", w, s) for s in speakers for w in ("a", "b")]
    first = split_by_speaker(clips, seed=3)
    assert first == split_by_speaker(clips, seed=3)
    reordered = split_by_speaker(clips[::-1], seed=3)  # listing order does not matter
    assert all({c.speaker for c in first[k]} == {c.speaker for c in reordered[k]} for k in first)
    held = [{c.speaker for c in split_by_speaker(clips, seed=seed)["validation"]} for seed in range(6)]
    assert len({frozenset(h) for h in held}) > 1  # the seed matters
    by_split = {k: {c.speaker for c in v} for k, v in first.items()}
    assert sum(len(v) for v in by_split.values()) == len(speakers)  # each speaker in exactly one split
    assert rank_speakers(speakers, 1) == rank_speakers(reversed(speakers), 1)


def test_held_out_speakers_one_call(tmp_path):
    root = make_speech_commands(tmp_path / "sc", ["yes", "no"], [f"s{i:02d}" for i in range(18)], lists=False,
                                noise=False)
    index = open_dataset(root, validation_speakers=3, test_fraction=0)
    assert len(index.speakers("validation")) == 3 and not index.splits["test"]
    chosen = held_out_speakers(index, 3)
    assert sorted(chosen) == index.speakers("validation")
    again = open_dataset(root, validation_speakers=chosen, test_speakers=held_out_speakers(index, 2, exclude=chosen))
    assert set(again.speakers("validation")) == set(chosen) and len(again.speakers("test")) == 2
    with pytest.raises(ConfigError, match="nobody"):
        open_dataset(root, validation_speakers=["nobody"])
    with pytest.raises(ConfigError, match="train"):
        held_out_speakers(index, 18)


def test_empty_class_is_named(tmp_path):
    root = make_speech_commands(tmp_path / "sc", ["yes", "no"], lists=False, noise=False)
    (root / "stop").mkdir()
    with pytest.raises(ConfigError, match="'stop'"):
        open_dataset(root)
    folders = tmp_path / "folders"
    for s in SPEAKERS:
        write_tone(folders / "common" / f"{s}_nohash_0.wav")
    write_tone(folders / "rare" / f"{SPEAKERS[0]}_nohash_0.wav")
    with pytest.raises(ConfigError, match="'rare'.*train"):
        open_dataset(folders, test_speakers=[SPEAKERS[0]])  # only speaker of 'rare' held out


def test_corrupt_file_is_skipped_and_counted(tmp_path):
    root = make_speech_commands(tmp_path / "sc", ["yes", "no"], lists=False, noise=False)
    bad = root / "yes" / "zzz_nohash_0.wav"
    bad.write_bytes(np.random.default_rng(0).bytes(2000))
    (root / "no" / "empty_nohash_0.wav").write_bytes(b"")
    with pytest.warns(SkippedFileWarning, match="skipped 2"):
        index = open_dataset(root)
    assert {Path(p).name for p, _ in index.skipped} == {bad.name, "empty_nohash_0.wav"}
    assert all(c.path != bad for c in index.clips())
    assert "skipped files: 2" in index.summary() and "zzz_nohash_0.wav" in index.summary()


def test_summary_lists_classes_splits_speakers(tmp_path):
    index = open_dataset(make_speech_commands(tmp_path / "sc", ["yes", "no"]))
    text = index.summary()
    for needle in ("yes", "no", "train", "validation", "test", "speakers", "skipped files: 0"):
        assert needle in text


# ----------------------------------------------------------------------------- features and cache


def test_pad_and_crop_to_frames(tmp_path):
    config = FbankConfig()
    short = Clip(write_tone(tmp_path / "short.wav", 0.3), "a", "x")
    long = Clip(write_tone(tmp_path / "long.wav", 1.5), "a", "x")
    features = clip_features(short, config, 128)
    n_real = config.num_frames(int(0.3 * RATE))
    assert features.shape == (128, 128) and n_real == 28
    pad_value = (0.0 - config.mean) / (2 * config.std)  # zero-padded before normalization
    np.testing.assert_allclose(features[n_real:], pad_value, rtol=0, atol=1e-6)
    assert not np.allclose(features[n_real - 1], pad_value)
    samples, _ = sf.read(long.path, dtype="float32")
    full = normalize(fbank(torch.from_numpy(samples - samples.mean()), config).numpy(), config)
    assert full.shape[0] == 148
    np.testing.assert_allclose(clip_features(long, config, 128), full[:128], atol=1e-5)
    assert pad_or_crop(np.ones((3, 2), np.float32), 5)[3:].sum() == 0


def count_fbank_calls(monkeypatch) -> list:
    calls = []
    real = frontend.fbank

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(frontend, "fbank", counting)
    return calls


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    calls = count_fbank_calls(monkeypatch)
    clips = [Clip(write_tone(tmp_path / f"{i}.wav", seed=i), "a", str(i)) for i in range(2)]
    cache = tmp_path / "cache"
    first = FeatureDataset(clips, ["a"], cache_dir=cache)
    x0, _ = first[0]
    x0_again, _ = first[0]
    assert len(calls) == 1 and torch.equal(x0, x0_again) and first.cache_hits == 1
    second = FeatureDataset(clips, ["a"], cache_dir=cache)  # a new epoch / process
    assert torch.equal(second[0][0], x0) and len(calls) == 1
    assert len(list(cache.rglob("*.npy"))) == 1 and not list(cache.rglob("*.tmp"))
    changed = FeatureDataset(clips, ["a"], FbankConfig(n_mels=64), cache_dir=cache)
    assert changed[0][0].shape == (128, 64) and len(calls) == 2  # new frontend: recomputed
    FeatureDataset(clips, ["a"], frames=100, cache_dir=cache)[0]
    assert len(calls) == 3
    write_tone(clips[0].path, freq=900)  # the file changed: its old entry must not be served
    os.utime(clips[0].path, ns=(1, 1))
    assert not torch.equal(FeatureDataset(clips, ["a"], cache_dir=cache)[0][0], x0) and len(calls) == 4


def test_precompute_fills_cache(tmp_path, monkeypatch):
    clips = [Clip(write_tone(tmp_path / f"{i}.wav", seed=i), "a", str(i)) for i in range(4)]
    dataset = FeatureDataset(clips, ["a"], cache_dir=tmp_path / "cache")
    assert dataset.precompute(num_workers=0, progress=False) == 4
    calls = count_fbank_calls(monkeypatch)
    assert FeatureDataset(clips, ["a"], cache_dir=tmp_path / "cache").precompute(num_workers=1, progress=False) == 0
    assert len(calls) == 0
    with pytest.raises(ConfigError, match="cache"):
        FeatureDataset(clips, ["a"], cache=False).precompute()


def test_load_failure_serves_same_label_replacement(tmp_path):
    clips = [Clip(write_tone(tmp_path / f"{label}{i}.wav", freq=300 + 100 * i), label, f"s{i}")
             for label in ("a", "b") for i in range(2)]
    dataset = FeatureDataset(clips, ["a", "b"], cache=False)
    expected = dataset[1][0]
    clips[0].path.write_bytes(b"RIFF garbage that is not audio")  # broke after the scan
    with pytest.warns(SkippedFileWarning, match="a0.wav"):
        features, target = dataset[0]
    assert target == 0 and torch.equal(features, expected)
    assert len(dataset.skipped) == 1 and "a0.wav" in dataset.skipped[0][0]
    clips[1].path.write_bytes(b"")
    with pytest.raises(AudioError, match="'a'"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset[0]


def test_feature_dataset_rejects_bad_input(tmp_path):
    clip = Clip(tmp_path / "x.wav", "a", "s")
    with pytest.raises(ConfigError, match="'b'"):
        FeatureDataset([Clip(tmp_path / "x.wav", "b", "s")], ["a"])
    with pytest.raises(ConfigError, match="frames"):
        FeatureDataset([clip], ["a"], frames=0)
    with pytest.raises(ConfigError, match="duplicates"):
        FeatureDataset([clip], ["a", "a"])
    with pytest.raises(ConfigError):
        Clip(None, "a")


def test_speaker_from_name():
    assert speaker_from_name(Path("yes/3cfc6b3a_nohash_2.wav")) == "3cfc6b3a"
    assert speaker_from_name(Path("x/00000030_NO_01.flac")) == "00000030_NO_01"


# ----------------------------------------------------------------------------- shared corpora


def test_shared_arabic_manifest(tmp_path):
    csv_path = require_shared("data", "arabic_speech_commands", "train.csv")
    index = open_dataset(csv_path, validation_speakers=3, test_fraction=0)
    assert len(index.clips()) == 7200 and len(index.labels) == 40 and len(index.speakers()) == 18
    assert {"zoom in", "zoom out"} <= set(index.labels) and not index.skipped
    assert len(index.speakers("validation")) == 3
    assert_speaker_disjoint(index)
    features, _ = index.dataset("validation", cache_dir=tmp_path)[0]
    assert features.shape == (128, 128)


def test_shared_fsdd_pattern():
    root = require_shared("data", "fsdd", "recordings")
    index = open_dataset(root, pattern="{label}_{speaker}_{index}.wav", validation_speakers=1, test_fraction=0)
    assert len(index.clips()) == 2000 and index.labels == [str(d) for d in range(10)]
    assert index.speakers() == ["george", "jackson", "theo", "yweweler"]
    assert_speaker_disjoint(index)


def test_no_usable_clips(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "a" / "x.wav").write_bytes(b"junk")
    with pytest.raises(ConfigError, match=r"no usable clips \(1 file\(s\) skipped, e.g. .*x.wav: "), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFileWarning)
        open_dataset(tmp_path / "d")


def test_opening_an_index_does_not_import_torch():
    # Only FeatureDataset needs torch: listing, scanning and splitting must work without it.
    code = "import sys, lmustream.data.datasets; assert 'torch' not in sys.modules, 'torch imported'"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_the_12_class_task_takes_other_keywords(tmp_path):
    root = make_speech_commands(tmp_path / "sc", CORE + ["cat", "dog"])
    index = open_dataset(root, task=12, keywords=["yes", "cat"])
    assert index.labels == ["yes", "cat", "_unknown_", "_silence_"]
    assert {c.path.parent.name for c in index.clips() if c.label == "_unknown_"} == set(CORE + ["dog"]) - {"yes"}
    with pytest.raises(ConfigError, match="12-class task only"):
        open_dataset(root, task=35, keywords=["yes"])
    with pytest.raises(ConfigError, match="not starting with '_'"):
        open_dataset(root, task=12, keywords=["yes", "_unknown_"])
    with pytest.raises(ConfigError, match="twice"):
        open_dataset(root, task=12, keywords=["yes", "yes"])



def test_a_manifest_opened_as_another_kind_says_which_kind_reads_it(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.wav,yes\n")
    with pytest.raises(ConfigError, match="is a CSV manifest, but the dataset kind is 'pattern'.*data.kind=manifest"):
        open_dataset(tmp_path / "m.csv", kind="pattern", pattern="{label}_{speaker}.wav")
