"""The `lmustream` command line."""

import json
import subprocess
import sys

import pytest
import torch

import lmustream
from lmustream.cli import main
from lmustream.models import LMUFormer, LMUFormerConfig
from lmustream.models.artifact import ModelArtifact, load_model, save_model
from tests.conftest import require_shared


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lmustream", *args], capture_output=True, text=True)


def test_version_and_help():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"lmustream {lmustream.__version__}"
    out = run_cli("--help")
    assert out.returncode == 0
    for verb in ("info", "selftest", "convert", "export"):
        assert verb in out.stdout


def test_info_reports_kernel(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "C++ kernel" in out and "loaded" in out
    assert "kernel SIMD level" in out


def test_selftest_without_golden_vectors(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LMUSTREAM_SHARED", str(tmp_path))  # nothing there
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("lmustream.cli._default_conformance_dir", lambda: None)
    assert main(["selftest"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "checks passed" in out


def test_selftest_bad_conformance_dir(tmp_path, capsys):
    assert main(["selftest", "--conformance", str(tmp_path)]) == 2
    assert "no lmuformer/ golden vectors" in capsys.readouterr().err


def test_convert_then_export(tmp_path, capsys):
    golden = require_shared("conformance", "lmuformer", "lmuformer_state_dict.pt")
    model_path = tmp_path / "ref.safetensors"
    assert main(["convert", str(golden), "--variant", "lmuformer", "--out", str(model_path)]) == 0
    art = load_model(model_path)
    assert art.labels[0] == "backward" and len(art.labels) == 35
    assert main(["export", "--model", str(model_path), "--onnx", str(tmp_path / "m.onnx"), "--chunk", "2"]) == 0
    assert "look-ahead 5 frames" in capsys.readouterr().out


def onnx_meta(path) -> dict:
    import onnx

    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["lmustream"])


def test_export_audio_in_and_errors(tmp_path, capsys):
    torch.manual_seed(0)
    model = LMUFormer(LMUFormerConfig(dim=16, memory_size=8, n_classes=2, embed_convs=1)).eval()
    save_model(tmp_path / "m.safetensors", ModelArtifact(model, ["a", "b"]))
    assert main(["export", "--model", str(tmp_path / "m.safetensors"), "--onnx", str(tmp_path / "a.onnx"),
                 "--audio-in"]) == 0
    assert (tmp_path / "a.onnx").stat().st_size > 0
    assert onnx_meta(tmp_path / "a.onnx")["posterior"] == "softmax"  # no recipe: cross-entropy is assumed
    # The posterior follows the loss that last trained the logits: a BCE recipe, then a fine-tuning.
    for extra, posterior in (({"recipe": {"optim": {"loss": "bce"}}}, "sigmoid"),
                             ({"recipe": {"optim": {"loss": "bce"}}, "finetune": {"loss": "ce"}}, "softmax")):
        save_model(tmp_path / "t.safetensors", ModelArtifact(model, ["a", "b"], extra=extra))
        assert main(["export", "--model", str(tmp_path / "t.safetensors"), "--onnx", str(tmp_path / "t.onnx")]) == 0
        assert onnx_meta(tmp_path / "t.onnx")["posterior"] == posterior
        assert f"{posterior} posteriors" in capsys.readouterr().out
    assert main(["export", "--model", "no-such-model", "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "no shipped model of that name" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "is a folder; pass a model file" in capsys.readouterr().err
    # every file a verb writes is checked before any work: a folder there is an argument error
    for argv in (["export", "--model", "m", "--onnx", str(tmp_path)],
                 ["calibrate", "--model", "m", "--negatives", "n.wav", "--out", str(tmp_path)],
                 ["finetune", "--model", "m", "--new-words", "d", "--out", str(tmp_path)],
                 ["eval", "--model", "m", "--data", "d", "--plot", str(tmp_path)]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "is a folder; name the file to write in it" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--model", "m", "--onnx", "x.onnx", "--chunk", "0"])
    assert "positive integer" in capsys.readouterr().err
    # an output folder that does not exist yet is made; one that cannot exist is an error, not a traceback
    assert main(["export", "--model", str(tmp_path / "m.safetensors"), "--onnx", str(tmp_path / "new/dir/m.onnx")]) == 0
    assert (tmp_path / "new/dir/m.onnx").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit):  # a.onnx is a file: refused before the model is even read
        main(["export", "--model", str(tmp_path / "m.safetensors"), "--onnx", str(tmp_path / "a.onnx" / "m.onnx")])
    err = capsys.readouterr().err
    assert "a.onnx' is a file, not a folder" in err and "Traceback" not in err


def test_command_line_warnings_read_as_plain_lines(tmp_path, capsys, monkeypatch):
    import warnings

    def warn_and_succeed(args):
        warnings.warn("skipped 1 unusable audio file(s)", UserWarning)
        return 0

    monkeypatch.setattr("lmustream.cli._cmd_info", warn_and_succeed)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = warnings.showwarning
        assert main(["info"]) == 0
        assert warnings.showwarning is before  # a program calling main() keeps its own format
    assert capsys.readouterr().err == "warning: skipped 1 unusable audio file(s)\n"


def test_an_os_error_names_the_user_s_file_not_a_temporary_one(monkeypatch, capsys):
    def replace_fails(args):  # what os.replace(tmp, target) raises when the target is a folder
        raise IsADirectoryError(21, "Is a directory", "/out/.cal.json.x1.tmp", None, "/out/cal.json")

    monkeypatch.setattr("lmustream.cli._cmd_info", replace_fails)
    assert main(["info"]) == 2
    assert capsys.readouterr().err == "error: Is a directory: '/out/cal.json'\n"
