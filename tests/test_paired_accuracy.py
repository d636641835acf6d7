"""benchmarks/paired_accuracy.py: per-model accuracy on one pack's clips and the exact McNemar test between them."""

import dataclasses

import numpy as np
import pytest
import torch

from lmustream.audio.features import FbankConfig
from lmustream.data.pack import FeaturePack, quantize, read_pack, write_pack
from lmustream.errors import ConfigError
from lmustream.models.artifact import ModelArtifact, save_model
from lmustream.models.lmuformer import LMUFormer, LMUFormerConfig
from tests.benchmark_scripts import load_benchmark

paired = load_benchmark("paired_accuracy")
FRONTEND = FbankConfig(n_mels=8)
LABELS = ["a", "b", "c"]


def _model(path, always=None, seed=0):
    torch.manual_seed(seed)
    model = LMUFormer(LMUFormerConfig(n_mels=8, n_classes=3, dim=8, memory_size=4, mlp_ratio=1, frames=6))
    if always is not None:  # a head that answers one class whatever it hears
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.copy_(torch.tensor([10.0 if i == always else 0.0 for i in range(3)]))
    save_model(path, ModelArtifact(model.eval(), LABELS, FRONTEND))
    return str(path)


@pytest.fixture
def pack(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [10, 6, 4]).astype(np.int16)
    x = rng.uniform(-0.9, 1.3, (len(y), 6, 8)).astype(np.float32)
    path = tmp_path / "p.npz"
    write_pack(FeaturePack(LABELS, 6, dataclasses.asdict(FRONTEND), {"validation": (quantize(x)[0], y)}), path)
    return path


def test_mcnemar_exact_values():
    assert paired.mcnemar_p(0, 0) == 1.0
    assert paired.mcnemar_p(0, 6) == pytest.approx(2 / 64)
    assert paired.mcnemar_p(6, 0) == paired.mcnemar_p(0, 6)
    assert paired.mcnemar_p(5, 5) == 1.0
    assert paired.mcnemar_p(21, 39) == pytest.approx(0.0273, abs=5e-4)


def test_accuracies_and_discordant_clips(pack, tmp_path):
    says_a, says_b = _model(tmp_path / "a.safetensors", always=0), _model(tmp_path / "b.safetensors", always=1)
    accuracy, pairs = paired.compare([says_a, says_b], read_pack(pack), "validation")
    assert [row["right"] for row in accuracy] == [10, 6] and accuracy[0]["n"] == 20
    assert accuracy[0]["accuracy"] == pytest.approx(0.5)
    assert pairs == [{"first": says_a, "second": says_b, "only_first": 10, "only_second": 6,
                      "p": pytest.approx(paired.mcnemar_p(10, 6))}]


def test_command_prints_both_tables(pack, tmp_path, capsys):
    models = [_model(tmp_path / "a.safetensors", always=0), _model(tmp_path / "r.safetensors", seed=3)]
    assert paired.main(["--data", str(pack), *models]) == 0
    out = capsys.readouterr().out
    assert "10 / 20" in out and "McNemar p" in out


def test_bad_inputs_are_named(pack, tmp_path, capsys):
    model = _model(tmp_path / "a.safetensors", always=0)
    with pytest.raises(SystemExit):
        paired.main(["--data", str(pack), model])  # one model: nothing to compare
    assert "at least two models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        paired.main(["--data", str(tmp_path / "none.npz"), model, model])
    assert "not a feature pack" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        paired.main(["--data", str(pack), "--split", "test", model, model])
    assert "no clips in split 'test'" in capsys.readouterr().err
    assert paired.main(["--data", str(pack), model, str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    other = ModelArtifact(LMUFormer(LMUFormerConfig(n_mels=8, n_classes=2, dim=8, memory_size=4, mlp_ratio=1,
                                                    frames=6)), ["a", "b"], FRONTEND)
    save_model(tmp_path / "two.safetensors", other)
    with pytest.raises(ConfigError, match="labels in the pack but not in the model: c "):
        paired.correct_clips(str(tmp_path / "two.safetensors"), read_pack(pack), "validation")
