"""The single-file model format: round trip, self-description, and refusal of bad files."""

import json
import struct

import pytest
import torch

from lmustream.audio.features import FbankConfig
from lmustream.errors import CheckpointError
from lmustream.models import LMUFormer, LMUFormerConfig
from lmustream.models.artifact import FORMAT_VERSION, ModelArtifact, load_model, read_header, save_model
from lmustream.selftest import randomize_batchnorm

CFG = LMUFormerConfig(dim=32, memory_size=16, mlp_ratio=2, embed_convs=2, n_classes=3, n_mels=128)


def make(spiking=False):
    torch.manual_seed(0)
    model = randomize_batchnorm(LMUFormer(LMUFormerConfig(**{**CFG.to_dict(), "spiking": spiking})), seed=2)
    return ModelArtifact(model.eval(), ["yes", "no", "_unknown_"], FbankConfig(), {"note": "test"})


@pytest.mark.parametrize("spiking", [False, True])
def test_round_trip_equal_outputs(tmp_path, spiking):
    art = make(spiking)
    path = tmp_path / "m.safetensors"
    save_model(path, art)
    back = load_model(path)
    assert back.labels == art.labels and back.extra == {"note": "test"}
    assert back.model.config == art.model.config
    assert back.frontend == art.frontend
    x = torch.randn(2, 50, 128)
    with torch.no_grad():
        assert torch.equal(back.model(x), art.model(x))
    assert not back.model.training


def test_file_is_plain_safetensors_with_json_header(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, make())
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header["__metadata__"]["lmustream"])
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["config"]["dim"] == 32 and meta["labels"][0] == "yes"
    assert meta["frontend"]["n_mels"] == 128
    assert "embed.convs.0.weight" in header
    assert not any(k.endswith(".A") or k.endswith(".B") for k in header)  # derived, not stored


def rewrite_header(src, dst, mutate):
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header["__metadata__"]["lmustream"])
    mutate(meta, header)
    header["__metadata__"]["lmustream"] = json.dumps(meta)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    dst.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])


def test_newer_format_is_refused(tmp_path):
    save_model(tmp_path / "m.safetensors", make())
    rewrite_header(tmp_path / "m.safetensors", tmp_path / "new.safetensors",
                   lambda meta, h: meta.__setitem__("format_version", FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="newer than this lmustream supports"):
        load_model(tmp_path / "new.safetensors")


def test_config_that_does_not_match_tensors(tmp_path):
    save_model(tmp_path / "m.safetensors", make())
    rewrite_header(tmp_path / "m.safetensors", tmp_path / "bad.safetensors",
                   lambda meta, h: meta["config"].__setitem__("dim", 48))
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_model(tmp_path / "bad.safetensors")


def test_unknown_config_key(tmp_path):
    save_model(tmp_path / "m.safetensors", make())
    rewrite_header(tmp_path / "m.safetensors", tmp_path / "bad.safetensors",
                   lambda meta, h: meta["config"].__setitem__("heads", 4))
    with pytest.raises(CheckpointError, match="heads"):
        load_model(tmp_path / "bad.safetensors")


def test_corrupt_truncated_missing_and_foreign_files(tmp_path):
    save_model(tmp_path / "m.safetensors", make())
    raw = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 3)
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "trunc.safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not an lmustream model"):
        read_header(tmp_path / "foreign.safetensors")


def test_labels_must_match_classes():
    art = make()
    with pytest.raises(CheckpointError, match="2 labels given for a model with 3 classes"):
        ModelArtifact(art.model, ["a", "b"])
    with pytest.raises(CheckpointError, match="unique"):
        ModelArtifact(art.model, ["a", "a", "b"])


def test_save_is_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the previous file intact and no temporary file behind."""
    path = tmp_path / "m.safetensors"
    save_model(path, make())
    before = path.read_bytes()
    import os
    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, make(spiking=True))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
