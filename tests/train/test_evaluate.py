"""Evaluation of a model file on data in each layout."""

import warnings

import numpy as np
import pytest
import soundfile as sf

from lmustream.data.clips import SkippedFileWarning
from lmustream.data.labels import SPEECH_COMMANDS_12
from lmustream.errors import ConfigError
from lmustream.train.evaluate import evaluate_artifact, format_report
from tests.detect.fakes import tiny_artifact


def _write_clips(folder, n, seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        sf.write(folder / f"spk{i}_nohash_0.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)


def test_a_12_class_model_reads_labelled_folders_with_its_own_labels(tmp_path):
    # Real non-keyword speech gathered under _unknown_/ is how a 12-class model's false
    # accepts are measured; the folders name the model's labels, no Speech Commands task applies.
    _write_clips(tmp_path / "negatives" / "_unknown_", 3)
    artifact = tiny_artifact(SPEECH_COMMANDS_12)
    result = evaluate_artifact(artifact, str(tmp_path / "negatives"), "all", kind="folders")
    assert result["n"] == 3 and set(result["per_class"]) == {"_unknown_"}
    # A label the model lacks is still an error that names it.
    _write_clips(tmp_path / "negatives" / "maybe", 1)
    with pytest.raises(ConfigError, match="maybe"):
        evaluate_artifact(artifact, str(tmp_path / "negatives"), "all", kind="folders")


def test_scoring_a_few_words_of_one_speaker_needs_no_complete_dataset(tmp_path):
    # A Speech Commands folder holding some of the words (no _background_noise_) is scored as it
    # is: the classes it lacks, and held-out splits its speakers cannot fill, are no error.
    _write_clips(tmp_path / "sc" / "yes", 1)
    _write_clips(tmp_path / "sc" / "cat", 1, seed=1)
    _write_clips(tmp_path / "sc" / "dog", 10, seed=3)
    noise = tmp_path / "noise" / "hum.wav"
    noise.parent.mkdir()
    sf.write(noise, (0.1 * np.random.default_rng(2).standard_normal(3 * 16000)).astype(np.float32), 16000)
    artifact = tiny_artifact(SPEECH_COMMANDS_12)
    result = evaluate_artifact(artifact, str(tmp_path / "sc"), "all", noise_dir=str(noise.parent))
    assert set(result["per_class"]) == {"yes", "_unknown_", "_silence_"}
    assert result["per_class"]["yes"]["n"] == 1 and result["per_class"]["_unknown_"]["n"] == 11


def test_folders_named_after_the_catch_all_classes_are_read_as_labelled_folders(tmp_path):
    # yes/ and _unknown_/ side by side name a 12-class model's labels: the _unknown_ clips are
    # scored with the rest, not skipped as a Speech Commands folder would skip _background_noise_.
    _write_clips(tmp_path / "mine" / "yes", 2)
    _write_clips(tmp_path / "mine" / "_unknown_", 3, seed=1)
    result = evaluate_artifact(tiny_artifact(SPEECH_COMMANDS_12), str(tmp_path / "mine"), "all")
    assert result["n"] == 5 and set(result["per_class"]) == {"yes", "_unknown_"}


def test_a_12_class_model_taught_new_words_scores_them_as_its_own_classes(tmp_path):
    # A model fine-tuned with new words (the 12 classes + "eight") reading a Speech Commands folder:
    # eight/ is one of its keywords, not _unknown_; words it does not know still are.
    _write_clips(tmp_path / "sc" / "eight", 6)
    _write_clips(tmp_path / "sc" / "yes", 1, seed=1)
    _write_clips(tmp_path / "sc" / "bed", 6, seed=2)  # 13 clips / 12 other classes: one _silence_ clip
    noise = tmp_path / "noise" / "hum.wav"
    noise.parent.mkdir()
    sf.write(noise, (0.1 * np.random.default_rng(2).standard_normal(3 * 16000)).astype(np.float32), 16000)
    artifact = tiny_artifact(list(SPEECH_COMMANDS_12) + ["eight"])
    result = evaluate_artifact(artifact, str(tmp_path / "sc"), "all", noise_dir=str(noise.parent))
    assert set(result["per_class"]) == {"eight", "yes", "_unknown_", "_silence_"}
    assert result["per_class"]["eight"]["n"] == 6 and result["per_class"]["_unknown_"]["n"] == 6
    # The plain 12-class model reads the same folder as the standard task.
    plain = evaluate_artifact(tiny_artifact(SPEECH_COMMANDS_12), str(tmp_path / "sc"), "all",
                              noise_dir=str(noise.parent))
    assert "eight" not in plain["per_class"] and plain["per_class"]["_unknown_"]["n"] == 12


def test_a_12_class_model_reads_a_manifest_with_its_own_labels(tmp_path):
    # A .csv is a manifest whatever the model: the 12-class model's Speech Commands task does not apply.
    _write_clips(tmp_path / "clips", 2)
    rows = "".join(f"clips/{p.name},yes\n" for p in sorted((tmp_path / "clips").iterdir()))
    (tmp_path / "m.csv").write_text("file,label\n" + rows + "clips/gone.wav,no\n")
    with pytest.warns(SkippedFileWarning, match="gone.wav"):  # a listed file that is missing is named
        result = evaluate_artifact(tiny_artifact(SPEECH_COMMANDS_12), str(tmp_path / "m.csv"), "all")
    assert result["n"] == 2 and set(result["per_class"]) == {"yes"}


def test_a_clip_that_fails_to_load_is_skipped_and_counted_not_replaced(tmp_path):
    # Training serves another clip of the label in its place (a batch must stay full); scoring must not,
    # or one recording counts twice. The header check passes a WAV of NaN samples: only loading finds it.
    _write_clips(tmp_path / "d" / "yes", 3)
    sf.write(tmp_path / "d" / "yes" / "nan_nohash_0.wav", np.full(16000, np.nan, np.float32), 16000,
             subtype="FLOAT")
    with pytest.warns(SkippedFileWarning, match="nan_nohash_0.wav"):
        result = evaluate_artifact(tiny_artifact(SPEECH_COMMANDS_12), str(tmp_path / "d"), "all", kind="folders")
    assert result["n"] == 3 and result["per_class"]["yes"]["n"] == 3 and result["skipped"] == 1
    assert "1 unreadable clip(s) skipped" in format_report(result)


def test_the_text_confusion_matrix_shows_every_predicted_class(tmp_path):
    # Clips of one class predicted as classes the data lacks: each row still sums to its n.
    _write_clips(tmp_path / "d" / "yes", 6)
    result = evaluate_artifact(tiny_artifact(SPEECH_COMMANDS_12), str(tmp_path / "d"), "all", kind="folders")
    predicted = {SPEECH_COMMANDS_12[j] for j, count in enumerate(result["confusion"][0]) if count} - {"yes"}
    assert predicted  # the random tiny model answers other classes
    matrix = format_report(result).split("confusion")[1].splitlines()
    header, row = matrix[1].split(), matrix[2].split()
    assert header == ["0", *[lab for lab in SPEECH_COMMANDS_12 if lab in predicted]]
    assert row[0] == "yes" and sum(int(v) for v in row[1:]) == 6


def test_dataset_options_cannot_silently_change_how_a_model_reads_its_own_training_data(tmp_path):
    _write_clips(tmp_path / "d" / "yes", 2)
    artifact = tiny_artifact(SPEECH_COMMANDS_12)
    artifact.extra = {"recipe": {"data": {"path": str(tmp_path / "d"), "kind": "folders", "pattern": None,
                                          "label_map": None}, "seed": 0}}
    assert evaluate_artifact(artifact, str(tmp_path / "d"), "all")["n"] == 2  # as the recipe reads it
    assert evaluate_artifact(artifact, str(tmp_path / "d"), "all", kind="folders")["n"] == 2  # the same reading
    with pytest.raises(ConfigError, match=r"--pattern '\{label\}_x.wav' \(the recipe's: None\)"):
        evaluate_artifact(artifact, str(tmp_path / "d"), "all", pattern="{label}_x.wav")
    with pytest.raises(ConfigError, match="--kind 'speech_commands'"):
        evaluate_artifact(artifact, str(tmp_path / "d"), "all", kind="speech_commands")


def test_a_model_split_by_speaker_despite_official_lists_is_scored_on_its_own_test_speakers(tmp_path):
    # Trained with data.split_lists=false on a folder that has the lists: the model's test split is its
    # held-out speakers, and the lists' test clips may be clips it trained on.
    from lmustream.data.datasets import open_dataset
    from lmustream.train.evaluate import eval_clips

    root = tmp_path / "sc"
    for word in ("yes", "no"):
        _write_clips(root / word, 10, seed=len(word))
    (root / "validation_list.txt").write_text("yes/spk3_nohash_0.wav\nno/spk3_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/spk4_nohash_0.wav\nno/spk4_nohash_0.wav\n")
    data = {"path": str(root), "kind": "auto", "pattern": None, "label_map": None, "split_lists": False,
            "validation_speakers": None, "test_speakers": None, "validation_fraction": 0.2, "test_fraction": 0.2}
    artifact = tiny_artifact(["no", "yes"])
    artifact.extra = {"recipe": {"data": data, "seed": 0}}
    trained = open_dataset(root, split_lists=False, validation_fraction=0.2, test_fraction=0.2, seed=0)
    clips, _ = eval_clips(artifact, str(root), "test")
    assert {c.path for c in clips} == {c.path for c in trained.splits["test"]}


def test_a_model_whose_silence_came_from_a_silence_dir_is_scored_on_that_silence(tmp_path):
    from lmustream.data.datasets import open_dataset
    from lmustream.train.evaluate import eval_clips

    root = tmp_path / "sc"
    _write_clips(root / "yes", 10)
    _write_clips(root / "cat", 10, seed=1)
    for folder, seed in ((root / "_background_noise_", 2), (tmp_path / "silence", 3)):
        folder.mkdir()
        sf.write(folder / "noise.wav", (0.1 * np.random.default_rng(seed).standard_normal(20 * 16000)).astype(np.float32),
                 16000)
    data = {"path": str(root), "kind": "auto", "pattern": None, "label_map": None, "task": "12",
            "silence_dir": str(tmp_path / "silence"), "validation_speakers": None, "test_speakers": None,
            "validation_fraction": 0.2, "test_fraction": 0.5}
    artifact = tiny_artifact(SPEECH_COMMANDS_12)
    artifact.extra = {"recipe": {"data": data, "seed": 0}}
    with warnings.catch_warnings():  # two of the twelve classes: held-out splits lack the rest
        warnings.simplefilter("ignore")
        trained = open_dataset(root, task="12", noise_dir=tmp_path / "silence", validation_fraction=0.2,
                               test_fraction=0.5, seed=0, complete=False)
        clips, _ = eval_clips(artifact, str(root), "test")
    assert [c.noise for c in clips if c.noise] == [c.noise for c in trained.splits["test"] if c.noise] != []


def test_an_empty_split_suggests_scoring_every_clip(tmp_path):
    # A model trained on all of its data (no held-out speakers) evaluated on that data's default split.
    _write_clips(tmp_path / "d" / "yes", 2)
    artifact = tiny_artifact(SPEECH_COMMANDS_12)
    artifact.extra = {"recipe": {"data": {"path": str(tmp_path / "d"), "kind": "folders", "validation_speakers": 0,
                                          "test_speakers": 0}, "seed": 0}}
    with pytest.raises(ConfigError, match="split 'test' is empty .*--split all scores every clip"):
        evaluate_artifact(artifact, str(tmp_path / "d"), "test")


def test_a_noise_folder_for_a_task_without_silence_is_an_error(tmp_path):
    _write_clips(tmp_path / "d" / "yes", 1)
    with pytest.raises(ConfigError, match="--noise-dir cuts the 12-class task's _silence_ clips"):
        evaluate_artifact(tiny_artifact(["yes", "no"]), str(tmp_path / "d"), "all", task="35",
                          noise_dir=str(tmp_path))
