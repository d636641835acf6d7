"""`lmustream show`: what a model file holds, read from its header and tensor table."""

import json

import pytest
import torch

from lmustream.audio.features import FbankConfig
from lmustream.cli import main
from lmustream.models import LMUFormer, get_config, macs_per_frame
from lmustream.models.artifact import ModelArtifact, load_model, save_model
from lmustream.models.describe import describe_model


def tiny_model_file(path, extra=None, labels=("go", "stop", "_unknown_")):
    torch.manual_seed(0)
    config = get_config("lmuformer-tiny", n_classes=len(labels), n_mels=40)
    artifact = ModelArtifact(LMUFormer(config).eval(), list(labels), FbankConfig(n_mels=40), extra or {})
    save_model(path, artifact)
    return path


def test_a_shipped_model_is_described_as_its_card_and_model_say(capsys):
    d = describe_model("sc12-lmuformer")
    model = load_model(d["path"]).model
    assert d["shipped_name"] == "sc12-lmuformer" and d["card"].endswith("sc12-lmuformer.md")
    assert d["parameters"] == model.num_parameters()
    assert d["macs_per_frame"] == sum(macs_per_frame(model.config).values())
    assert d["architecture"]["lookahead_frames"] == model.config.lookahead == 5
    assert d["keywords"] == ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    assert d["posterior"] == "sigmoid" and d["training_loss"] == "bce"
    assert main(["show", "sc12-lmuformer"]) == 0
    out = capsys.readouterr().out
    assert f"{model.num_parameters():,} parameters" in out
    assert "labels (12)   yes, no, up" in out and "look-ahead 5 frames, 50 ms" in out
    assert "calibration   none" in out and "kept epoch" in out


def test_calibration_and_fine_tuning_are_shown(tmp_path, capsys):
    extra = {"detector": {"thresholds": {"go": 0.91, "stop": 0.8}, "target_fa_per_hour": 1.0},
             "finetune": {"base": "sc12-lmuformer", "method": "aflora", "loss": "ce", "new_words": ["go", "stop"],
                          "enrollment_clips": 20, "epochs": 20}}
    path = tiny_model_file(tmp_path / "m.safetensors", extra)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "calibration   go 0.91, stop 0.8 (for 1 false alarms per hour)" in out
    assert "fine-tuned    aflora from sc12-lmuformer: new words go, stop (20 enrollment clips, 20 epochs)" in out
    assert "posterior     softmax (trained with ce)" in out
    assert "model card" not in out and "frontend      none recorded" not in out


def test_a_calibration_beside_the_model_is_found(tmp_path, capsys):
    path = tiny_model_file(tmp_path / "m.safetensors")
    (tmp_path / "m.detector.json").write_text(json.dumps({"thresholds": {"go": 0.7}}))
    assert main(["show", "--json", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["detector"]["thresholds"] == {"go": 0.7}
    assert d["shipped_name"] is None and d["card"] is None and d["keywords"] == ["go", "stop"]
    assert d["frontend"]["n_mels"] == 40


def test_every_model_is_checked_before_anything_is_printed(tmp_path, capsys):
    path = tiny_model_file(tmp_path / "m.safetensors")
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["show", str(path), "no-such-model"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no shipped model of that name" in captured.err
    assert main(["show", str(tmp_path / "notes.txt")]) == 2
    assert "not an lmustream model file" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["asc40-slmuformer", "digits-lmuformer"])
def test_every_shipped_model_can_be_shown(name, capsys):
    assert main(["show", name]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"model         {name}\n")
