"""Bad inputs to the step form, the ONNX export and the verification helpers: lmustream's own errors,
as the C++ kernel's push_features gives them, and a state left as it was."""

import numpy as np
import pytest
import torch

from lmustream.audio.features import FbankConfig
from lmustream.errors import AudioError, ConfigError
from lmustream.models import LMUFormer, LMUFormerConfig
from lmustream.selftest import randomize_batchnorm
from lmustream.stream.onnx_export import export_onnx
from lmustream.stream.step import StepLMUFormer
from lmustream.stream.verify import compare_stream

TINY = dict(dim=32, memory_size=16, mlp_ratio=2, embed_convs=2, n_classes=5, n_mels=20)


def tiny(spiking=False, **kw) -> LMUFormer:
    torch.manual_seed(0)
    return randomize_batchnorm(LMUFormer(LMUFormerConfig(spiking=spiking, **{**TINY, **kw})), 3).eval()


@pytest.fixture(scope="module")
def step():
    return StepLMUFormer(tiny())


def same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- non-finite features: refused, the state unchanged -------------------------------------------

@pytest.mark.parametrize("spiking", [False, True])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_frame_is_refused_and_the_state_is_unchanged(spiking, bad):
    step = StepLMUFormer(tiny(spiking))
    x = torch.randn(2, 12, 20, generator=torch.Generator().manual_seed(1))
    state = step.initial_state(2)
    for t in range(6):
        _, state = step.step(x[:, t], state)
    before = {k: v.clone() for k, v in state.items()}
    poisoned = x[:, 6].clone()
    poisoned[1, 4] = bad
    with pytest.raises(AudioError, match="non-finite value.*stream 1"):
        step.step(poisoned, state)
    assert same_state(state, before)
    # the stream goes on as if the bad frame had never come
    clean, _, _ = step.run(x[:, 6:], before)
    after, _, _ = step.run(x[:, 6:], state)
    assert torch.equal(clean, after) and bool(torch.isfinite(after).all())


def test_a_bad_frame_in_a_chunk_steps_none_of_it(step):
    chunk = torch.randn(1, 4, 20)
    chunk[0, 2, 0] = float("nan")
    state = step.initial_state(1)
    with pytest.raises(AudioError, match="stream 0, frame 2"):
        step.step(chunk, state)
    with pytest.raises(AudioError, match="stream 0, frame 2"):
        step.run(chunk, state)
    assert same_state(state, step.initial_state(1))


def test_float64_beyond_float32_range_is_non_finite(step):
    with pytest.raises(AudioError, match="after the cast from torch.float64"):
        step.step(torch.full((1, 20), 1e300, dtype=torch.float64), step.initial_state(1))


# -- dtypes, array types and shapes ----------------------------------------------------------------

@pytest.mark.parametrize("frame, match", [
    (torch.zeros(1, 20, dtype=torch.int16), "floating point, got torch.int16"),
    (torch.zeros(1, 20, dtype=torch.bool), "floating point, got torch.bool"),
    (torch.zeros(1, 20, dtype=torch.complex64), "floating point, got torch.complex64"),
    (np.zeros((1, 20), np.int32), "floating point, got int32"),
    (np.zeros((1, 20), np.complex64), "floating point, got complex64"),
    ([[0] * 20], "floating point, got int64"),
    ([[0.0] * 20, [0.0]], "ragged"),
    (torch.zeros(1, 19), r"\[batch, 20\].*got \[1, 19\]"),
    (torch.zeros(20), r"got \[20\]"),
    (torch.zeros(1, 1, 1, 20), r"got \[1, 1, 1, 20\]"),
    (torch.zeros(0, 20), r"got \[0, 20\]"),
    (torch.zeros(1, 0, 20), "empty chunk"),
])
def test_bad_frames_are_audio_errors(step, frame, match):
    with pytest.raises(AudioError, match=match):
        step.step(frame, None)


def test_lists_numpy_and_other_float_widths_are_taken_as_the_kernel_takes_them(step):
    x = torch.randn(2, 20)
    state = step.initial_state(2)
    reference, _ = step.step(x, state)
    for same in (x.numpy(), x.tolist(), x.double(), x.numpy().astype(">f4")):
        out, _ = step.step(same, state)
        assert torch.equal(out.running, reference.running)
    out, _ = step.step(x.half(), state)  # rounded to float16, then stepped in float32
    assert out.running.dtype == torch.float32


# -- states and masks ------------------------------------------------------------------------------

def test_states_of_other_models_are_config_errors(step):
    x = torch.randn(2, 20)
    other_classes = StepLMUFormer(tiny(n_classes=7)).initial_state(2)
    other_width = StepLMUFormer(tiny(dim=64)).initial_state(2)
    state = step.initial_state(2)
    wide = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    cases = [
        (other_classes, r"state\['last_running'\] has shape \[2, 7\].*another model"),
        (other_width, r"has shape \[2, 64.*another model"),
        (wide, r"is torch.float64, this step form's is torch.float32"),
        ({**state, "block0.m": state["block0.m"].float()}, r"state\['block0.m'\] is torch.float32"),
        (step.initial_state(3), r"state is for 3 streams, the frames for 2: use initial_state\(2\)"),
        ({k: v for k, v in state.items() if k != "sum"}, r"missing \['sum'\]"),
        ([state], "must be the dict"),
        ({**state, "t": 0}, r"state\['t'\] must be a tensor"),
    ]
    for bad, match in cases:
        with pytest.raises(ConfigError, match=match):
            step.step(x, bad)


def test_padding_and_reset_masks(step):
    x, state = torch.randn(2, 20), step.initial_state(2)
    for padding, match in [(torch.zeros(3, dtype=torch.bool), r"shape \[2\].*got \[3\]"),
                           (torch.zeros(2), "bool tensor.*float32"), ([0.0, 1.0], "bool tensor.*float64"),
                           (True, r"got \[\]")]:
        with pytest.raises(ConfigError, match=match):
            step.step(x, state, padding)
    with pytest.raises(ConfigError, match=r"\[2, 3\] \(one flag per stream and frame\), got \[2\]"):
        step.step(torch.randn(2, 3, 20), state, torch.zeros(2, dtype=torch.bool))
    out_list, _ = step.step(x, state, [False, True])
    out_tensor, _ = step.step(x, state, torch.tensor([False, True]))
    assert torch.equal(out_list.running, out_tensor.running)

    _, moved = step.step(x, state)
    with pytest.raises(ConfigError, match=r"reset\(\): streams must have shape \[2\]"):
        step.reset(moved, torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="bool tensor.*int64"):
        step.reset(moved, torch.zeros(2, dtype=torch.int64))
    half = step.reset(moved, [True, False])
    assert torch.equal(half["t"], torch.tensor([0, 1]))


def test_other_misuse(step):
    with pytest.raises(ConfigError, match="must be the dict"):
        step.flush(None)
    for batch in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="batch must be an integer >= 1"):
            step.initial_state(batch)
    with pytest.raises(ConfigError, match="needs an LMUFormer"):
        StepLMUFormer(None)
    out, state = step.step(torch.randn(2, 20), None)  # None: fresh streams, as run() takes it
    assert torch.equal(state["t"], torch.tensor([1, 1]))
    lagging = step.reset(state, [True, False])
    with pytest.raises(ConfigError, match="same phase"):
        step.run(torch.randn(2, 8, 20), lagging)


def test_a_model_with_an_adapter_is_refused():
    from lmustream.adapters import add_adapter
    from lmustream.adapters.api import make_config

    model = add_adapter(tiny(), make_config("lora"))
    with pytest.raises(ConfigError, match="adapter attached; merge it"):
        StepLMUFormer(model)


# -- export_onnx and verify ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(labels=["a", "b"]), "labels must be 5 distinct non-empty strings"),
    (dict(labels="abcde"), "labels must be 5"),
    (dict(labels=["a", "b", "c", "d", 5]), "labels must be 5"),
    (dict(labels=["a", "a", "b", "c", "d"]), "labels must be 5 distinct"),
    (dict(frontend=FbankConfig()), r"frontend.n_mels \(128\) differs from the model's n_mels \(20\)"),
    (dict(frontend={"n_mels": 20}), "frontend must be an FbankConfig"),
    (dict(chunk=True), "chunk must be an integer"),
    (dict(chunk=2.5), "chunk must be an integer"),
    (dict(posterior="tanh"), "posterior"),
    (dict(audio_in="no"), "audio_in must be True or False"),
])
def test_export_refuses_inconsistent_metadata(step, tmp_path, kwargs, match):
    args = dict(labels=["a", "b", "c", "d", "e"], frontend=FbankConfig(n_mels=20))
    args.update(kwargs)
    path = tmp_path / "m.onnx"
    with pytest.raises(ConfigError, match=match):
        export_onnx(step, str(path), args.pop("labels"), args.pop("frontend"), **args)
    assert not path.exists()


def test_export_needs_the_step_form(tmp_path):
    with pytest.raises(ConfigError, match="StepLMUFormer"):
        export_onnx(tiny(), str(tmp_path / "m.onnx"), list("abcde"), FbankConfig(n_mels=20))


def test_audio_in_needs_the_16k_frontend(step, tmp_path):
    frontend = FbankConfig(sample_rate=8000, n_mels=20)
    with pytest.raises(ConfigError, match="16 kHz"):
        export_onnx(step, str(tmp_path / "m.onnx"), list("abcde"), frontend, audio_in=True)


def test_compare_stream_needs_the_step_form_of_the_same_model(step):
    with pytest.raises(ConfigError, match="another model config"):
        compare_stream(tiny(n_classes=7), step, torch.randn(1, 10, 20))
