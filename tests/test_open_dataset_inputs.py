"""open_dataset refuses a bad dataset path or seed with a ConfigError naming it, before any file is read."""

import numpy as np
import pytest
import soundfile as sf

from lmustream.data.datasets import detect_kind, open_dataset
from lmustream.errors import ConfigError


@pytest.fixture
def folders(tmp_path):
    """Two labelled folders of short tones from four speakers."""
    for w, word in enumerate(["yes", "no"]):
        for s in range(4):
            path = tmp_path / "data" / word / f"spk{s}_nohash_0.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            t = np.arange(4800) / 16000
            sf.write(path, (0.5 * np.sin(2 * np.pi * (300 + 100 * w) * t)).astype(np.float32), 16000)
    return tmp_path / "data"


@pytest.mark.parametrize("seed", ["a", 1.5, 1.0, None, True])
def test_seed_must_be_an_integer(folders, seed):
    with pytest.raises(ConfigError, match=f"seed must be an integer, got {seed!r}"):
        open_dataset(folders, seed=seed)


def test_integer_seeds_of_numpy_are_accepted(folders):
    a = open_dataset(folders, seed=np.int64(3), validation_fraction=0.25, test_fraction=0.25)
    b = open_dataset(folders, seed=3, validation_fraction=0.25, test_fraction=0.25)
    assert a.speakers("test") == b.speakers("test")


@pytest.mark.parametrize("spec", [None, 3, "", ["a"]])
def test_the_dataset_must_be_a_path(spec):
    with pytest.raises(ConfigError, match="dataset must be a folder or a .csv manifest path"):
        open_dataset(spec)
    with pytest.raises(ConfigError, match="dataset must be a folder"):
        open_dataset(spec, kind="folders")
    with pytest.raises(ConfigError, match="dataset must be a folder"):
        detect_kind(spec)
