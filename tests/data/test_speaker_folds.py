"""benchmarks/speaker_folds.py: speaker-disjoint folds of a small real set, and scoring one model per fold."""

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from lmustream.data.labels import SPEECH_COMMANDS_12
from lmustream.models.artifact import save_model
from tests.detect.fakes import tiny_artifact

from tests.benchmark_scripts import BENCHMARKS, load_benchmark

ROOT = BENCHMARKS.parent
SCRIPT = BENCHMARKS / "speaker_folds.py"


def _load():
    return load_benchmark("speaker_folds")


def test_folds_balance_clips_and_keep_speakers_whole():
    fold_of = _load().assign_folds({"a": 9, "b": 5, "c": 4, "d": 3, "e": 1}, 2)
    assert fold_of == {"a": 0, "b": 1, "c": 1, "d": 0, "e": 1}  # 12 and 10 clips


def test_split_and_score(tmp_path):
    data = tmp_path / "sc"
    rng = np.random.default_rng(0)
    for word in ("yes", "cat", "dog"):  # cat and dog share clip names: both must reach _unknown_
        for speaker in ("s1", "s2", "s3"):
            (data / word).mkdir(parents=True, exist_ok=True)
            sf.write(data / word / f"{speaker}_nohash_0.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
    run = lambda *args: subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True)
    done = run("split", str(data), "--out", str(tmp_path / "folds"), "--folds", "3")
    assert done.returncode == 0, done.stderr
    folds = json.loads((tmp_path / "folds" / "folds.json").read_text())
    assert sorted(folds["speakers"].values()) == [0, 1, 2] and folds["sizes"] == [3, 3, 3]
    for k in range(3):
        held = {p.name.split("_")[0] for p in (tmp_path / "folds" / "held" / str(k)).rglob("*.wav")}
        trained = {p.name.split("_")[0] for p in (tmp_path / "folds" / "train" / str(k)).rglob("*.wav")}
        assert len(held) == 1 and held.isdisjoint(trained) and len(trained) == 2
        assert sorted(p.name for p in (tmp_path / "folds" / "train" / str(k)).iterdir()) == ["_unknown_", "yes"]
        assert len(list((tmp_path / "folds" / "train" / str(k) / "_unknown_").iterdir())) == 4
    assert run("split", str(data), "--out", str(tmp_path / "folds")).returncode != 0  # not over a written one
    done = run("pack", str(tmp_path / "folds"), "--config", "configs/sc12-lmuformer.yaml")
    assert done.returncode == 0, done.stderr
    from lmustream.data.pack import read_pack

    packed = read_pack(tmp_path / "folds" / "train_0.npz")
    assert packed.counts() == {"train": 6} and sorted(packed.labels) == ["_unknown_", "yes"]
    models = []
    for k in range(3):
        models.append(str(tmp_path / f"m{k}.safetensors"))
        save_model(models[-1], tiny_artifact(SPEECH_COMMANDS_12))
    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "hum.wav", 0.1 * rng.standard_normal(5 * 16000).astype(np.float32), 16000)
    done = run("score", str(tmp_path / "folds"), *models, "--noise-dir", str(noise))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = lines[0].split()
    pooled = dict(zip(header, next(line for line in lines if line.startswith("pooled")).split()[1::2]))
    assert pooled["keywords"].endswith("/3") and pooled["_unknown_"].endswith("/6") and pooled["all"].endswith("/9")
    assert run("score", str(tmp_path / "folds"), models[0], "--noise-dir", str(noise)).returncode != 0
