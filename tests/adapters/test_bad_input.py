"""Bad input to the adapter API and FinetuneConfig: refused with lmustream's errors, the model left as it was."""

import json
import math
from dataclasses import FrozenInstanceError, replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from lmustream.adapters import (AFLoRAConfig, LoRAConfig, VeRAConfig, add_adapter, adapter_layers, grow_head,
                                load_adapter, make_config, merge, print_trainable_parameters, save_adapter)
from lmustream.adapters.finetune import FinetuneConfig, finetune
from lmustream.errors import CheckpointError, ConfigError
from lmustream.models import LMUFormer, get_config
from lmustream.selftest import randomize_batchnorm
from tests.adapters.helpers import perturb

NAN, INF = float("nan"), float("inf")


def tiny(seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(LMUFormer(get_config("lmuformer-tiny", n_classes=6)), seed).eval()


def x_batch():
    return torch.randn(3, 40, 128, generator=torch.Generator().manual_seed(5))


def snapshot(model):
    return {"config": getattr(model, "config", None), "state": {k: v.clone() for k, v in model.state_dict().items()},
            "grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "modules": {n: m for n, m in model.named_modules()}}


def assert_unchanged(model, before):
    assert getattr(model, "config", None) == before["config"]
    assert not hasattr(model, "adapter_config") and not adapter_layers(model)
    state = model.state_dict()
    assert list(state) == list(before["state"])
    assert all(torch.equal(state[k], v) for k, v in before["state"].items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before["grad"]
    now = dict(model.named_modules())
    assert list(now) == list(before["modules"]) and all(now[n] is m for n, m in before["modules"].items())


# ------------------------------------------------------------------------------ load_adapter


@pytest.fixture
def adapter_file(tmp_path):
    """A LoRA adapter that grew the 6-class head to 8, with its trained model."""
    model = tiny()
    grow_head(model, 8)
    perturb(add_adapter(model, LoRAConfig(rank=2)), head=True)
    path = tmp_path / "good.adapter.safetensors"
    save_adapter(path, model, [f"w{i}" for i in range(8)])
    return path, model


def rewrite(src, dst, tensors=None, header=None):
    """A copy of adapter file ``src`` with its tensors and / or its JSON header edited in place."""
    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["lmustream"])
    state = load_file(str(src))
    if tensors:
        tensors(state)
    if header:
        header(meta)
    save_file(state, str(dst), metadata={"lmustream": json.dumps(meta)})
    return dst


def first(state, suffix):
    return next(k for k in sorted(state) if k.endswith(suffix))


def _set(state, suffix, value):
    state[first(state, suffix)].view(-1)[0] = value


CORRUPTIONS = {
    "missing tensor": (lambda s: s.pop(first(s, ".A")), None, "missing"),
    "unexpected tensor": (lambda s: s.update({"blocks.7.extra": torch.zeros(2)}), None, "unexpected"),
    "mis-shaped tensor": (lambda s: s.update({first(s, ".B"): torch.zeros(3, 3)}), None, "mis-shaped"),
    "integer tensor": (lambda s: s.update({first(s, ".A"): torch.zeros_like(s[first(s, ".A")], dtype=torch.int32)}),
                       None, "dtype"),
    "NaN tensor": (lambda s: _set(s, ".A", NAN), None, "NaN or infinity"),
    "infinite tensor": (lambda s: _set(s, "head.weight", INF), None, "NaN or infinity"),
    "too few labels": (None, lambda h: h.update(labels=h["labels"][:7]), "labels"),
    "labels not names": (None, lambda h: h.update(labels=list(range(8))), "labels"),
    "duplicate labels": (None, lambda h: h.update(labels=["w0"] * 8), "labels"),
    "class count as text": (None, lambda h: h["model_config"].update(n_classes="8"), "n_classes"),
    "fewer classes than the base": (None, lambda h: (h["model_config"].update(n_classes=4), h.update(labels=None)),
                                    "4 classes"),
    "no such target": (None, lambda h: h["adapter"].update(target_modules=["nosuch"]), "nosuch"),
    "no such saved module": (None, lambda h: h["adapter"].update(modules_to_save=["nosuch"]), "nosuch"),
    "rank 0": (None, lambda h: h["adapter"].update(rank=0), "rank"),
    "alpha NaN": (None, lambda h: h["adapter"].update(alpha=NAN), "alpha"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_bad_adapter_file_leaves_the_model_as_it_was(tmp_path, adapter_file, corruption):
    good, trained = adapter_file
    tensors, header, message = CORRUPTIONS[corruption]
    bad = rewrite(good, tmp_path / "bad.adapter.safetensors", tensors, header)
    base = tiny()
    before = snapshot(base)
    with pytest.raises(CheckpointError, match=message) as error:
        load_adapter(base, bad)
    assert "bad.adapter.safetensors" in str(error.value) and "\n" not in str(error.value)
    assert_unchanged(base, before)
    load_adapter(base, good)  # the right file still loads onto the same model
    assert torch.allclose(base(x_batch()), trained(x_batch()), atol=1e-6)


def test_load_onto_a_model_with_an_adapter_changes_nothing(adapter_file):
    good, _ = adapter_file
    model = add_adapter(tiny(), LoRAConfig(rank=2))
    with pytest.raises(ConfigError, match="already has an adapter"):
        load_adapter(model, good)
    assert model.head.out_features == 6 and model.config.n_classes == 6  # not grown to the file's 8


def test_load_adapter_needs_a_model_with_a_config(adapter_file):
    good, _ = adapter_file
    for model in (nn.Linear(3, 3), None):
        with pytest.raises(ConfigError, match="load_adapter"):
            load_adapter(model, good)


# ------------------------------------------------------------------------------ add_adapter


@pytest.mark.parametrize("config", [LoRAConfig(target_modules=["nosuch"]), LoRAConfig(modules_to_save=["nosuch"]),
                                    AFLoRAConfig(exclude_modules=["*"]), make_config("head", modules_to_save=["x"]),
                                    make_config("full", modules_to_save=["x"])], ids=repr)
def test_a_failed_add_adapter_leaves_the_model_as_it_was(config):
    model = tiny()
    model.embed.requires_grad_(False)  # a mix of frozen and trainable parameters, to be kept as it is
    before = snapshot(model)
    with pytest.raises(ConfigError):
        add_adapter(model, config)
    assert_unchanged(model, before)
    add_adapter(model, LoRAConfig(rank=2))  # a retry with a good config works


def test_a_layer_that_cannot_be_adapted_rolls_back_the_layers_before_it():
    model = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(4, 4, 3, stride=2))
    before = snapshot(model)
    with pytest.raises(ConfigError, match="stride 1"):
        add_adapter(model, LoRAConfig(modules_to_save=[]))  # the Linear is adapted before the Conv1d fails
    assert_unchanged(model, before)


def test_add_adapter_on_a_bare_layer_is_a_clear_error():
    layer = nn.Linear(3, 3)
    with pytest.raises(ConfigError, match="no Linear or Conv1d layer inside"):
        add_adapter(layer, LoRAConfig(modules_to_save=[]))
    assert not hasattr(layer, "adapter_config") and layer.weight.requires_grad
    wrapped = nn.Sequential(nn.Linear(3, 3))  # a layer inside a module is adapted
    x = torch.randn(2, 3)
    reference = wrapped(x)
    add_adapter(wrapped, LoRAConfig(rank=2, modules_to_save=[]))
    assert list(adapter_layers(wrapped)) == ["0"] and torch.allclose(wrapped(x), reference)


def test_the_api_refuses_what_is_not_a_model(capsys):
    for call in (lambda: add_adapter(None, LoRAConfig()), lambda: merge(None)):
        with pytest.raises(ConfigError, match="nn.Module"):
            call()
    print_trainable_parameters(nn.ReLU())  # no parameters: nothing to divide by
    assert capsys.readouterr().out.strip() == "trainable params: 0 || all params: 0 || trainable%: 0.0000"


# ------------------------------------------------------------------------------ adapter configs


@pytest.mark.parametrize("config, field, value", [
    (LoRAConfig(rank=4), "alpha", NAN), (LoRAConfig(rank=4), "rank", 0), (AFLoRAConfig(), "beta1", 1.5),
    (VeRAConfig(), "lambda_d_init", INF), (AFLoRAConfig(), "target_modules", 5)])
def test_a_config_cannot_be_changed_past_its_checks(config, field, value):
    with pytest.raises(FrozenInstanceError):
        setattr(config, field, value)
    with pytest.raises(ConfigError, match=field):
        replace(config, **{field: value})  # the way to a changed config: a new one, checked
    model = tiny()
    add_adapter(model, config)
    assert not any(torch.isnan(p).any() for p in model.parameters())


BAD_ADAPTER_FIELDS = [
    (LoRAConfig, "alpha", [NAN, INF, -INF, 0, -1, True, "1", 1e300]),  # 1e300: inf in float32, 0 * inf = NaN
    (LoRAConfig, "rank", [0, -1, 1.5, True, "4", None]),
    (AFLoRAConfig, "rank", [0, -2]),
    (AFLoRAConfig, "delta_t", [0, 2.5]),
    (AFLoRAConfig, "beta1", [NAN, -0.1, 1.0, True, "0.5"]),
    (AFLoRAConfig, "beta2", [NAN, INF, 1]),
    (AFLoRAConfig, "initial_warmup", [NAN, INF, -1, "1"]),
    (AFLoRAConfig, "final_warmup", [NAN, -0.5]),
    (AFLoRAConfig, "initial_threshold", ["1", NAN, 1.5, -0.1, None]),
    (AFLoRAConfig, "final_threshold", ["0", NAN, -0.1, 1.1]),
    (AFLoRAConfig, "lambda_d_init", [NAN, INF, 0, True, "0.1", 1e39]),
    (VeRAConfig, "rank", [0, -64]),
    (VeRAConfig, "lambda_d_init", [NAN, -INF, 0.0, None, -1e300]),
    (LoRAConfig, "seed", [1.5, "0", None]),
]


@pytest.mark.parametrize("cls, field, value", [(c, f, v) for c, f, values in BAD_ADAPTER_FIELDS for v in values],
                         ids=str)
def test_adapter_configs_refuse_out_of_range_values(cls, field, value):
    with pytest.raises(ConfigError, match=f"{cls.__name__}.{field}") as error:
        cls(**{field: value})
    assert "\n" not in str(error.value)


def test_adapter_configs_accept_their_ranges_ends():
    LoRAConfig(rank=1, alpha=0.5)
    AFLoRAConfig(beta1=0, beta2=0.99, initial_warmup=0, final_warmup=0, initial_threshold=1, final_threshold=1)
    AFLoRAConfig(initial_threshold=0.0, final_threshold=0, lambda_d_init=-0.1)
    VeRAConfig(rank=1, lambda_d_init=2)
    with pytest.raises(ConfigError, match="final <= initial"):
        AFLoRAConfig(initial_threshold=0.2, final_threshold=0.5)
    for config in (LoRAConfig(rank=3, alpha=6), AFLoRAConfig(rank=2), VeRAConfig(rank=8)):
        assert type(config).from_dict(config.to_dict()) == config


# ------------------------------------------------------------------------------ FinetuneConfig


BAD_FINETUNE_FIELDS = {
    "grad_clip": [NAN, INF, -1, "1", None],
    "distill_temperature": [NAN, INF, 0, -1],
    "distill_weight": [NAN, INF, -0.5],
    "label_smoothing": [NAN, 2, -0.1, 1.5],
    "warmup": [NAN, -1, 1.5, INF],
    "weight_decay": [NAN, INF, -1],
    "replay_weight": [NAN, -5, INF],
    "threads": [0, -1, 1.5, True, "2"],
    "rank": [0, -1, 2.5, True],
    "lr": [NAN, INF, 0, -1e-3, "1e-3"],
    "vector_lr_scale": [NAN, INF, 0, -1],
    "epochs": [0, -1, 2.5, True, NAN],
    "batch_size": [0, -4, 1.5],
    "replay_per_class": [-1, 2.5, None],
    "balance": [NAN, -0.1, 1.5, "1"],
    "channel_match": [NAN, -0.1, 2],
    "new_word_bias": [NAN, INF, "1"],
    "aflora_initial_warmup": [NAN, -0.1, 1.0],
    "aflora_final_warmup": [NAN, -0.1, 1.0],
    "aflora_delta_t": [0, -2, 1.5],
    "seed": [-1, 1.5, "0", 2 ** 32],
}


@pytest.mark.parametrize("field, value", [(f, v) for f, values in BAD_FINETUNE_FIELDS.items() for v in values],
                         ids=str)
def test_finetune_config_refuses_out_of_range_values(field, value):
    with pytest.raises(ConfigError, match=field) as error:
        FinetuneConfig(**{field: value})
    assert "\n" not in str(error.value)


def test_finetune_config_refuses_inconsistent_values():
    with pytest.raises(ConfigError, match="aflora_initial_warmup.*aflora_final_warmup"):
        FinetuneConfig(aflora_initial_warmup=0.6, aflora_final_warmup=0.4)  # no step left for the cubic phase
    with pytest.raises(ConfigError, match="rank"):
        FinetuneConfig(method="head", rank=4)
    with pytest.raises(ConfigError, match="augment"):
        FinetuneConfig(augment={"noise_prob": 0.5})
    from lmustream.adapters.finetune import few_shot_augment
    with pytest.raises(ConfigError, match="augment.noise_prob"):
        FinetuneConfig(augment=replace(few_shot_augment(), noise_prob=NAN))
    with pytest.raises(ConfigError, match="augment.snr_db"):
        FinetuneConfig(augment=replace(few_shot_augment(), snr_db=(20.0, 5.0)))


def test_finetune_config_accepts_its_ranges_ends():
    config = FinetuneConfig(grad_clip=0, warmup=0, weight_decay=0, distill_weight=0, replay_weight=0,
                            label_smoothing=0, balance=0, channel_match=1, threads=None, rank=None, replay_per_class=0,
                            aflora_initial_warmup=0, aflora_final_warmup=0, new_word_bias=-3, seed=2 ** 32 - 1)
    assert config.grad_clip == 0 and config.lr == 4e-3
    FinetuneConfig(method="lora", rank=1, threads=1, warmup=1, label_smoothing=1, lr=1)


def test_finetune_checks_a_config_changed_after_construction():
    config = FinetuneConfig()
    config.grad_clip = NAN  # would switch clipping off silently: nan > 0 is False
    with pytest.raises(ConfigError, match="grad_clip"):
        finetune("no-such-model", "no-such-folder", config=config, progress=False)
    config = FinetuneConfig()
    config.distill_temperature = math.inf
    with pytest.raises(ConfigError, match="distill_temperature"):
        finetune("no-such-model", "no-such-folder", config=config, progress=False)
