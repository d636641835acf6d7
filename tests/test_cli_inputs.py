"""Bad input to the command line: each is one clear error, found before the work it would spoil."""

import numpy as np
import pytest
import soundfile as sf
import torch

from lmustream.cli import main
from lmustream.errors import CheckpointError, ConfigError
from lmustream.models.artifact import load_model
from lmustream.paths import check_writable
from tests.detect.fakes import tiny_model_file


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.safetensors"
    tiny_model_file(path, labels=["yes", "no"])
    return path


def test_files_that_are_not_model_files_say_what_they_are(tmp_path, capsys):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(64))
    text = tmp_path / "notes.safetensors"
    text.write_text("not a model\n")
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "optimizer": {}, "epoch": 1}, checkpoint)
    for path, said in ((onnx, "an ONNX graph"), (text, "a text file"), (checkpoint, "a PyTorch checkpoint")):
        with pytest.raises(CheckpointError, match=f"is not an lmustream model file: {said}"):
            load_model(path)
        assert main(["stream", "--model", str(path), str(path)]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err


def test_convert_names_what_it_was_given_instead_of_a_reference_checkpoint(tmp_path, model_file, capsys):
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "optimizer": {}, "epoch": 3}, checkpoint)
    out = str(tmp_path / "c.safetensors")
    for source, said in ((tmp_path, "is a folder"), (model_file, "needs no converting"),
                         (checkpoint, "an lmustream training checkpoint")):
        assert main(["convert", str(source), "--variant", "lmuformer", "--out", out]) == 2
        assert said in capsys.readouterr().err
    assert main(["convert", str(checkpoint), "--variant", "lmuformer", "--out", str(tmp_path / "c.onnx")]) == 2
    assert "a model file is a .safetensors file" in capsys.readouterr().err
    assert main(["convert", str(checkpoint), "--variant", "lmuformer", "--out", out, "--labels", "a,b,"]) == 2
    assert "an empty label" in capsys.readouterr().err


def test_a_reference_checkpoint_of_the_other_variant_is_named_briefly(tmp_path):
    from lmustream.models import LMUFormer, LMUFormerConfig, load_reference_checkpoint

    ours = LMUFormer(LMUFormerConfig(dim=16, memory_size=8, mlp_ratio=2, embed_convs=2, n_classes=3, n_mels=20))
    sd = {f"x{i}": torch.zeros(1) for i in range(40)}  # nothing the reference code names
    with pytest.raises(CheckpointError) as caught:
        load_reference_checkpoint(sd, "lmuformer", config=ours.config)
    message = str(caught.value)
    assert "... and" in message and "--variant spiking_lmuformer?" in message
    assert len(message.splitlines()) <= 5


def test_outputs_that_cannot_be_written_are_refused_first(tmp_path, model_file, capsys):
    blocker = tmp_path / "a.txt"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_writable(blocker / "sub" / "m.safetensors")
    with pytest.raises(IsADirectoryError):
        check_writable(tmp_path)
    assert check_writable(tmp_path / "new" / "dir" / "m.onnx") == tmp_path / "new" / "dir" / "m.onnx"
    for argv in (["export", "--model", str(model_file), "--onnx", str(blocker / "m.onnx")],
                 ["data", "pack", "--data", "d", "--out", str(blocker / "p.npz")]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "is a file, not a folder" in capsys.readouterr().err


def test_plain_eval_refuses_options_that_only_early_exit_reads(tmp_path, model_file, capsys):
    for extra, named in ((["--csv", str(tmp_path / "x.csv")], "--csv"), (["--max-drop", "0.01"], "--max-drop"),
                         (["--tune-split", "validation"], "--tune-split"), (["--step-check", "2"], "--step-check")):
        assert main(["eval", "--model", str(model_file), "--data", str(tmp_path), *extra]) == 2
        assert f"{named} applies only with --early-exit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(model_file), "--data", str(tmp_path), "--plot", str(tmp_path / "cm.txt")])
    assert "the suffix names the image format" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--early-exit", "--model", str(model_file), "--data", str(tmp_path), "--step-check", "-1"])
    assert "integer >= 0" in capsys.readouterr().err


def test_data_without_a_tool_lists_the_tools(capsys):
    assert main(["data"]) == 2
    err = capsys.readouterr().err
    assert "synth" in err and "pack" in err and "windows" in err


def test_data_pack_checks_its_inputs_before_computing_features(tmp_path, capsys):
    # Each would otherwise fail only after every clip's features were computed.
    assert main(["data", "pack", "--data", str(tmp_path), "--out", str(tmp_path / "p.bin")]) == 2
    assert "a feature pack is a .npz file" in capsys.readouterr().err
    (tmp_path / "t.txt").write_text("x")
    assert main(["data", "pack", "--data", str(tmp_path), "--out", str(tmp_path / "p.npz"),
                 "--add", str(tmp_path / "t.txt")]) == 2
    assert "not a feature pack" in capsys.readouterr().err


def test_export_refuses_a_chunk_that_would_unroll_a_huge_graph(tmp_path, model_file, capsys):
    assert main(["export", "--model", str(model_file), "--onnx", str(tmp_path / "m.onnx"), "--chunk", "129"]) == 2
    assert "chunk must be an integer from 1 to 128 frames" in capsys.readouterr().err


def test_noise_paths_must_name_recordings(tmp_path):
    from lmustream.train.data import noise_recordings

    sf.write(tmp_path / "hum.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "empty").mkdir()
    assert noise_recordings([tmp_path, tmp_path / "hum.wav"]) == [tmp_path / "hum.wav"] * 2
    with pytest.raises(ConfigError, match="no such folder"):
        noise_recordings([tmp_path / "missing"])
    with pytest.raises(ConfigError, match="holds no .wav/.flac/.ogg recordings"):
        noise_recordings([tmp_path / "empty"])


def test_finetune_checks_its_folders_and_noise_before_training(tmp_path, model_file, capsys):
    words = tmp_path / "words" / "maybe"
    words.mkdir(parents=True)
    base = ["finetune", "--model", str(model_file), "--new-words", str(words.parent), "--no-progress",
            "--out", str(tmp_path / "out.safetensors")]
    assert main(base + ["--eval-new", str(tmp_path / "missing")]) == 2
    assert "--eval-new" in capsys.readouterr().err
    assert main(base + ["--noise", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


def test_an_unknown_voice_names_close_matches_not_every_voice():
    from lmustream.data.synth.engines import MAX_VOICES_NAMED, VoiceSelection

    class Voice:
        def __init__(self, id):
            self.id = id

    class ManyVoices:
        name = "many"
        variants_per_voice = 1

        def voices(self):
            return [Voice(f"en-us-v{i}") for i in range(300)] + [Voice("en-us-klatt")]

    with pytest.raises(ConfigError, match="close names: en-us-klatt") as caught:
        VoiceSelection(ManyVoices(), ["en-us-klat"])
    assert "en-us-v299" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"\(301 in all\)") as caught:
        VoiceSelection(ManyVoices(), ["zzzzzz"])
    assert str(caught.value).count("en-us-v") == MAX_VOICES_NAMED
