"""Evaluation of a model file on data in each layout."""

import numpy as np
import pytest
import soundfile as sf

from lmustream.data.clips import SkippedFileWarning
from lmustream.data.labels import SPEECH_COMMANDS_12
from lmustream.errors import ConfigError
from lmustream.train.evaluate import evaluate_artifact
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
