"""The trainer: a tiny end-to-end run, resume after a kill, DDP on two CPU processes, configs."""

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lmustream.errors import ConfigError
from lmustream.models import LMUFormer
from lmustream.models.artifact import load_model
from lmustream.train.config import load_config
from lmustream.train.trainer import lr_factor, make_optimizer, train, use_fast_cuda_kernels

CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the committed configs/*.yaml
LABELS = ("low", "mid", "high")
TINY_MODEL = ["model=lmuformer-tiny", "model_overrides.dim=16", "model_overrides.memory_size=8",
              "model_overrides.embed_convs=1", "model_overrides.mlp_ratio=1"]


@pytest.fixture(scope="module")
def tone_dataset(tmp_path_factory):
    """Three 'words' (tone pitch classes) x 6 speakers (timbre) x 12 takes, FSDD-style names."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    for li, label in enumerate(LABELS):
        for s in range(6):
            for k in range(12):
                f0 = (300, 800, 2000)[li] * (1 + 0.05 * s) * (1 + 0.02 * rng.standard_normal())
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) * np.hanning(t.size) + 0.01 * rng.standard_normal(t.size)
                sf.write(root / f"{label}_spk{s}_{k}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
    return root


def base_overrides(data, out, cache):
    return TINY_MODEL + [
        f"data.path={data}", "data.kind=pattern", "data.pattern={label}_{speaker}_{index}.wav",
        "data.frames=50", "data.validation_speakers=1", "data.test_speakers=1", f"data.cache_dir={cache}",
        f"out={out}", "batch_size=16", "epochs=3", "augment.noise_prob=0", "optim.lr=0.01",
        "optim.schedule=cosine", "device=cpu"]


def test_end_to_end_on_cpu(tone_dataset, tmp_path, capsys):
    config = load_config(None, base_overrides(tone_dataset, tmp_path / "run", tmp_path / "cache"))
    path = train(config, progress=False)
    art = load_model(path)
    assert art.labels == sorted(LABELS) or set(art.labels) == set(LABELS)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert max(float(r["val_acc"]) for r in rows) > 0.6  # three tones: chance is 1/3
    assert art.extra["recipe"]["epochs"] == 3
    with pytest.raises(Exception, match="--resume"):
        train(config, progress=False)  # refuses to overwrite a run

    # evaluation reproduces the training split from the recipe stored in the model
    import json
    from lmustream.cli import main
    png = tmp_path / "cm.png"
    assert main(["eval", "--model", str(path), "--data", str(tone_dataset), "--split", "test", "--json",
                 "--plot", str(png), "--cache-dir", str(tmp_path / "cache")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 3 * 12  # one held-out test speaker, 3 words x 12 takes
    assert set(result["per_class"]) == set(LABELS) and 0 <= result["accuracy"] <= 1
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["eval", "--model", str(path), "--data", str(tone_dataset), "--split", "test",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "confusion (rows: true, columns: predicted" in capsys.readouterr().out
    # A plot that cannot be written is refused before the evaluation, not after it.
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(path), "--data", str(tone_dataset), "--split", "test",
              "--plot", str(png / "inside-a-file.png"), "--cache-dir", str(tmp_path / "cache")])
    assert "cm.png' is a file, not a folder" in capsys.readouterr().err
    assert main(["eval", "--model", str(path), "--data", str(tone_dataset), "--label-map", "0zero"]) == 2
    assert "'0zero' has no '='" in capsys.readouterr().err


def test_without_a_validation_split_the_last_epoch_is_the_model(tone_dataset, tmp_path, capsys):
    # The final fit of a recipe: every speaker trains, nothing is held out to select on.
    overrides = base_overrides(tone_dataset, tmp_path / "run", tmp_path / "cache") + ["data.validation_speakers=0"]
    path = train(load_config(None, overrides), progress=False)
    assert "no validation split" in capsys.readouterr().out
    art = load_model(path)
    assert art.extra["epoch"] == 3 and art.extra["validation_accuracy"] is None
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    for name, value in art.model.state_dict().items():
        assert torch.equal(value, checkpoint["model"][name]), name
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["val_acc"] for r in rows] == ["", "", ""]


def _run_cli(args, env_extra=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "lmustream", "train", "--no-progress", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_killed_mid_epoch_then_resumed_equals_uninterrupted(tone_dataset, tmp_path):
    cache = tmp_path / "cache"
    common = base_overrides(tone_dataset, None, cache)[:-8] + [
        "batch_size=8", "epochs=3", "augment.noise_prob=0", "optim.lr=0.01", "optim.schedule=cosine",
        "device=cpu", "checkpoint_every=3"]
    whole = _run_cli(common + [f"out={tmp_path / 'whole'}"])
    assert whole.wait(300) == 0, whole.stdout.read()

    killed = _run_cli(common + [f"out={tmp_path / 'killed'}"])
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists()
    killed.send_signal(signal.SIGTERM)
    out = killed.stdout.read()
    assert killed.wait(60) == 130, out
    assert "continue with --resume" in out
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] < 3  # really stopped early

    resumed = _run_cli(common + [f"out={tmp_path / 'killed'}", "--resume"])
    assert resumed.wait(300) == 0, resumed.stdout.read()
    rows = list(csv.DictReader(open(tmp_path / "killed" / "metrics.csv")))
    assert sorted({int(r["epoch"]) for r in rows}) == [1, 2, 3]
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(ckpt, weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # no temporary checkpoint files left behind
    assert not [p for p in (tmp_path / "killed").iterdir() if p.name.endswith(".tmp")]


def test_an_epoch_resumed_mid_way_logs_the_metrics_of_the_whole_epoch(tone_dataset, tmp_path, monkeypatch):
    import lmustream.train.trainer as trainer

    def overrides(out):
        return base_overrides(tone_dataset, out, tmp_path / "cache") + ["batch_size=8", "epochs=2", "checkpoint_every=3"]

    train(load_config(None, overrides(tmp_path / "whole")), progress=False)

    class Stopped(Exception):
        pass

    save, saved = trainer._save_checkpoint, []

    def save_then_stop(path, state):  # the process dies right after the second mid-epoch checkpoint
        save(path, state)
        saved.append(state["step_in_epoch"])
        if len(saved) == 2:
            raise Stopped

    monkeypatch.setattr(trainer, "_save_checkpoint", save_then_stop)
    with pytest.raises(Stopped):
        train(load_config(None, overrides(tmp_path / "stopped")), progress=False)
    monkeypatch.setattr(trainer, "_save_checkpoint", save)
    train(load_config(None, overrides(tmp_path / "stopped")), resume=True, progress=False)

    def logged(run):
        rows = list(csv.DictReader(open(tmp_path / run / "metrics.csv")))
        return [(r["epoch"], r["step"], r["train_loss"], r["train_acc"], r["val_acc"]) for r in rows]

    assert saved == [3, 6] and logged("stopped") == logged("whole")


def test_ddp_two_cpu_processes(tone_dataset, tmp_path):
    overrides = base_overrides(tone_dataset, tmp_path / "ddp", tmp_path / "cache")
    # build the feature cache once so the two processes do not race on it
    train(load_config(None, base_overrides(tone_dataset, tmp_path / "single", tmp_path / "cache")), progress=False)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "lmustream", "train", "--no-progress", *overrides],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")))
    assert len(rows) == 3  # rank 0 alone writes
    single = list(csv.DictReader(open(tmp_path / "single" / "metrics.csv")))
    # same global batch, batch statistics shared across processes: the same training as one process
    assert [r["step"] for r in rows] == [r["step"] for r in single]
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)["model"]
    # A bias right before a batch norm has no effect on the function (the norm subtracts it), so its
    # gradient is rounding noise that Adam turns into steps: it, and the running mean that absorbs
    # it, may differ; every other tensor and the function itself must not.
    gauge = {"blocks.0.lmu.proj.bias", "blocks.0.ffn.fc1.bias", "blocks.0.ffn.fc2.bias"}
    for k in a:
        if k not in gauge and not k.endswith("running_mean") and a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    config = load_model(tmp_path / "single" / "model.safetensors").model.config
    models = []
    for sd in (a, b):
        m = LMUFormer(config).eval()
        m.load_state_dict(sd)
        models.append(m)
    x = torch.randn(4, 50, 128)
    with torch.no_grad():
        # (the running means lag the gauge biases by their momentum average: a small eval difference)
        torch.testing.assert_close(models[0](x), models[1](x), rtol=0, atol=5e-3)


def test_random_prefixes_of_a_process_shard_are_those_of_the_whole_batch():
    # Under DDP each process sees a shard of the global batch; its clips must get the prefixes a single
    # process would draw for them, so the shards' mean loss is the single process's loss.
    from lmustream.train.config import PrefixLossConfig
    from lmustream.train.early_exit_loss import prefix_loss

    cfg = PrefixLossConfig(weight=1.0, mode="random", min_frames=1)
    prefixes = torch.randn(20, 8, 3, generator=torch.Generator().manual_seed(0))
    target = torch.nn.functional.one_hot(torch.arange(8) % 3, 3).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    whole = prefix_loss(prefixes, target, bce, cfg, torch.Generator().manual_seed(5))
    shards = [prefix_loss(prefixes[:, s], target[s], bce, cfg, torch.Generator().manual_seed(5), s, 8)
              for s in (slice(0, 4), slice(4, 8))]
    torch.testing.assert_close((shards[0] + shards[1]) / 2, whole)


def test_paper_schedule():
    config = load_config(None, ["optim.schedule=step"])
    assert lr_factor(config, 0) == 1.0 and lr_factor(config, 9.9) == 1.0
    assert lr_factor(config, 10) == pytest.approx(0.85)
    assert lr_factor(config, 20) == pytest.approx(0.85 ** 2)
    cos = load_config(None, ["optim.schedule=cosine", "epochs=10"])
    assert lr_factor(cos, 0) == pytest.approx(1.0) and lr_factor(cos, 10) == pytest.approx(0.0, abs=1e-9)


def test_optimizer_follows_the_config_and_fuses_only_on_cuda():
    model = torch.nn.Linear(3, 2)
    adam = make_optimizer(model.parameters(), load_config(None, ["optim.lr=0.01"]).optim, torch.device("cpu"))
    assert type(adam) is torch.optim.Adam and adam.defaults["lr"] == 0.01 and not adam.defaults["fused"]
    adamw = make_optimizer(model.parameters(), load_config(None, ["optim.optimizer=adamw"]).optim, torch.device("cpu"))
    assert type(adamw) is torch.optim.AdamW
    before = torch.backends.cudnn.benchmark
    use_fast_cuda_kernels(torch.device("cpu"))  # a CPU run leaves the global cuDNN setting alone
    assert torch.backends.cudnn.benchmark == before


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(b"\x00\xa3\xff" * 10)
    with pytest.raises(ConfigError, match="not a text"):
        load_config(binary)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just words\n")
    with pytest.raises(ConfigError, match="scalar.yaml' must hold a mapping"):
        load_config(scalar)
    with pytest.raises(ConfigError, match="loss"):
        load_config(None, ["optim.loss=hinge"])
    with pytest.raises(ValueError, match="unknown model configuration"):
        load_config(None, ["model=gpt"])


@pytest.mark.parametrize("override, message", [
    ("epochs=abc", "epochs: expected an integer, got 'abc'"),
    ("epochs=2.5", "epochs: expected an integer, got 2.5"),
    ("seed=x", "seed: expected an integer"),
    ("amp=maybe", "amp: expected true or false, got 'maybe'"),
    ("augment.mixup_rate=high", "augment.mixup_rate: expected a number, got 'high'"),
    ("data.frames=[1]", "data.frames: expected an integer"),
    ("augment.snr_db=5", "augment.snr_db: expected a list"),
    ("augment.snr_db=[a, b]", "augment.snr_db: expected a list of 2 numbers"),
    ("augment.lowpass_hz=[3000]", "augment.lowpass_hz: expected a list of 2 numbers"),
])
def test_config_values_of_the_wrong_type_name_their_key(override, message):
    """They used to pass the loader and fail later (or never) with Python's own comparison errors."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_config_values_of_the_right_type_pass():
    config = load_config(None, ["optim.lr=1", "augment.snr_db=[0, 20]", "data.validation_speakers=3",
                                "data.validation_speakers=[a, b]", "data.label_map={0: zero}", "amp=false"])
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)  # an integer is a number
    assert config.augment.snr_db == (0, 20) and config.data.validation_speakers == ["a", "b"]
    assert load_config(None, ["init_from=sc12-lmuformer"]).init_from == "sc12-lmuformer"
    assert load_config(None, ["init_from=sc12-lmuformer", "init_from=null"]).init_from is None  # cleared
    assert load_config(None, ["data.cache_dir=~"]).data.cache_dir == "~"  # a folder name, not null


def test_config_file_values_are_read_as_yaml_writes_them(tmp_path):
    """PyYAML reads 1e-3 (no dot) as text and 12 as a number: both mean what the user wrote."""
    path = tmp_path / "recipe.yaml"
    path.write_text("optim:\n  lr: 1e-3\ndata:\n  task: 12\n")
    config = load_config(path)
    assert config.optim.lr == 0.001 and config.data.task == "12"


def test_committed_configs_parse():
    for path in sorted(CONFIGS.glob("*.yaml")):
        load_config(path)


def test_resume_without_a_checkpoint_fails_before_the_data_is_read(tmp_path):
    from lmustream.errors import LmuStreamError

    config = load_config(None, [f"out={tmp_path / 'run'}", f"data.path={tmp_path / 'no-such-data'}"])
    with pytest.raises(LmuStreamError, match="--resume: no checkpoint at"):  # not "no such folder"
        train(config, resume=True, progress=False)




def test_resuming_with_other_settings_names_them_instead_of_loading(tone_dataset, tmp_path):
    from lmustream.errors import LmuStreamError

    overrides = base_overrides(tone_dataset, tmp_path / "run", tmp_path / "cache") + ["epochs=1"]
    train(load_config(None, overrides), progress=False)
    wider = overrides + ["model_overrides.dim=24", "data.path=/no/such/data"]  # fails before the data is read
    with pytest.raises(LmuStreamError, match=r"was started with other settings \(model_overrides .*'dim': 16.*"
                                             r"'dim': 24.*train into another out="):
        train(load_config(None, wider), resume=True, progress=False)
    two_words = tmp_path / "two_words"  # the same recipe on data with one word fewer: a smaller head
    two_words.mkdir()
    for wav in [*tone_dataset.glob("low_*.wav"), *tone_dataset.glob("mid_*.wav")]:
        (two_words / wav.name).symlink_to(wav)
    with pytest.raises(LmuStreamError, match="holds another model than this run makes.*other labels or data"):
        train(load_config(None, overrides + [f"data.path={two_words}", "epochs=2"]), resume=True, progress=False)

def test_a_damaged_or_foreign_checkpoint_is_named_not_loaded(tmp_path):
    from lmustream.errors import CheckpointError, LmuStreamError
    from lmustream.train.trainer import load_checkpoint

    damaged = tmp_path / "checkpoint.pt"
    damaged.write_bytes(b"PK\x03\x04 cut short")  # e.g. a copy that stopped part way
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*checkpoint.pt.*: not a PyTorch checkpoint"):
        load_checkpoint(damaged)
    foreign = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), foreign)  # a PyTorch file, but not a training checkpoint
    with pytest.raises(LmuStreamError, match="has version None.*not a training checkpoint"):
        load_checkpoint(foreign)

def test_missing_data_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="data.path"):
        train(load_config(None, [f"out={tmp_path}"]), progress=False)



def test_label_map_override_takes_the_command_line_form():
    assert load_config(None, ["data.label_map=0=zero,1=one"]).data.label_map == {"0": "zero", "1": "one"}
    assert load_config(None, ["data.label_map={0: zero}"]).data.label_map == {0: "zero"}
    with pytest.raises(ConfigError, match="'0zero' has no '='"):
        load_config(None, ["data.label_map=0zero"])

def test_float_override_without_a_dot_is_a_number():
    assert load_config(None, ["optim.lr=5e-3"]).optim.lr == 0.005
    with pytest.raises(ConfigError, match="number"):
        load_config(None, ["optim.lr=fast"])


def test_init_from_checks_labels_and_shapes(tone_dataset, tmp_path):
    """init_from copies weights of an identical architecture and refuses anything else."""
    from lmustream.models import get_config
    from lmustream.models.artifact import ModelArtifact, save_model
    from lmustream.train.trainer import _initialize_from

    config = get_config("lmuformer-tiny", n_classes=3, dim=16, memory_size=8, embed_convs=1, mlp_ratio=1)
    source = LMUFormer(config)
    save_model(tmp_path / "src.safetensors", ModelArtifact(source, list(LABELS)))
    target = LMUFormer(config)
    _initialize_from(target, str(tmp_path / "src.safetensors"), LABELS)
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v)
    with pytest.raises(ConfigError, match="labels"):
        _initialize_from(target, str(tmp_path / "src.safetensors"), ("a", "b", "c"))
    # a subset of the source's labels: the head keeps their rows, in the new order
    subset = LMUFormer(get_config("lmuformer-tiny", n_classes=2, dim=16, memory_size=8, embed_convs=1, mlp_ratio=1))
    _initialize_from(subset, str(tmp_path / "src.safetensors"), ("high", "low"))
    assert torch.equal(subset.head.weight, source.head.weight[[2, 0]])
    assert torch.equal(subset.head.bias, source.head.bias[[2, 0]])
    for k, v in source.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(subset.state_dict()[k], v), k
    other = LMUFormer(get_config("lmuformer-tiny", n_classes=3, dim=32, memory_size=8, embed_convs=1, mlp_ratio=1))
    with pytest.raises(ConfigError, match="differ"):
        _initialize_from(other, str(tmp_path / "src.safetensors"), LABELS)


def test_init_new_labels_transfers_the_network_to_a_new_vocabulary(tone_dataset, tmp_path):
    """Labels the source lacks start from fresh head rows; labels it has keep theirs; the rest is copied."""
    from lmustream.models import get_config
    from lmustream.models.artifact import ModelArtifact, save_model
    from lmustream.train.trainer import _initialize_from

    config = get_config("lmuformer-tiny", n_classes=3, dim=16, memory_size=8, embed_convs=1, mlp_ratio=1)
    source = LMUFormer(config)
    save_model(tmp_path / "src.safetensors", ModelArtifact(source, list(LABELS)))
    labels = ("new1", "high", "new2", "new3")
    target = LMUFormer(get_config("lmuformer-tiny", n_classes=4, dim=16, memory_size=8, embed_convs=1, mlp_ratio=1))
    before = target.head.weight.detach().clone()
    _initialize_from(target, str(tmp_path / "src.safetensors"), labels, fresh=labels)
    assert torch.equal(target.head.weight[1], source.head.weight[LABELS.index("high")])
    for i in (0, 2, 3):
        assert torch.equal(target.head.weight[i], before[i])
    for k, v in source.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(target.state_dict()[k], v), k
    with pytest.raises(ConfigError, match="init_new_labels=true"):  # the error names the way out
        _initialize_from(target, str(tmp_path / "src.safetensors"), labels)
    with pytest.raises(ConfigError, match="set init_from, or init_new_labels=false to train from scratch"):
        load_config(None, ["init_new_labels=true"])
    # a config that names both (configs/asc40-lmuformer.yaml) trains from scratch when both are cleared
    recipe = CONFIGS / "asc40-lmuformer.yaml"
    cleared = load_config(recipe, ["init_from=null", "init_new_labels=false"])
    assert cleared.init_from is None and cleared.init_new_labels is False
    assert load_config(None, ["init_from=sc12-lmuformer", "init_new_labels=true"]).init_new_labels is True


def test_distillation_loss_terms():
    """w = 0 is the task loss alone, w = 1 the T^2-scaled KL alone, which is 0 when the posteriors agree."""
    from lmustream.train.config import DistillConfig
    from lmustream.train.distill import blend, kl_to_teacher

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    task = torch.tensor(1.25)
    assert kl_to_teacher(teacher, teacher, 2.0).abs() < 1e-6
    assert kl_to_teacher(student, teacher, 2.0) > 0.01
    assert blend(task, student, teacher, DistillConfig(weight=0.0)) == task
    kl = kl_to_teacher(student, teacher, 3.0)
    assert torch.allclose(blend(task, student, teacher, DistillConfig(weight=1.0, temperature=3.0)), kl)
    p_t, log_p_s = torch.softmax(teacher / 3, 1), torch.log_softmax(student / 3, 1)
    expected = (p_t * (p_t.log() - log_p_s)).sum(1).mean() * 9
    assert torch.allclose(kl, expected, atol=1e-6)


@pytest.mark.parametrize("bad, match", [("distill.weight=1.5", "distill.weight"),
                                        ("distill.temperature=0", "distill.temperature")])
def test_distill_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [bad])


def test_distillation_alone_teaches_the_student(tone_dataset, tmp_path):
    """With w = 1 the labels carry no weight: the student learns the task from the teacher's posteriors
    only. The teacher's file lists its labels in another order, which load_teacher must undo."""
    from lmustream.models.artifact import ModelArtifact, save_model
    from lmustream.train.distill import load_teacher

    teacher_path = train(load_config(None, base_overrides(tone_dataset, tmp_path / "teacher", tmp_path / "cache")
                                     + ["epochs=4"]), progress=False)
    teacher = load_model(teacher_path)
    teacher_acc = float(teacher.extra["validation_accuracy"])
    assert teacher_acc > 0.8
    def with_head_rows(permute):  # a copy of the teacher whose head rows are rearranged by ``permute``
        copy = LMUFormer(teacher.model.config)
        copy.load_state_dict(teacher.model.state_dict())
        with torch.no_grad():
            copy.head.weight.copy_(permute(teacher.model.head.weight))
            copy.head.bias.copy_(permute(teacher.model.head.bias))
        return copy.eval()

    # the same teacher, its classes stored in reverse order
    flipped = with_head_rows(lambda rows: rows.flip(0))
    save_model(tmp_path / "flipped.safetensors", ModelArtifact(flipped, teacher.labels[::-1], teacher.frontend))
    reordered = load_teacher(str(tmp_path / "flipped.safetensors"), teacher.labels, teacher.frontend, torch.device("cpu"))
    x = torch.randn(4, 50, teacher.model.config.n_mels)
    assert torch.allclose(reordered(x), teacher.model(x), atol=1e-5)
    assert not any(p.requires_grad for p in reordered.parameters())
    reordered.train()
    assert not reordered.model.training  # the teacher's batch norms never switch to batch statistics

    student_overrides = base_overrides(tone_dataset, tmp_path / "student", tmp_path / "cache") + [
        "epochs=4", f"distill.teacher={tmp_path / 'flipped.safetensors'}", "distill.weight=1", "seed=1"]
    student = load_model(train(load_config(None, student_overrides), progress=False))
    assert float(student.extra["validation_accuracy"]) > 0.8  # chance: 1/3
    # and the labels really carry no weight: a teacher that names every word wrongly teaches the errors
    liar = with_head_rows(lambda rows: rows.roll(1, 0))
    save_model(tmp_path / "liar.safetensors", ModelArtifact(liar, teacher.labels, teacher.frontend))
    liar_overrides = base_overrides(tone_dataset, tmp_path / "misled", tmp_path / "cache") + [
        "epochs=4", f"distill.teacher={tmp_path / 'liar.safetensors'}", "distill.weight=1", "seed=1"]
    train(load_config(None, liar_overrides), progress=False)
    misled = [float(r["val_acc"]) for r in csv.DictReader(open(tmp_path / "misled" / "metrics.csv"))]
    assert misled[-1] < 0.4  # chance: 1/3; after its last epoch it names the words as the liar does


def test_teacher_must_match_the_data(tmp_path):
    from lmustream.audio.features import FbankConfig
    from lmustream.models import get_config
    from lmustream.models.artifact import ModelArtifact, save_model
    from lmustream.train.distill import load_teacher

    model = LMUFormer(get_config("lmuformer-tiny", n_classes=3, dim=16, memory_size=8, embed_convs=1, mlp_ratio=1))
    save_model(tmp_path / "t.safetensors", ModelArtifact(model, list(LABELS)))
    with pytest.raises(ConfigError, match=r"only the data has \['other'\]"):
        load_teacher(str(tmp_path / "t.safetensors"), ["low", "mid", "other"], FbankConfig(), torch.device("cpu"))
    with pytest.raises(ConfigError, match="other features"):
        load_teacher(str(tmp_path / "t.safetensors"), list(LABELS), FbankConfig(n_mels=64), torch.device("cpu"))


def test_an_ensemble_teacher_averages_its_members_softened_posteriors(tmp_path):
    """softmax(ensemble(x) / T) is the mean of the members' softmax(z / T), each in the data's label order."""
    from lmustream.audio.features import FbankConfig
    from lmustream.models import get_config
    from lmustream.models.artifact import ModelArtifact, save_model
    from lmustream.train.distill import load_teacher

    members, paths = [], []
    for seed, labels in ((0, list(LABELS)), (1, list(LABELS)[::-1])):
        torch.manual_seed(seed)
        model = LMUFormer(get_config("lmuformer-tiny", n_classes=3, dim=16, memory_size=8, embed_convs=1,
                                     mlp_ratio=1)).eval()
        paths.append(str(tmp_path / f"m{seed}.safetensors"))
        save_model(paths[-1], ModelArtifact(model, labels))
        members.append((model, [labels.index(label) for label in LABELS]))
    ensemble = load_teacher(paths, list(LABELS), FbankConfig(), torch.device("cpu"), temperature=2.0)
    x = torch.randn(5, 30, 128)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(x)[:, order] / 2.0, 1) for m, order in members]).mean(0)
    torch.testing.assert_close(torch.softmax(ensemble(x) / 2.0, 1), expected)
    assert not any(p.requires_grad for p in ensemble.parameters())
    with pytest.raises(ConfigError, match="non-empty list"):
        load_config(None, ["distill.teacher=[]"])


@pytest.mark.parametrize("key", ["distill.teacher", "init_from"])
def test_a_missing_model_fails_before_data_preparation(tmp_path, key):
    """The data path does not exist either: the model's error must come first."""
    from lmustream.errors import CheckpointError

    config = load_config(None, TINY_MODEL + [f"data.path={tmp_path / 'no-data'}", f"out={tmp_path / 'run'}",
                                             "device=cpu", f"{key}=no-such-model"])
    with pytest.raises(CheckpointError, match="no-such-model"):
        train(config, progress=False)


def test_weight_average_update_rule():
    from lmustream.train.ema import WeightAverage
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    average = WeightAverage(model, decay=0.9)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):  # one training-mode forward moves the running statistics and the counter
        model(torch.randn(8, 3))
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update(model)
    d = min(0.9, 1 / 10)  # the warm-up's first decay
    now = model.state_dict()
    for name, value in average.model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, d * start[name] + (1 - d) * now[name], msg=name)
        else:
            assert torch.equal(value, now[name]), name  # counters are copied, not averaged
    assert average.updates == 1 and not any(p.requires_grad for p in average.model.parameters())
    for _ in range(1000):
        average.update(model)
    assert average.current_decay() == 0.9
    torch.testing.assert_close(average.model[0].weight, model[0].weight)  # converges to a fixed model


@pytest.mark.parametrize("bad", ["optim.ema_decay=1", "optim.ema_decay=-0.1"])
def test_ema_config_errors(bad):
    with pytest.raises(ConfigError, match="optim.ema_decay"):
        load_config(None, [bad])


def test_training_with_ema_saves_and_resumes_the_average(tone_dataset, tmp_path):
    """The saved model is the average, not the last iterate; an interrupted run resumed equals one
    run straight through (the average is in the checkpoint); resuming a run without one is an error."""
    def run(out, epochs, resume=False, ema="0.9"):
        overrides = base_overrides(tone_dataset, tmp_path / out, tmp_path / "cache") + [
            f"epochs={epochs}", "optim.schedule=step", f"optim.ema_decay={ema}"]
        return train(load_config(None, overrides), resume=resume, progress=False)

    path = run("first", 1)
    state = torch.load(tmp_path / "first" / "checkpoint.pt", weights_only=True)
    saved = load_model(path).model.state_dict()
    averaged, last = state["ema"]["model"], state["model"]
    assert state["ema"]["updates"] == state["global_step"] > 0
    for name in averaged:
        assert torch.equal(saved[name], averaged[name]), name
    assert any(not torch.equal(averaged[k], last[k]) for k in averaged if averaged[k].is_floating_point())

    run("first", 2, resume=True)
    run("straight", 2)
    a = torch.load(tmp_path / "first" / "checkpoint.pt", weights_only=True)["ema"]
    b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["ema"]
    assert a["updates"] == b["updates"]
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=1e-5, atol=1e-6, msg=name)

    run("plain", 1, ema="0")
    with pytest.raises(Exception, match="holds no weight average"):
        run("plain", 2, resume=True)


def test_cpu_bf16_trains_under_autocast_only_where_asked_and_native(tone_dataset, tmp_path, capsys, monkeypatch):
    from lmustream.train import precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert isinstance(precision.native_bfloat16(), bool)  # oneDNN's test, or False where a build lacks it
    monkeypatch.setattr(precision, "native_bfloat16", lambda: False)
    assert not precision.uses_bfloat16(cpu, amp=True, cpu=True)  # emulated bfloat16 would be slower
    assert precision.uses_bfloat16(cuda, amp=True) and not precision.uses_bfloat16(cuda, amp=False, cpu=True)
    monkeypatch.setattr(precision, "native_bfloat16", lambda: True)
    assert precision.uses_bfloat16(cpu, amp=True, cpu=True) and not precision.uses_bfloat16(cpu, amp=True)

    seen = []  # whether each training forward pass ran under autocast
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: seen.append(torch.is_autocast_enabled("cpu"))
        if isinstance(module, LMUFormer) and module.training else None)
    try:
        config = load_config(None, base_overrides(tone_dataset, tmp_path / "run", tmp_path / "cache") + ["cpu_bf16=true"])
        path = train(config, progress=False)
    finally:
        hook.remove()
    assert "training on cpu in bfloat16 autocast" in capsys.readouterr().out
    assert seen and all(seen)
    art = load_model(path)
    assert all(p.dtype == torch.float32 for p in art.model.parameters())  # the model file stays float32
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert max(float(r["val_acc"]) for r in rows) > 0.6  # three tones: chance is 1/3
