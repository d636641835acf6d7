"""Auxiliary classes (data.auxiliary_packs): trained beside the task's, left out of the saved model."""

import dataclasses

import numpy as np
import pytest
import torch

from lmustream.audio.features import FbankConfig
from lmustream.data.pack import FeaturePack, quantize, write_pack
from lmustream.errors import ConfigError
from lmustream.models import LMUFormer
from lmustream.models.artifact import load_model
from lmustream.train.config import load_config
from lmustream.train.data import prepare_data
from lmustream.train.trainer import _initialize_from, train

from tests.train.test_trainer import TINY_MODEL

FRAMES = 20


def pack(path, labels, counts, frontend=None, frames=FRAMES, seed=0):
    """A pack with ``counts[split]`` clips per split, labels cycling; class k's features sit at level k."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in counts.items():
        y = np.arange(n) % len(labels)
        x = rng.uniform(-0.5, 0.5, (n, frames, 128)) + 0.3 * y[:, None, None]
        splits[split] = (quantize(x)[0], y)
    fe = frontend or dataclasses.asdict(FbankConfig())
    return write_pack(FeaturePack(list(labels), frames, fe, splits, None, ""), path)


def overrides(base, aux, out, *extra):
    return TINY_MODEL + [f"data.path={base}", f"data.frames={FRAMES}", f"data.auxiliary_packs=[{aux}]", f"out={out}",
                         "batch_size=8", "epochs=2", "augment.noise_prob=0", "optim.lr=0.01", "device=cpu", *extra]


@pytest.fixture
def packs(tmp_path):
    base = pack(tmp_path / "task.npz", ["x", "y"], {"train": 8, "validation": 4})
    # "x" again: another data set's word of the same name stays its own class, other:x.
    aux = pack(tmp_path / "other.npz", ["x", "z"], {"train": 4, "validation": 2}, seed=1)
    return base, aux


def test_auxiliary_clips_train_as_extra_classes(packs, tmp_path):
    base, aux = packs
    data = prepare_data(load_config(None, overrides(base, aux, tmp_path / "run")), verbose=False)
    assert data.labels == ["x", "y", "other:x", "other:z"]
    assert data.auxiliary_labels == ["other:x", "other:z"] and data.task_labels == ["x", "y"]
    assert len(data.train) == 8 + 6 and len(data.validation) == 4  # every auxiliary clip trains
    assert sorted(data.train.labels[8:].tolist()) == [2, 2, 2, 3, 3, 3]


def test_saved_model_keeps_the_task_classes_and_a_full_one_continues(packs, tmp_path):
    base, aux = packs
    out = tmp_path / "run"
    path = train(load_config(None, overrides(base, aux, out)), progress=False)
    task, full = load_model(path), load_model(out / "model+auxiliary.safetensors")
    assert task.labels == ["x", "y"] and task.model.head.out_features == 2
    assert full.labels == ["x", "y", "other:x", "other:z"] and full.model.head.out_features == 4
    x = torch.randn(3, FRAMES, 128)
    with torch.no_grad():  # the same network: the task model's logits are the full one's first two
        torch.testing.assert_close(task.model.eval()(x), full.model.eval()(x)[:, :2])

    labels, fresh = full.labels, full.labels[2:]
    model = LMUFormer(dataclasses.replace(full.model.config))
    _initialize_from(model, str(out / "model+auxiliary.safetensors"), labels, fresh=fresh)  # a next stage
    torch.testing.assert_close(model.head.weight, full.model.head.weight)
    model = LMUFormer(dataclasses.replace(full.model.config))
    own = model.head.weight.detach().clone()
    _initialize_from(model, str(path), labels, fresh=fresh)  # from the task model: auxiliary rows start afresh
    torch.testing.assert_close(model.head.weight[:2], task.model.head.weight)
    torch.testing.assert_close(model.head.weight[2:], own[2:])
    torch.testing.assert_close(model.embed.state_dict(), task.model.embed.state_dict())
    with pytest.raises(ConfigError, match=r"missing there: \['w'\]"):  # only auxiliary classes may be new
        _initialize_from(LMUFormer(dataclasses.replace(full.model.config, n_classes=5)), str(path),
                         ["x", "y", "w", "other:x", "other:z"], fresh=fresh)


def test_a_teacher_must_know_the_auxiliary_classes_too(packs, tmp_path):
    """A teacher of the task alone cannot give posteriors over the auxiliary classes; the run's
    model+auxiliary.safetensors can, and teaches a student trained beside the same pack."""
    base, aux = packs
    first = tmp_path / "first"
    task_model = train(load_config(None, overrides(base, aux, first)), progress=False)
    with pytest.raises(ConfigError, match=r"only the data has \['other:x', 'other:z'\].*model\+auxiliary"):
        train(load_config(None, overrides(base, aux, tmp_path / "bad", f"distill.teacher={task_model}")),
              progress=False)
    full = first / "model+auxiliary.safetensors"
    student = tmp_path / "student"
    train(load_config(None, overrides(base, aux, student, f"distill.teacher=[{full},{full}]", "distill.weight=1")),
          progress=False)
    assert load_model(student / "model+auxiliary.safetensors").labels == load_model(full).labels


def test_auxiliary_packs_are_checked(packs, tmp_path):
    base, aux = packs
    run = tmp_path / "run"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    twins = [pack(tmp_path / d / "same.npz", ["z"], {"train": 2}) for d in ("a", "b")]
    with pytest.raises(ConfigError, match="two packs are named 'same'"):
        prepare_data(load_config(None, overrides(base, f"{twins[0]},{twins[1]}", run)), verbose=False)
    short = pack(tmp_path / "short.npz", ["z"], {"train": 2}, frames=10)
    with pytest.raises(ConfigError, match="holds 10-frame clips"):
        prepare_data(load_config(None, overrides(base, short, run)), verbose=False)
    other = pack(tmp_path / "otherfe.npz", ["z"], {"train": 2},
                 frontend=dataclasses.asdict(FbankConfig(preemphasis=0.5)))
    with pytest.raises(ConfigError, match=r"preemphasis 0.5 \(not 0.97\)"):
        prepare_data(load_config(None, overrides(base, other, run)), verbose=False)
    folder = tmp_path / "words"
    folder.mkdir()
    with pytest.raises(ConfigError, match="data.auxiliary_packs needs a feature pack"):
        prepare_data(load_config(None, overrides(folder, aux, run)), verbose=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_initialize_from_on_the_gpu_gives_auxiliary_rows_a_fresh_start(packs, tmp_path):
    # The trainer moves the model to its device before init_from: the fresh rows live there, the source's on the CPU.
    base, aux = packs
    out = tmp_path / "run"
    path = train(load_config(None, overrides(base, aux, out)), progress=False)
    full = load_model(out / "model+auxiliary.safetensors")
    model = LMUFormer(dataclasses.replace(full.model.config)).cuda()
    own = model.head.weight.detach().clone()
    _initialize_from(model, str(path), full.labels, fresh=full.labels[2:])
    torch.testing.assert_close(model.head.weight[:2].cpu(), load_model(path).model.head.weight)
    torch.testing.assert_close(model.head.weight[2:], own[2:])
