"""`lmustream eval --early-exit`: JSON, CSV and PNG outputs, and clear errors."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from lmustream.audio.features import FbankConfig
from lmustream.cli import main
from lmustream.models import LMUFormer, LMUFormerConfig
from lmustream.models.artifact import ModelArtifact, save_model
from lmustream.selftest import randomize_batchnorm

LABELS = ["high", "low"]
FRAMES = 40


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ee_cli")
    data = root / "tones"
    data.mkdir()
    t = np.arange(4000) / 16000  # 0.25 s: 23 frames of audio, padded to 40
    for label, f0 in (("low", 400), ("high", 1800)):
        for s in range(3):
            for k in range(4):
                wave = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.03 * s + 0.01 * k) * t) * np.hanning(t.size)
                sf.write(data / f"{label}_s{s}_{k}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
    torch.manual_seed(0)
    config = LMUFormerConfig(n_classes=2, dim=16, memory_size=8, mlp_ratio=1, embed_convs=2, frames=FRAMES)
    model = randomize_batchnorm(LMUFormer(config), 0).eval()
    path = root / "tiny.safetensors"
    save_model(path, ModelArtifact(model, LABELS, FbankConfig()))
    return root, data, path


def args(setup, *extra):
    root, data, model = setup
    return ["eval", "--early-exit", "--model", str(model), "--data", str(data), "--kind", "pattern",
            "--pattern", "{label}_{speaker}_{index}.wav", "--cache-dir", str(root / "cache"), *extra]


def test_json_csv_and_plot(setup, tmp_path, capsys):
    out_csv, png = tmp_path / "curve.csv", tmp_path / "ee.png"
    assert main(args(setup, "--split", "all", "--json", "--csv", str(out_csv), "--plot", str(png),
                     "--step-check", "3")) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("full_accuracy", "policy", "exit_accuracy", "mean_frames", "frames_saved", "accuracy_drop"):
        assert key in result, key
    assert result["n"] == 24 and result["frames"] == FRAMES and result["lookahead"] == 3
    assert result["mean_audio_frames"] == 23
    assert result["accuracy_drop"] <= 0.005 + 1e-12
    assert result["frames_saved"] == pytest.approx(1 - result["mean_frames"] / FRAMES)
    assert set(result["policies"]) == {"threshold", "margin", "stable", "combined"}
    assert result["step_check"]["clips"] == 3 and result["step_check"]["max_abs_logit_difference"] < 1e-4
    rows = list(csv.DictReader(open(out_csv)))
    assert [int(r["frames_seen"]) for r in rows] == list(range(1, FRAMES + 1))
    assert rows[2]["accuracy"] == "" and rows[3]["output_frame"] == "0"  # D = 3 frames of look-ahead
    assert float(rows[-1]["accuracy"]) == pytest.approx(result["full_accuracy"])
    policies = list(csv.DictReader(open(tmp_path / "curve-policies.csv")))
    assert {r["policy"] for r in policies} == set(result["policies"])
    assert sum(r["policy"] == "stable" for r in policies) == FRAMES
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


def test_text_report_and_tuning_split(setup, capsys):
    assert main(args(setup, "--split", "all", "--tune-split", "train", "--step-check", "0")) == 0
    text = capsys.readouterr().out
    assert "full-sequence accuracy" in text and "tuned on the separate split" in text
    assert "accuracy vs frames seen" in text and "step form check" not in text


def test_errors_are_clear(setup, capsys):
    assert main(args(setup, "--max-drop", "1.5")) == 2
    assert "--max-drop" in capsys.readouterr().err
    assert main(args(setup, "--split", "all", "--label-map", "high=up,low=down")) == 2
    assert "labels in the data but not in the model: down, up" in capsys.readouterr().err
    assert main(args(setup, "--split", "all", "--label-map", "highup")) == 2
    assert "'highup' has no '='" in capsys.readouterr().err
