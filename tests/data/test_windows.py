"""lmustream data windows: labelled clips cut from long recordings, without the silent stretches."""

import numpy as np
import pytest
import soundfile as sf

from lmustream.cli import main
from lmustream.data.windows import cut_windows, recordings
from lmustream.errors import ConfigError

RATE = 16000


def _recording(path, seconds, loud):
    """Quiet noise with a loud burst over each (start, end) second range of ``loud``."""
    rng = np.random.default_rng(len(str(path)))
    x = 1e-4 * rng.standard_normal(int(seconds * RATE))
    for start, end in loud:
        x[int(start * RATE):int(end * RATE)] += 0.3 * np.sin(2 * np.pi * 440 * np.arange(int((end - start) * RATE)) / RATE)
    sf.write(path, x.astype(np.float32), RATE, subtype="PCM_16")
    return path


def test_windows_keep_speech_and_name_recordings_as_speakers(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _recording(src / "a.flac", 4.0, [(0.2, 1.2)])  # speech only in its first 1.2 s
    _recording(src / "b.wav", 0.6, [(0.1, 0.5)])   # shorter than a clip: one zero-padded clip
    result = cut_windows([src], tmp_path / "out", name="s")
    names = sorted(p.name for p in (tmp_path / "out" / "_unknown_").iterdir())
    # a.flac: clips start every 0.5 s (0 .. 3.0 s); those starting at 0 and 0.5 s hold the burst, the
    # clip at 1.0 s holds its last 0.2 s; later ones are quiet noise, 70 dB down: skipped.
    assert names == ["s0_nohash_000.wav", "s0_nohash_001.wav", "s0_nohash_002.wav", "s1_nohash_000.wav"]
    assert result == {"recordings": 2, "clips": 4, "skipped_without_speech": 4, "unreadable": 0,
                      "folder": str(tmp_path / "out" / "_unknown_")}
    clip, rate = sf.read(tmp_path / "out" / "_unknown_" / "s1_nohash_000.wav")
    assert rate == RATE and clip.shape == (RATE,) and np.abs(clip[int(0.6 * RATE):]).max() == 0.0


def test_every_and_offset_split_a_collection(tmp_path):
    for i in range(5):
        _recording(tmp_path / f"r{i}.wav", 1.0, [(0.0, 1.0)])
    first, second = recordings([tmp_path], every=2, offset=0), recordings([tmp_path], every=2, offset=1)
    assert [p.name for p in first] == ["r0.wav", "r2.wav", "r4.wav"] and [p.name for p in second] == ["r1.wav", "r3.wav"]
    with pytest.raises(ConfigError, match="offset"):
        recordings([tmp_path], every=2, offset=2)


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no audio files"):
        cut_windows([tmp_path], tmp_path / "out")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an audio file"):
        cut_windows([tmp_path / "notes.txt"], tmp_path / "out")
    _recording(tmp_path / "r.wav", 1.0, [(0.0, 1.0)])
    with pytest.raises(ConfigError, match="label"):
        cut_windows([tmp_path / "r.wav"], tmp_path / "out", label="a/b")
    assert main(["data", "windows", str(tmp_path / "r.wav"), "--out", str(tmp_path / "cli"), "--label", "noise"]) == 0
    assert "1 clips from 1 recordings" in capsys.readouterr().out
    assert (tmp_path / "cli" / "noise" / "rec0_nohash_000.wav").exists()


def test_an_unreadable_recording_is_skipped_with_a_warning(tmp_path):
    from lmustream.errors import AudioError
    _recording(tmp_path / "a.wav", 1.0, [(0.0, 1.0)])
    (tmp_path / "b.wav").write_bytes(b"RIFFxxxxWAVEjunk")  # corrupt
    with pytest.warns(UserWarning, match="b.wav"):
        result = cut_windows([tmp_path], tmp_path / "out")
    assert result["recordings"] == 1 and result["unreadable"] == 1 and result["clips"] == 1
    with pytest.raises(AudioError, match="none of the 1 recordings"), pytest.warns(UserWarning):
        cut_windows([tmp_path / "b.wav"], tmp_path / "out2")


def test_a_second_collection_never_overwrites_the_first(tmp_path):
    # Clip names restart at {name}0 for each run: the same names would overwrite the first run's clips
    # and make two recordings one "speaker" to the speaker-disjoint splits.
    _recording(tmp_path / "a.wav", 1.0, [(0.0, 1.0)])
    _recording(tmp_path / "b.wav", 1.0, [(0.0, 1.0)])
    cut_windows([tmp_path / "a.wav"], tmp_path / "out")
    before = (tmp_path / "out" / "_unknown_" / "rec0_nohash_000.wav").read_bytes()
    with pytest.raises(ConfigError, match="already holds clips named rec.*another --name"):
        cut_windows([tmp_path / "b.wav"], tmp_path / "out")
    assert (tmp_path / "out" / "_unknown_" / "rec0_nohash_000.wav").read_bytes() == before
    cut_windows([tmp_path / "b.wav"], tmp_path / "out", name="other")
    assert (tmp_path / "out" / "_unknown_" / "other0_nohash_000.wav").exists()


def test_names_and_lengths_out_of_reason_are_refused(tmp_path):
    _recording(tmp_path / "r.wav", 1.0, [(0.0, 1.0)])
    with pytest.raises(ConfigError, match="name must be a plain file name"):
        cut_windows([tmp_path / "r.wav"], tmp_path / "out", name="a/b")
    with pytest.raises(ConfigError, match="at most 60 s"):  # 1e9 s would allocate terabytes
        cut_windows([tmp_path / "r.wav"], tmp_path / "out", seconds=1e9)
    with pytest.raises(ConfigError, match="positive"):
        cut_windows([tmp_path / "r.wav"], tmp_path / "out", seconds=float("nan"))
