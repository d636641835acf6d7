"""Every training setting is checked before any data is read, and the command line says what is wrong in one line."""

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from lmustream.cli import build_parser, main
from lmustream.errors import ConfigError
from lmustream.train import config as config_module
from lmustream.train.config import TrainConfig, load_config

PATTERN = "{label}_{speaker}_{index}.wav"
TINY = ["model=lmuformer-tiny", "model_overrides.dim=8", "model_overrides.memory_size=4",
        "model_overrides.embed_convs=1", "model_overrides.mlp_ratio=1", "data.kind=pattern",
        f"data.pattern={PATTERN}", "data.frames=24", "data.validation_speakers=1", "data.test_fraction=0",
        "batch_size=4", "epochs=1", "augment.noise_prob=0", "device=cpu"]


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Two tone 'words' x 3 speakers x 2 takes of 0.25 s, FSDD-style names."""
    root = tmp_path_factory.mktemp("tones")
    t = np.arange(4000) / 16000
    for label, f0 in (("low", 300), ("high", 2000)):
        for s in range(3):
            for k in range(2):
                wave = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.05 * s + 0.01 * k) * t) * np.hanning(t.size)
                sf.write(root / f"{label}_spk{s}_{k}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
    return root


@pytest.mark.parametrize("bad, message", [
    ("optim.lr=nan", "optim.lr must be > 0, got nan"),
    ("optim.lr=-1", "optim.lr must be > 0, got -1.0"),
    ("optim.weight_decay=-1", "optim.weight_decay must be >= 0"),
    ("augment.mixup_alpha=-1", "augment.mixup_alpha must be > 0"),
    ("checkpoint_every=-1", "checkpoint_every must be >= 0"),
    ("optim.grad_clip=nan", "optim.grad_clip must be >= 0, got nan"),
    ("optim.label_smoothing=2", "optim.label_smoothing must be in [0, 1]"),
    ("optim.gamma=-1", "optim.gamma must be in (0, 1]"),
    ("optim.warmup_epochs=-2", "optim.warmup_epochs must be >= 0"),
    ("optim.step_every=0", "optim.step_every must be >= 1"),
    ("augment.freq_mask=-3", "augment.freq_mask must be >= 0"),
    ("augment.gain_db=nan", "augment.gain_db must be >= 0, got nan"),
    ("augment.snr_db=[25,0]", "augment.snr_db must be a pair [low, high] with low <= high"),
    ("augment.snr_db=[0,.inf]", "augment.snr_db must be a pair"),
    ("augment.lowpass_hz=[0,4000]", "augment.lowpass_hz must be a pair"),
    ("seed=-1", "seed must be in [0, 4294967295]"),
    ("data.validation_speakers=-1", "data.validation_speakers must be >= 0"),
    ("prefix_loss.weight=.inf", "prefix_loss.weight must be >= 0, got inf"),
    ("distill.temperature=.inf", "distill.temperature must be > 0, got inf"),
    ("data.class_caps={a: nanx}", "data.class_caps: 'a'"),
    ("device=foo", "device must be auto, cpu, cuda or cuda:N"),
])
def test_a_value_out_of_range_names_its_key_and_range(bad, message):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [bad])
    assert message in str(caught.value)


def test_held_out_fractions_must_leave_speakers_for_train():
    with pytest.raises(ConfigError, match=r"data.validation_fraction \+ data.test_fraction must be < 1"):
        load_config(None, ["data.validation_fraction=0.6", "data.test_fraction=0.5"])


def test_data_frames_is_checked_before_what_depends_on_it():
    with pytest.raises(ConfigError, match="^data.frames must be >= 1, got 0$"):
        load_config(None, ["data.frames=0"])


def test_every_numeric_setting_has_a_range():
    """A numeric field added to a config section must get its range in config._RANGES (augment's fields: in
    _AUGMENT_RANGES or _AUGMENT_PAIRS)."""
    checked_elsewhere = {"prefix_loss.min_frames", "optim.ema_decay"}  # see the comment above _RANGES
    defaults = TrainConfig()
    sections = {"": defaults, **{f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)
                                 if dataclasses.is_dataclass(getattr(defaults, f.name))}}
    numeric = {f"{prefix}.{f.name}".lstrip(".") for prefix, section in sections.items()
               for f in dataclasses.fields(section)
               if {"int", "float", "tuple"} & set(f.type.replace(" ", "").split("|"))}
    augment = {f"augment.{name}" for name in {**config_module._AUGMENT_RANGES, **config_module._AUGMENT_PAIRS}}
    assert numeric - checked_elsewhere == set(config_module._RANGES) | augment


def test_the_committed_recipes_and_the_defaults_pass():
    from pathlib import Path

    load_config(None, [])
    for recipe in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")):
        load_config(recipe)


def test_a_device_this_machine_lacks_fails_before_the_data(monkeypatch, tmp_path):
    from lmustream.train.trainer import train

    missing = [f"data.path={tmp_path / 'no-such-data'}", f"out={tmp_path / 'run'}"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device=cuda: CUDA is asked for, but"):
        train(load_config(None, missing + ["device=cuda"]), progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="device=cuda:3: this machine has 1 cuda device"):
        train(load_config(None, missing + ["device=cuda:3"]), progress=False)
    assert not (tmp_path / "run").exists()
    # The config alone stays valid: data pack reads it on machines without the training GPU.
    assert load_config(None, ["device=cuda:3"]).device == "cuda:3"


def test_the_command_line_prints_one_error_line(capsys):
    assert main(["train", "optim.lr=nan"]) == 2
    assert capsys.readouterr().err == "error: optim.lr must be > 0, got nan\n"


def test_overrides_are_taken_anywhere_on_the_line(capsys, tmp_path):
    # The late override is applied (its error shows), not refused as an unrecognized argument.
    assert main(["train", "--out", str(tmp_path / "r"), "epochs=1", "--data", str(tmp_path), "optim.lr=-1"]) == 2
    assert capsys.readouterr().err == "error: optim.lr must be > 0, got -1.0\n"
    assert main(["data", "pack", "--out", str(tmp_path / "p.npz"), "epochs=1", "--data", str(tmp_path),
                 "augment.gain_db=-1"]) == 2
    assert capsys.readouterr().err == "error: augment.gain_db must be >= 0, got -1.0\n"
    args = build_parser().parse_known_args(["train", "a=1", "--out", "r", "b=2", "--resume", "c=3"])[0]
    assert args.overrides == ["a=1"]  # argparse alone: what main adds the rest to
    for argv in (["train", "--bogus", "a=1"], ["info", "stray"], ["eval", "--model", "m", "--data", "d", "x=1"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "unrecognized arguments" in capsys.readouterr().err


def test_no_progress_draws_no_bar(tones, tmp_path, capsys):
    overrides = TINY + [f"out={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}"]
    assert main(["train", "--no-progress", "--data", str(tones)] + overrides) == 0
    err = capsys.readouterr().err
    assert "features (" not in err and "epoch 1" not in err and "it/s" not in err


def test_silence_dir_on_other_data_is_named_as_set(tones, tmp_path):
    from lmustream.data.datasets import open_dataset
    from lmustream.train.data import prepare_data

    config = load_config(None, TINY + [f"data.path={tones}", f"data.silence_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="^data.silence_dir applies to Speech Commands data only"):
        prepare_data(config, verbose=False)
    with pytest.raises(ConfigError, match="^split_lists applies to Speech Commands only, not to kind 'pattern'$"):
        open_dataset(tones, kind="pattern", pattern=PATTERN, split_lists=True)


def test_a_pack_alone_is_enough_to_train(tones, tmp_path):
    from lmustream.data.pack import pack_from_training_data, write_pack
    from lmustream.train.data import pack_source, prepare_data

    made_with = load_config(None, TINY + [f"data.path={tones}", f"data.cache_dir={tmp_path / 'cache'}"])
    pack, _ = pack_from_training_data(prepare_data(made_with, verbose=False), made_with.data.frames)
    path = write_pack(dataclasses.replace(pack, source=pack_source(made_with)), tmp_path / "p.npz")
    data = prepare_data(load_config(None, TINY + [f"data.pack={path}"]), verbose=False)
    assert len(data.train) == 8 and len(data.validation) == 4
    # Settings that make other data than the pack's are named with both values.
    with pytest.raises(ConfigError, match="validation_speakers 1 there, 2 here"):
        prepare_data(load_config(None, TINY + [f"data.pack={path}", "data.validation_speakers=2"]), verbose=False)
    unknown = write_pack(dataclasses.replace(pack, source=None), tmp_path / "unknown.npz")
    with pytest.raises(ConfigError, match="does not record the data settings"):
        prepare_data(load_config(None, TINY + [f"data.pack={unknown}"]), verbose=False)


def test_help_says_which_model_is_saved_without_validation(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the best model on the validation split, or with none" in text and "the model after the last epoch" in text
