"""The adapter API: targets, parameter counts, merging, adapter files."""

import copy

import pytest
import torch

from lmustream.adapters import (AdaptedLayer, AFLoRAConfig, LoRAConfig, VeRAConfig, add_adapter, adapter_layers,
                                count_parameters, grow_head, load_adapter, make_config, merge,
                                print_trainable_parameters, read_adapter_header, save_adapter, select_targets)
from lmustream.adapters.api import adapter_state_dict
from lmustream.errors import CheckpointError, ConfigError
from lmustream.models import LMUFormer, get_config
from lmustream.selftest import randomize_batchnorm
from tests.adapters.helpers import perturb

LOW_RANK = ("aflora", "lora", "vera")


def tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    return randomize_batchnorm(LMUFormer(get_config("lmuformer-tiny", n_classes=6, **overrides)), seed).eval()


def x_batch(n=3, frames=40, seed=5):
    return torch.randn(n, frames, 128, generator=torch.Generator().manual_seed(seed))


def test_targets_by_name_pattern_and_regex():
    model = tiny()
    assert select_targets(model, LoRAConfig(target_modules=["W_h"])) == ["blocks.0.lmu.W_h"]
    assert select_targets(model, LoRAConfig(target_modules=["embed.convs.*"])) == ["embed.convs.0", "embed.convs.1"]
    assert select_targets(model, LoRAConfig(target_modules=[r"re:blocks\.0\.ffn\.fc\d"])) == \
        ["blocks.0.ffn.fc1", "blocks.0.ffn.fc2"]
    every = select_targets(model, LoRAConfig())
    assert "head" not in every  # trained whole, not adapted
    assert set(every) == {"embed.convs.0", "embed.convs.1", "embed.rpe", "blocks.0.lmu.W_u", "blocks.0.lmu.W_h",
                          "blocks.0.lmu.proj", "blocks.0.ffn.fc1", "blocks.0.ffn.fc2"}
    assert "embed.rpe" not in select_targets(model, LoRAConfig(exclude_modules=["embed.*"]))
    with pytest.raises(ConfigError, match="matches no"):
        select_targets(model, LoRAConfig(target_modules=["attention"]))
    with pytest.raises(ConfigError):
        LoRAConfig(rank=0)
    with pytest.raises(ConfigError, match="regular expression"):
        LoRAConfig(target_modules=["re:blocks.(["])
    with pytest.raises(ConfigError, match="unknown fine-tuning method"):
        make_config("dora")


@pytest.mark.parametrize("method", LOW_RANK)
def test_adapted_model_starts_equal_to_the_base(method):
    model = tiny()
    x = x_batch()
    reference = model(x)
    add_adapter(model, make_config(method))
    assert torch.allclose(model(x), reference, atol=1e-6)
    assert all(isinstance(layer, AdaptedLayer) for layer in adapter_layers(model).values())


def test_trainable_parameter_counts():
    model = tiny()
    head = sum(p.numel() for p in model.head.parameters())
    conv = model.embed.convs[0]  # 128 mel x 3 taps -> 64
    add_adapter(model, AFLoRAConfig(rank=4, target_modules=["embed.convs.0"]))
    trainable, total = count_parameters(model)
    path = 4 * (128 * 3) + 64 * 4 + 4 + 64  # A, B, lambda_d, lambda_u
    assert trainable == path + head
    assert total == sum(p.numel() for p in tiny().parameters()) + path
    assert not conv.weight.requires_grad  # W0 frozen
    model = tiny()
    add_adapter(model, LoRAConfig(rank=2, target_modules=["fc1"]))
    assert count_parameters(model)[0] == 2 * (64 + 128) + head
    model = tiny()
    add_adapter(model, VeRAConfig(rank=16, target_modules=["fc1", "fc2"]))
    assert count_parameters(model)[0] == (16 + 128) + (16 + 64) + head  # only the vectors train
    model = tiny()
    add_adapter(model, make_config("head"))
    assert count_parameters(model)[0] == head
    model = tiny()
    add_adapter(model, make_config("full"))
    assert count_parameters(model)[0] == count_parameters(model)[1]


def test_print_trainable_parameters(capsys):
    model = add_adapter(tiny(), LoRAConfig(rank=2))
    print_trainable_parameters(model)
    trainable, total = count_parameters(model)
    assert capsys.readouterr().out.strip() == (f"trainable params: {trainable:,} || all params: {total:,} || "
                                               f"trainable%: {100 * trainable / total:.4f}")


def test_adding_twice_is_refused():
    model = add_adapter(tiny(), LoRAConfig())
    with pytest.raises(ConfigError, match="already has"):
        add_adapter(model, AFLoRAConfig())


@pytest.mark.parametrize("method", LOW_RANK)
@pytest.mark.parametrize("causal", [False, True])
def test_merge_equals_unmerged(method, causal):
    model = perturb(add_adapter(tiny(causal=causal), make_config(method, rank=3)))
    x = x_batch()
    before = model(x)
    assert (before - tiny(causal=causal)(x)).abs().max() > 1e-3  # the adapter changed the function
    merged = merge(model)
    assert not adapter_layers(merged)
    assert set(merged.state_dict()) == set(tiny().state_dict())  # a plain model's keys
    assert (merged(x) - before).abs().max() <= 1e-5


def test_merge_on_the_spiking_model_keeps_its_spikes():
    torch.manual_seed(0)
    model = randomize_batchnorm(LMUFormer(get_config("slmuformer-tiny", n_classes=4)), 0).double().eval()
    add_adapter(model, AFLoRAConfig(rank=2))
    perturb(model, scale=0.05)
    x = x_batch().double()
    before = model(x)
    assert (merge(model)(x) - before).abs().max() <= 1e-9


def test_grow_head_keeps_the_old_logits():
    model = tiny()
    x = x_batch()
    old = model(x)
    grow_head(model, 9)
    assert model.config.n_classes == 9 and model.head.out_features == 9
    assert torch.allclose(model(x)[:, :6], old, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", LOW_RANK + ("head",))
def test_adapter_file_round_trip(tmp_path, method):
    base = tiny()
    model = copy.deepcopy(base)
    grow_head(model, 8)
    add_adapter(model, make_config(method))
    perturb(model)
    with torch.no_grad():
        model.head.weight.add_(0.1)
    labels = [f"w{i}" for i in range(8)]
    path = tmp_path / "a.adapter.safetensors"
    save_adapter(path, model, labels, {"note": "x"})
    header = read_adapter_header(path)
    assert header["adapter"]["method"] == method and header["labels"] == labels and header["extra"] == {"note": "x"}
    assert set(adapter_state_dict(model)) == set(__import__("safetensors.torch").torch.load_file(str(path)))
    if method != "head":
        assert not any(".base." in k for k in adapter_state_dict(model))
    fresh = copy.deepcopy(base)
    load_adapter(fresh, path)
    x = x_batch()
    assert torch.allclose(fresh(x), model(x), atol=1e-6)
    assert path.stat().st_size < 0.5 * sum(v.numel() * 4 for v in base.state_dict().values())


def test_adapter_refuses_another_base(tmp_path):
    model = add_adapter(tiny(seed=0), AFLoRAConfig())
    path = tmp_path / "a.safetensors"
    save_adapter(path, model)
    with pytest.raises(CheckpointError, match="other base weights"):
        load_adapter(tiny(seed=1), path)
    load_adapter(tiny(seed=1), path, strict=False)
    torch.manual_seed(0)
    wider = LMUFormer(get_config("lmuformer-tiny", n_classes=6, dim=32))
    with pytest.raises(CheckpointError, match="another shape"):
        load_adapter(wider, path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_adapter(tiny(), tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointError):
        load_adapter(tiny(), tmp_path / "junk.safetensors")
