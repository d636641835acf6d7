"""Feature packs: lossless enough, checked on load, mergeable, cappable, and trainable from."""

import numpy as np
import pytest
import torch

from lmustream.data.pack import (QUANT_STEP, FeaturePack, dequantize, merge_train, quantize,
                                 read_pack, write_pack)
from lmustream.errors import ConfigError

FRONTEND = {"n_mels": 8, "sample_rate": 16000}


def make_pack(labels=("a", "b", "_unknown_"), per_class=(4, 4, 20), frames=5, seed=0):
    rng = np.random.default_rng(seed)
    splits = {}
    for split in ("train", "validation"):
        y = np.repeat(np.arange(len(labels)), per_class)
        x = rng.uniform(-0.9, 1.3, (len(y), frames, 8)).astype(np.float32)
        splits[split] = (quantize(x)[0], y.astype(np.int16))
    noise = rng.normal(size=(30, 8)).astype(np.float16)
    return FeaturePack(list(labels), frames, FRONTEND, splits, noise, "test pack")


def test_quantization_error_is_half_a_step():
    x = np.linspace(-0.9, 1.3, 1000, dtype=np.float32)
    codes, clipped = quantize(x)
    assert clipped == 0
    assert np.abs(dequantize(codes) - x).max() <= QUANT_STEP / 2 + 1e-6
    assert quantize(np.array([-5.0, 5.0]))[1] == 2  # out of range values are counted


@pytest.mark.parametrize("compression", ["deflate", "lzma"])
def test_roundtrip(tmp_path, compression):
    pack = make_pack()
    path = write_pack(pack, tmp_path / "p.npz", compression=compression)
    back = read_pack(path)
    assert back.labels == pack.labels and back.frames == 5 and back.frontend == FRONTEND
    for split in ("train", "validation"):
        assert np.array_equal(back.splits[split][0], pack.splits[split][0])
        assert np.array_equal(back.splits[split][1], pack.splits[split][1])
    assert np.array_equal(back.noise, pack.noise)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_pack(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ConfigError, match="not a feature pack"):
        read_pack(bad)
    text = tmp_path / "text.npz"  # numpy would call it "pickled data"
    text.write_text("hello")
    with pytest.raises(ConfigError, match="not a feature pack"):
        read_pack(text)
    halved = tmp_path / "halved.npz"  # a pack missing a split's labels: named, not a KeyError
    write_pack(make_pack(), halved)
    import zipfile
    with zipfile.ZipFile(halved) as z:
        members = {name: z.read(name) for name in z.namelist() if name != "train.y.npy"}
    with zipfile.ZipFile(halved, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ConfigError, match="split 'train' lacks its labels"):
        read_pack(halved)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ConfigError, match="meta"):
        read_pack(other)
    with pytest.raises(ConfigError, match=".npz"):
        write_pack(make_pack(), tmp_path / "p.bin")
    with pytest.raises(ConfigError, match="compression"):
        write_pack(make_pack(), tmp_path / "p.npz", compression="zstd")


def test_label_indices_checked(tmp_path):
    pack = make_pack()
    codes, y = pack.splits["train"]
    pack.splits["train"] = (codes, np.full_like(y, 7))
    write_pack(pack, tmp_path / "p.npz")
    with pytest.raises(ConfigError, match="label indices"):
        read_pack(tmp_path / "p.npz")


def test_merge_keeps_only_known_labels():
    base = make_pack(labels=("a", "b"), per_class=(3, 3))
    extra = make_pack(labels=("b", "c", "a"), per_class=(2, 5, 1), seed=1)
    merged, dropped = merge_train(base, extra)
    assert dropped == {"c": 5}
    y = merged.splits["train"][1]
    assert len(y) == 6 + 3 and np.bincount(y).tolist() == [3 + 1, 3 + 2]
    assert len(merged.splits["validation"][1]) == 6  # only train is merged
    # the merged "b" clips are extra's "b" clips, in order
    assert np.array_equal(merged.splits["train"][0][6:8], extra.splits["train"][0][:2])
    with pytest.raises(ConfigError, match="frontends"):
        merge_train(base, make_pack(frames=6))


def test_class_caps():
    from lmustream.data.clips import Clip
    from lmustream.train.data import cap_classes

    clips = [Clip(path=f"{lab}{i}.wav", label=lab, speaker="s") for lab, n in (("a", 4), ("b", 4), ("u", 20))
             for i in range(n)]
    capped = cap_classes(clips, {"u": 6})
    assert [c.label for c in capped].count("u") == 6 and len(capped) == 14
    assert cap_classes(clips, {"u": 6}) == capped  # deterministic
    assert [c.label for c in cap_classes(clips, {"u": "1.5x"})].count("u") == 6
    with pytest.raises(ConfigError, match="class_caps"):
        cap_classes(clips, {"u": "lots"})


def test_trainer_reads_a_pack(tmp_path):
    from lmustream.audio.features import FbankConfig
    from lmustream.train.config import load_config
    from lmustream.train.data import prepare_data
    import dataclasses

    fe = dataclasses.asdict(FbankConfig())
    rng = np.random.default_rng(0)
    splits = {s: (quantize(rng.uniform(-0.8, 1.2, (6, 20, 128)))[0], np.arange(6) % 2) for s in ("train", "validation")}
    path = write_pack(FeaturePack(["x", "y"], 20, fe, splits, None, ""), tmp_path / "p.npz")
    extra = write_pack(FeaturePack(["y", "z"], 20, fe, {"train": splits["train"]}, None, ""), tmp_path / "e.npz")
    config = load_config(None, [f"data.path={path}", "data.frames=20", f"data.add_packs=[{extra}]"])
    data = prepare_data(config, verbose=False)
    assert data.labels == ["x", "y"] and len(data.train) == 6 + 3 and len(data.validation) == 6
    assert data.train.features.dtype == torch.float16
    bad = load_config(None, [f"data.path={path}", "data.frames=30"])
    with pytest.raises(ConfigError, match="frames"):
        prepare_data(bad, verbose=False)
    other_fe = write_pack(FeaturePack(["x", "y"], 20, {**fe, "preemphasis": 0.5}, splits, None, ""),
                          tmp_path / "f.npz")
    with pytest.raises(ConfigError, match=r"than this run uses: preemphasis 0.5 \(not 0.97\)"):
        prepare_data(load_config(None, [f"data.path={other_fe}", "data.frames=20"]), verbose=False)
    # A pack of train clips only (made with no held-out speakers) trains without validation.
    train_only = write_pack(FeaturePack(["x", "y"], 20, fe, {"train": splits["train"]}, None, ""), tmp_path / "t.npz")
    data = prepare_data(load_config(None, [f"data.path={train_only}", "data.frames=20"]), verbose=False)
    assert len(data.train) == 6 and data.validation is None
    empty = write_pack(FeaturePack(["x", "y"], 20, fe, {"validation": splits["validation"]}, None, ""), tmp_path / "v.npz")
    with pytest.raises(ConfigError, match="train split is empty"):
        prepare_data(load_config(None, [f"data.path={empty}", "data.frames=20"]), verbose=False)


def test_pack_must_match_the_data_section_it_stands_for(tmp_path):
    import dataclasses

    from lmustream.audio.features import FbankConfig
    from lmustream.train.config import load_config
    from lmustream.train.data import pack_source, prepare_data

    rng = np.random.default_rng(0)
    splits = {s: (quantize(rng.uniform(-0.8, 1.2, (4, 20, 128)))[0], np.arange(4) % 2) for s in ("train", "validation")}
    settings = ["data.path=/somewhere/words", "data.frames=20", "data.validation_speakers=2"]
    made_with = load_config(None, settings)
    pack = FeaturePack(["x", "y"], 20, dataclasses.asdict(FbankConfig()), splits, None, "", pack_source(made_with))
    path = write_pack(pack, tmp_path / "p.npz")
    same = load_config(None, settings + [f"data.pack={path}", "data.cache_dir=/tmp/elsewhere"])
    assert len(prepare_data(same, verbose=False).train) == 4
    other = load_config(None, settings[:2] + ["data.validation_speakers=3", f"data.pack={path}"])
    with pytest.raises(ConfigError, match="validation_speakers"):
        prepare_data(other, verbose=False)
    # A pack made before a data setting existed was made at that setting's default.
    older = dict(pack_source(made_with))
    del older["split_lists"]
    path = write_pack(dataclasses.replace(pack, source=older), tmp_path / "older.npz")
    assert len(prepare_data(load_config(None, settings + [f"data.pack={path}"]), verbose=False).train) == 4
    with pytest.raises(ConfigError, match="split_lists"):
        prepare_data(load_config(None, settings + [f"data.pack={path}", "data.split_lists=false"]), verbose=False)


def test_data_pack_command_writes_an_lzma_pack_the_trainer_reads(tmp_path, capsys):
    import soundfile as sf

    from lmustream.cli import main
    from lmustream.train.config import load_config
    from lmustream.train.data import prepare_data

    words = tmp_path / "words"
    words.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    for label, f0 in (("low", 300.0), ("high", 2000.0)):
        for speaker in ("s1", "s2", "s3"):
            for take in range(2):
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
                sf.write(words / f"{label}_{speaker}_{take}.wav", wave.astype(np.float32), 16000)
    settings = ["data.kind=pattern", "data.pattern={label}_{speaker}_{index}.wav", "data.frames=20",
                "data.validation_speakers=1", f"data.cache_dir={tmp_path / 'cache'}"]
    out = tmp_path / "words.npz"
    assert main(["data", "pack", "--data", str(words), "--out", str(out), "--compression", "lzma", *settings]) == 0
    assert "wrote" in capsys.readouterr().out
    pack = read_pack(out)
    assert sorted(pack.labels) == ["high", "low"] and sum(pack.counts().values()) == 12
    config = load_config(None, [f"data.path={words}", *settings, f"data.pack={out}"])
    assert len(prepare_data(config, verbose=False).train) == pack.counts()["train"]


def test_eval_scores_a_pack_as_the_model_sees_its_features(tmp_path, capsys):
    import dataclasses
    import json

    from lmustream.audio.features import FbankConfig
    from lmustream.cli import main
    from lmustream.models import LMUFormer, get_config
    from lmustream.models.artifact import ModelArtifact, save_model
    from lmustream.train.evaluate import evaluate_artifact

    torch.manual_seed(0)
    frames = 24
    model = LMUFormer(get_config("lmuformer-tiny", n_classes=3, frames=frames)).eval()
    artifact = ModelArtifact(model, ["b", "a", "c"], FbankConfig())
    rng = np.random.default_rng(0)
    splits = {s: (quantize(rng.uniform(-0.8, 1.2, (n, frames, 128)))[0], np.arange(n) % 2)
              for s, n in (("train", 7), ("validation", 5))}
    fe = dataclasses.asdict(FbankConfig())
    path = write_pack(FeaturePack(["a", "b"], frames, fe, splits, None, ""), tmp_path / "p.npz")

    with torch.no_grad():  # pack label 0 is "a", the model's class 1
        expected = model(torch.from_numpy(dequantize(splits["validation"][0]))).argmax(1)
    truth = torch.tensor([1, 0])[torch.from_numpy(splits["validation"][1])]
    result = evaluate_artifact(artifact, str(path), "validation")
    assert result["n"] == 5 and result["accuracy"] == pytest.approx(float((expected == truth).float().mean()))
    assert evaluate_artifact(artifact, str(path), "all")["n"] == 12

    model_file = tmp_path / "m.safetensors"
    save_model(model_file, artifact)
    assert main(["eval", "--model", str(model_file), "--data", str(path), "--split", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 12
    # A pack fixed its task and splits: options that choose them are refused, as are packs that do not fit.
    assert main(["eval", "--model", str(model_file), "--data", str(path), "--task", "12"]) == 2
    assert "--task cannot apply" in capsys.readouterr().err
    assert main(["eval", "--early-exit", "--model", str(model_file), "--data", str(path)]) == 2
    assert "--early-exit reads a dataset's audio" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="split 'test' is empty"):
        evaluate_artifact(artifact, str(path), "test")
    other = write_pack(FeaturePack(["a", "d"], frames, fe, splits, None, ""), tmp_path / "o.npz")
    with pytest.raises(ConfigError, match="not in the model: d"):
        evaluate_artifact(artifact, str(other), "train")
    short = write_pack(FeaturePack(["a", "b"], 20, fe, {"train": (splits["train"][0][:, :20], splits["train"][1])},
                                   None, ""), tmp_path / "s.npz")
    with pytest.raises(ConfigError, match="20 frames"):
        evaluate_artifact(artifact, str(short), "train")
    other_fe = write_pack(FeaturePack(["a", "b"], frames, {**fe, "preemphasis": 0.0}, splits, None, ""),
                          tmp_path / "f.npz")
    with pytest.raises(ConfigError, match=r"than the model's: preemphasis 0.0 \(not 0.97\)"):
        evaluate_artifact(artifact, str(other_fe), "train")
