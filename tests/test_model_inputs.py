"""Bad inputs to the model, its config and its file format: each is refused with lmustream's own
error type (AudioError, CheckpointError, ConfigError), as the C++ kernel refuses it, never run into
a torch error or a silent wrong result."""

import json

import numpy as np
import pytest
import torch

from lmustream.audio.features import FbankConfig
from lmustream.errors import AudioError, CheckpointError, ConfigError
from lmustream.models import LIF, LIFConfig, LegendreMemory, LMUConfig, LMUFormer, LMUFormerConfig, get_config
from lmustream.models.artifact import ModelArtifact, load_model, read_header, save_model
from lmustream.models.lmu import lmu_state_space
from lmustream.selftest import randomize_batchnorm

CFG = dict(dim=16, memory_size=8, mlp_ratio=2, embed_convs=1, n_classes=3, n_mels=20)
LABELS = ["yes", "no", "_unknown_"]


def tiny(**kw) -> LMUFormer:
    torch.manual_seed(0)
    return randomize_batchnorm(LMUFormer(LMUFormerConfig(**{**CFG, **kw})), seed=1).eval()


def artifact(**kw) -> ModelArtifact:
    return ModelArtifact(tiny(**kw), list(LABELS), FbankConfig(n_mels=20), {"note": "test"})


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, artifact())
    return path


def rewrite(src, dst, edit_meta=None, edit_tensors=None, meta_text=None):
    """A copy of model file ``src`` with its lmustream header and/or tensors edited."""
    from safetensors.torch import load_file, save

    meta = read_header(src)
    if edit_meta:
        edit_meta(meta)
    tensors = load_file(str(src))
    if edit_tensors:
        edit_tensors(tensors)
    text = meta_text(json.dumps(meta)) if meta_text else json.dumps(meta)
    dst.write_bytes(save(tensors, metadata={"lmustream": text}))
    return dst


# -- load_model refuses what the C++ kernel refuses ------------------------------------------------

@pytest.mark.parametrize("edit, match", [
    (lambda t: t["head.weight"].__setitem__((0, 0), float("nan")), r"'head\.weight'.*non-finite.*index 0"),
    (lambda t: t["embed.convs.0.weight"].view(-1).__setitem__(7, float("inf")), r"embed\.convs\.0\.weight.*index 7"),
    (lambda t: t["blocks.0.ffn.fc1_bn.running_var"].__setitem__(2, -1.0), r"running_var \+ eps.*channel 2"),
    (lambda t: t.__setitem__("head.weight", t["head.weight"].to(torch.int32)), r"'head\.weight'.*int32.*floating"),
    (lambda t: t.__setitem__("head.bias", t["head.bias"] > 0), r"'head\.bias'.*bool"),
])
def test_load_refuses_bad_tensors(model_file, tmp_path, edit, match):
    bad = rewrite(model_file, tmp_path / "bad.safetensors", edit_tensors=edit)
    with pytest.raises(CheckpointError, match=match):
        load_model(bad)


def test_load_accepts_other_float_widths(model_file, tmp_path):
    """The kernel converts F16 / F64 weights, so Python must too."""
    half = rewrite(model_file, tmp_path / "half.safetensors",
                   edit_tensors=lambda t: t.__setitem__("head.weight", t["head.weight"].half()))
    assert load_model(half).model.head.weight.dtype == torch.float32


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["config"].update(causal="false"), "causal must be True or False"),
    (lambda m: m["config"].update(spiking=0), "spiking must be True or False"),
    (lambda m: m["config"].update(theta=True), "theta must be a number"),
    (lambda m: m["config"].update(kernel_size=True), "kernel_size must be an integer"),
    (lambda m: m.update(config=[1]), "'config' must be a JSON object"),
    (lambda m: m.update(labels="abc"), "labels must be a list of strings, got str"),
    (lambda m: m.update(labels=[0, 1, 2]), "label 0 is 0"),
    (lambda m: m.update(labels=["yes", "", "no"]), "label 1 is an empty string"),
    (lambda m: m.update(labels=[]), "0 labels given for a model with 3 classes"),
    (lambda m: m.update(labels=["a", "a", "b"]), "unique"),
    (lambda m: m.update(frontend=[20]), "'frontend' must be a JSON object"),
    (lambda m: m["frontend"].update(n_mels=64), r"frontend\.n_mels \(64\) differs from config\.n_mels \(20\)"),
    (lambda m: m.update(extra=[1]), "'extra' must be a JSON object"),
])
def test_load_refuses_bad_headers(model_file, tmp_path, edit, match):
    bad = rewrite(model_file, tmp_path / "bad.safetensors", edit_meta=edit)
    with pytest.raises(CheckpointError, match=match):
        load_model(bad)


@pytest.mark.parametrize("meta_text", [
    lambda text: text.replace('"note": "test"', '"note": NaN'),
    lambda text: text.replace('"note": "test"', '"note": Infinity'),
    lambda text: text.replace('"note": "test"', '"note": 1e999'),
    lambda text: text.replace('"note": "test"', '"note": 1, "note": 2'),
])
def test_header_json_the_kernel_refuses(model_file, tmp_path, meta_text):
    bad = rewrite(model_file, tmp_path / "bad.safetensors", meta_text=meta_text)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(bad)


def test_trailing_bytes_are_refused(model_file, tmp_path):
    bad = tmp_path / "tail.safetensors"
    bad.write_bytes(model_file.read_bytes() + b"junk")
    with pytest.raises(CheckpointError, match="not fully covered"):
        load_model(bad)


def test_load_model_paths_and_devices(model_file, tmp_path):
    from lmustream.models.registry import shipped_models

    with pytest.raises(CheckpointError, match="is a folder"):
        load_model(tmp_path)
    with pytest.raises(CheckpointError, match="path"):
        load_model(None)
    with pytest.raises(ConfigError, match="not a torch device"):
        load_model(model_file, device="bogus")
    if shipped_models():
        name = shipped_models()[0]
        assert load_model(name).labels == read_header(name)["labels"]


# -- save_model writes only files that load back ---------------------------------------------------

@pytest.mark.parametrize("extra, match", [
    ({"acc": float("nan")}, r"extra\['acc'\] is nan"),
    ({"metrics": {"loss": [1.0, float("inf")]}}, r"extra\['metrics'\]\['loss'\]\[1\] is inf"),
    ({"value": np.float32(0.5)}, "cannot be written as JSON"),
])
def test_save_refuses_extra_json_cannot_hold(tmp_path, extra, match):
    art = artifact()
    art.extra = extra
    with pytest.raises(CheckpointError, match=match):
        save_model(tmp_path / "m.safetensors", art)
    assert not (tmp_path / "m.safetensors").exists()


def test_save_refuses_an_attached_adapter(tmp_path):
    from lmustream.adapters import add_adapter, merge
    from lmustream.adapters.api import make_config

    art = artifact()
    add_adapter(art.model, make_config("lora"))
    with pytest.raises(CheckpointError, match="adapter attached: merge it"):
        save_model(tmp_path / "m.safetensors", art)
    assert not (tmp_path / "m.safetensors").exists()
    merge(art.model)
    save_model(tmp_path / "m.safetensors", art)
    assert load_model(tmp_path / "m.safetensors").labels == LABELS


def test_save_refuses_unloadable_weights(tmp_path):
    art = artifact()
    with torch.no_grad():
        art.model.head.bias[1] = float("nan")
    with pytest.raises(CheckpointError, match=r"'head\.bias'.*non-finite"):
        save_model(tmp_path / "m.safetensors", art)


def test_frontend_must_fit_the_model(tmp_path):
    model = tiny()
    with pytest.raises(CheckpointError, match=r"frontend\.n_mels \(128\) differs from the model's n_mels \(20\)"):
        ModelArtifact(model, list(LABELS), FbankConfig())
    with pytest.raises(CheckpointError, match="FbankConfig"):
        ModelArtifact(model, list(LABELS), {"n_mels": 20})
    art = artifact()
    art.frontend = FbankConfig(n_mels=64)  # reassigned after the checks of construction
    with pytest.raises(CheckpointError, match=r"n_mels \(64\) differs"):
        save_model(tmp_path / "m.safetensors", art)


@pytest.mark.parametrize("labels, match", [
    ("abc", "list of strings, got str"), ([1, 2, 3], "label 0 is 1"), (["a", "", "b"], "empty string"),
    (["a", "b", "x" * 5000], "longer than 4096 bytes"),
])
def test_artifact_labels(labels, match):
    with pytest.raises(CheckpointError, match=match):
        ModelArtifact(tiny(), labels, FbankConfig(n_mels=20))


def test_save_leaves_the_global_rng_alone(tmp_path):
    art = artifact()
    state = torch.get_rng_state()
    save_model(tmp_path / "m.safetensors", art)
    assert torch.equal(torch.get_rng_state(), state)


# -- LMUFormerConfig: exact types, the kernel's ranges ----------------------------------------------

@pytest.mark.parametrize("kw, match", [
    (dict(causal="no"), "causal must be True or False"), (dict(spiking=1), "spiking must be True or False"),
    (dict(theta=True), "theta must be a number"), (dict(kernel_size=True), "kernel_size must be an integer"),
    (dict(dim="64"), "dim must be an integer"), (dict(lif_tau="2"), "lif_tau must be a number"),
    (dict(memory_size=10**7), r"memory_size must be an integer in \[1, 4096\]"),
    (dict(dim=70000), r"dim must be an integer in \[1, 65536\]"),
    (dict(dim=32768, mlp_ratio=4), "mlp_ratio \\* dim"), (dict(theta=1e-4), "theta must be in"),
    (dict(theta=10**400), "theta is beyond the float range"), (dict(frames=2**40), "frames must be"),
    (dict(lif_threshold=float("inf")), "lif_threshold must be a positive finite number"),
])
def test_config_types_and_ranges(kw, match):
    with pytest.raises(ConfigError, match=match):
        LMUFormerConfig(**kw)


def test_config_numpy_scalars_become_python_values():
    c = LMUFormerConfig(dim=np.int64(32), theta=np.float32(64.0), causal=np.bool_(True))
    assert type(c.dim) is int and type(c.theta) is float and c.causal is True
    json.dumps(c.to_dict())  # writable into a model file


def test_config_constructors():
    with pytest.raises(ConfigError, match="expected a mapping"):
        LMUFormerConfig.from_dict([1])
    with pytest.raises(ConfigError, match="unknown LMUFormerConfig keys: n_class"):
        get_config("lmuformer", n_class=12)
    with pytest.raises(ConfigError, match="needs an LMUFormerConfig"):
        LMUFormer({"dim": 16})


# -- LMUFormer.forward -----------------------------------------------------------------------------

def test_forward_casts_floating_inputs_to_the_model_dtype():
    model, x = tiny(), torch.randn(2, 12, 20)
    with torch.no_grad():
        reference = model(x)
        assert torch.equal(model(x.double()), reference)  # float32 values survive the round trip
        for dtype in (torch.float16, torch.bfloat16):
            out = model(x.to(dtype))
            assert out.dtype == torch.float32 and out.shape == (2, 3)


@pytest.mark.parametrize("x, match", [
    (torch.zeros(2, 12, 20, dtype=torch.int64), "floating point.*int64"),
    (torch.zeros(2, 12, 20, dtype=torch.bool), "floating point.*bool"),
    (torch.zeros(2, 12, 20, dtype=torch.complex64), "floating point.*complex64"),
    (torch.zeros(0, 12, 20), r"batch >= 1.*\[0, 12, 20\]"),
    (torch.zeros(2, 12, 19), r"20 mel bins\], got shape \[2, 12, 19\]"),
    (torch.zeros(12, 20), r"got shape \[12, 20\]"),
    (np.zeros((2, 12, 20), np.float32), "torch.Tensor"),
])
def test_forward_refuses_bad_inputs(x, match):
    with pytest.raises(AudioError, match=match):
        tiny()(x)


def test_forward_refuses_non_finite_input_in_eval():
    model = tiny()
    x = torch.randn(2, 12, 20)
    x[1, 5, 3] = float("nan")
    with pytest.raises(AudioError, match="clip 1, frame 5"):
        model(x)
    with pytest.raises(AudioError, match="after the cast"):
        model(torch.full((1, 4, 20), 1e300, dtype=torch.float64))
    model.train()  # training skips the check (no device sync per step): the loss shows the NaN
    assert model(x).isnan().any()


@pytest.mark.parametrize("spiking", [False, True])
def test_bfloat16_autocast_training_still_works(spiking):
    model = tiny(spiking=spiking).train()
    x = torch.randn(2, 12, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    logits.float().sum().backward()
    assert logits.dtype == torch.bfloat16
    assert all(p.grad is not None for p in model.head.parameters())


# -- Legendre memory and LIF configs --------------------------------------------------------------

def test_legendre_memory_inputs():
    with pytest.raises(ConfigError, match="memory_size must be an integer"):
        LMUConfig(memory_size=2.5)
    with pytest.raises(ConfigError, match="input_size must be an integer"):
        LMUConfig(input_size=True)
    with pytest.raises(ConfigError, match="theta"):
        LMUConfig(theta="8")
    with pytest.raises(ConfigError, match="order"):
        lmu_state_space(0, 8.0)
    with pytest.raises(ConfigError, match="theta"):
        LegendreMemory(8, float("nan"))
    memory = LegendreMemory(8, 4.0)
    with pytest.raises(AudioError, match=r"N >= 1"):
        memory(torch.zeros(2, 0))
    with pytest.raises(AudioError, match="floating point"):
        memory(torch.zeros(2, 5, dtype=torch.int64))
    with pytest.raises(AudioError, match=r"\[batch, N\]"):
        memory.recurrent([[0.0]])


@pytest.mark.parametrize("kw, match", [
    (dict(tau=0.0), "tau must be positive"), (dict(tau=float("nan")), "tau must be a finite number"),
    (dict(v_threshold="1"), "v_threshold"), (dict(detach_reset="no"), "detach_reset must be True or False"),
])
def test_lif_config(kw, match):
    with pytest.raises(ConfigError, match=match):
        LIFConfig(**kw)
    with pytest.raises(ConfigError, match="LIFConfig"):
        LIF({"tau": 2.0})
