"""A frozen down-projection runs base and path as one product, with the two-path form's values and gradients."""

import copy

import pytest
import torch

from lmustream.adapters import adapter_layers, add_adapter, make_config
from lmustream.adapters import frozen_down
from lmustream.models import LMUFormer, get_config


def adapted_model(method: str, causal: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    base = LMUFormer(get_config("lmuformer-tiny", n_classes=5, causal=causal)).eval()
    model = add_adapter(copy.deepcopy(base), make_config(method, rank=3))
    g = torch.Generator().manual_seed(1)
    for layer in adapter_layers(model).values():
        for p in layer.parameters():  # move off the zero start, so that every path contributes
            if p.requires_grad:
                p.data.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def outputs_and_gradients(model, x, grad):
    for p in model.parameters():
        p.grad = None
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.backward(grad)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.detach(), x.grad, grads


def grad_fns(out: torch.Tensor) -> set[str]:
    seen, stack, names = set(), [out.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack += [next_fn for next_fn, _ in fn.next_functions]
    return names


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("method,frozen", [("aflora", "A"), ("aflora", "AB"), ("vera", "")])
def test_single_product_equals_the_two_paths(method, frozen, causal, monkeypatch):
    model = adapted_model(method, causal)
    for layer in adapter_layers(model).values():  # Conv1d k=3 and k=1, and Linear layers
        for name in frozen:
            getattr(layer, name).requires_grad_(False)
    x = torch.randn(2, 20, model.config.n_mels)
    grad = torch.randn(2, model.config.n_classes)
    out, grad_x, grads = outputs_and_gradients(model, x, grad)
    assert "FrozenDownProductBackward" in grad_fns(model(x.requires_grad_(True)))
    with torch.no_grad():
        evaluated = model(x)  # without autograd: one product with the merged weight
    monkeypatch.setattr(frozen_down, "usable", lambda layer, A: False)  # the two-path form
    ref_out, ref_grad_x, ref_grads = outputs_and_gradients(model, x.detach(), grad)
    torch.testing.assert_close(evaluated, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_x, ref_grad_x, rtol=1e-4, atol=1e-7)
    assert grads.keys() == ref_grads.keys() and grads  # the vectors (and a trainable B) get gradients
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-7, msg=name)


def test_a_trainable_down_projection_keeps_its_own_path():
    model = adapted_model("lora", causal=False)  # LoRA trains A throughout
    out = model(torch.randn(2, 20, model.config.n_mels))
    assert "FrozenDownProductBackward" not in grad_fns(out)
    model = adapted_model("aflora", causal=False)  # AFLoRA before its A matrices freeze
    assert "FrozenDownProductBackward" not in grad_fns(model(torch.randn(2, 20, model.config.n_mels)))


@pytest.mark.parametrize("causal", [False, True])
def test_under_autocast_the_single_product_runs_in_bfloat16_like_the_two_paths(causal, monkeypatch):
    model = adapted_model("vera", causal)  # A frozen: the single product
    x = torch.randn(4, 20, model.config.n_mels)
    grad = torch.randn(4, model.config.n_classes)

    def run():
        for p in model.parameters():
            p.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().backward(grad)
        return out.float(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    out, grads = run()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "FrozenDownProductBackward" in grad_fns(model(x))
    monkeypatch.setattr(frozen_down, "usable", lambda layer, A: False)  # the two-path form, autocast's casts
    ref_out, ref_grads = run()
    assert grads.keys() == ref_grads.keys() and grads
    # bfloat16 keeps 8 bits: the two forms round differently, so compare at its resolution
    torch.testing.assert_close(out, ref_out, rtol=0.05, atol=0.05)
    for name, g in grads.items():
        assert g.dtype == torch.float32, name  # the optimizer's parameters stay float32
        assert torch.nn.functional.cosine_similarity(g.flatten(), ref_grads[name].flatten(), dim=0) > 0.99, name


def test_a_trainable_base_weight_keeps_the_two_paths():
    model = adapted_model("vera", causal=False)
    layer = next(iter(adapter_layers(model).values()))
    layer.base.weight.requires_grad_(True)  # unfrozen by hand: the single product would drop its gradient
    model(torch.randn(2, 20, model.config.n_mels)).sum().backward()
    assert layer.base.weight.grad is not None


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_tracing_records_plain_operators():
    model = adapted_model("vera", causal=False)  # A frozen: outside tracing the Function would run
    x = torch.randn(1, 20, model.config.n_mels)
    traced = torch.jit.trace(model, x, check_trace=False)
    assert "PythonOp" not in str(traced.inlined_graph)  # what an ONNX export could not convert
    torch.testing.assert_close(traced(x), model(x))
