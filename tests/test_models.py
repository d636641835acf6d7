"""LMUFormer / spiking LMUFormer: shapes, modes, look-ahead, training signal, configs."""

import pytest
import torch

from lmustream.errors import ConfigError
from lmustream.models import LIF, LIFConfig, LMUFormer, LMUFormerConfig, NAMED_CONFIGS, get_config, macs_per_frame
from lmustream.selftest import randomize_batchnorm

TINY = dict(dim=32, memory_size=16, mlp_ratio=2, embed_convs=2, n_classes=5, n_mels=20)


def tiny(spiking=False, **kw):
    torch.manual_seed(0)
    return LMUFormer(LMUFormerConfig(spiking=spiking, **{**TINY, **kw})).eval()


@pytest.mark.parametrize("spiking", [False, True])
@pytest.mark.parametrize("frames", [1, 2, 37, 128, 300])
def test_any_number_of_frames(spiking, frames):
    model = tiny(spiking)
    x = torch.randn(3, frames, 20)
    with torch.no_grad():
        mean = model(x)
        all_seq = model(x, mode="all_seq")
        per_frame = model(x, mode="frames")
    assert mean.shape == (3, 5)
    assert all_seq.shape == (frames, 3, 5)
    assert per_frame.shape == (3, frames, 5)
    torch.testing.assert_close(all_seq[-1], mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_frame.mean(1), mean, atol=1e-6, rtol=1e-6)


def test_reference_mode_name_normal_is_mean():
    model, x = tiny(), torch.randn(2, 10, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode="normal"), model(x))


@pytest.mark.parametrize("bad", [torch.randn(2, 10), torch.randn(2, 10, 19), torch.randn(2, 0, 20)])
def test_bad_input_shape(bad):
    with pytest.raises(ValueError, match="mel bins"):
        tiny()(bad)


def test_bad_mode_and_memory_path():
    model, x = tiny(), torch.randn(1, 4, 20)
    with pytest.raises(ConfigError, match="mode"):
        model(x, mode="last")
    with pytest.raises(ConfigError, match="memory_path"):
        model(x, memory_path="scan")


@pytest.mark.parametrize("spiking", [False, True])
def test_lookahead_is_measured_and_causal_variant_has_none(spiking):
    for causal in (False, True):
        model = randomize_batchnorm(tiny(spiking, causal=causal), seed=1).double()
        D = model.config.lookahead
        assert D == (0 if causal else 3)  # 2 embedding convs + rpe, kernel 3
        x = torch.randn(2, 40, 20, dtype=torch.float64)
        j = 25
        x2 = x.clone()
        x2[:, j] += 3.0
        with torch.no_grad():
            changed = (model(x, mode="all_seq") - model(x2, mode="all_seq")).abs().amax(dim=(1, 2))
        first = int(torch.nonzero(changed > 1e-9)[0])
        # A spiking layer may absorb a small change (no spike flips), so there the first change
        # can come later (even after j: membranes carry it); it can never come earlier than j - D.
        assert first == j - D if not spiking else first >= j - D
        assert changed[:first].max() <= 1e-9


def test_paper_lookahead_is_five_frames():
    assert LMUFormerConfig().lookahead == 5
    assert LMUFormerConfig(causal=True).lookahead == 0


@pytest.mark.parametrize("spiking", [False, True])
def test_gradients_reach_every_parameter(spiking):
    model = tiny(spiking).train()
    x = torch.randn(4, 30, 20)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    # a bias right before a training-mode batch norm is cancelled by it: its gradient is 0 up to rounding
    before_bn = {"blocks.0.lmu.proj.bias", "blocks.0.ffn.fc1.bias"}
    before_bn |= {"blocks.0.lmu.W_u.bias", "blocks.0.lmu.W_h.bias"} if spiking else {"blocks.0.ffn.fc2.bias"}
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name not in before_bn:
            assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("spiking", [False, True])
def test_a_few_steps_fit_a_toy_task(spiking):
    torch.manual_seed(0)
    model = tiny(spiking, n_classes=2).train()
    x = torch.randn(16, 20, 20)
    y = (x[:, :, :10].mean(dim=(1, 2)) > 0).long()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_lif_equations_by_hand():
    lif = LIF(LIFConfig(tau=2.0, v_threshold=1.0))
    x = torch.tensor([[1.0, 1.0, 1.0, 2.0, 0.0, 4.0]])
    # h: 0.5, 0.75, 0.875, 1.4375 -> spike, reset 0; h = 0 ; h = 2 -> spike
    assert lif(x).tolist() == [[0, 0, 0, 1, 0, 1]]
    # exactly at threshold fires (H(0) = 1)
    assert LIF(LIFConfig(v_threshold=0.5))(torch.tensor([[1.0]])).item() == 1.0


def test_lif_integrates_half_precision_input_in_float32():
    """Under autocast a LIF layer gets bfloat16 currents; its membrane, summed over every frame, must not
    round to bfloat16 (spikes near the threshold would flip): it integrates the currents in float32."""
    lif = LIF()
    x = (torch.rand(2, 16, 200) * 1.2).to(torch.bfloat16)
    s = lif(x)
    assert s.dtype == torch.float32
    assert torch.equal(s, lif(x.float()))


def test_lif_state_carries_across_calls():
    lif = LIF()
    x = torch.rand(3, 8, 50) * 3
    whole = lif(x)
    v = lif.initial_state(x[..., 0])
    parts = []
    for t in range(50):
        s, v = lif.step(x[..., t], v)
        parts.append(s)
    assert torch.equal(torch.stack(parts, -1), whole)


def test_surrogate_gradient_is_sigmoid_derivative():
    from lmustream.models.spiking import spike
    x = torch.tensor([-0.5, 0.0, 0.25], requires_grad=True)
    spike(x, 4.0).sum().backward()
    sg = torch.sigmoid(4 * x.detach())
    torch.testing.assert_close(x.grad, 4 * sg * (1 - sg))


def test_named_configs_build_and_count():
    paper = LMUFormer(get_config("lmuformer"))
    assert paper.num_parameters() == 1_621_796  # the authors' model, same count
    assert LMUFormer(get_config("slmuformer")).num_parameters() == 1_689_894
    for name, cfg in NAMED_CONFIGS.items():
        model = LMUFormer(cfg)
        assert model.num_parameters() > 0, name
        assert sum(macs_per_frame(cfg).values()) > 0
    assert LMUFormer(get_config("lmuformer-small", n_classes=12)).head.out_features == 12


def test_macs_per_frame_of_paper_model():
    table = macs_per_frame(get_config("lmuformer"))
    assert table["embed.conv0"] == 3 * 128 * 256
    assert table["blocks.0.lmu.memory"] == 256 * 256 + 256
    assert table["blocks.0.lmu.W_h"] == 512 * 256
    assert sum(table.values()) == 1_680_640


@pytest.mark.parametrize("kw,field", [
    (dict(dim=0), "dim"), (dict(kernel_size=2), "kernel_size"), (dict(theta=-1.0), "theta"),
    (dict(n_classes=1.5), "n_classes"), (dict(depth=True), "depth")])
def test_config_validation(kw, field):
    with pytest.raises(ValueError, match=field):
        LMUFormerConfig(**kw)


def test_config_dict_round_trip_and_unknown_keys():
    cfg = get_config("slmuformer-small", n_classes=7, causal=True)
    assert LMUFormerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown LMUFormerConfig keys: heads"):
        LMUFormerConfig.from_dict({**cfg.to_dict(), "heads": 4})
    with pytest.raises(ValueError, match="unknown model configuration"):
        get_config("gpt")


@pytest.mark.parametrize("depth", [1, 2])
def test_depth_builds_blocks(depth):
    model = tiny(depth=depth)
    assert len(model.blocks) == depth
    assert model(torch.randn(1, 5, 20)).shape == (1, 5)


@pytest.mark.parametrize("detach_reset", [True, False])
def test_fused_lif_gradient_equals_frame_by_frame_autograd(detach_reset):
    lif = LIF(LIFConfig(detach_reset=detach_reset))
    x = (torch.rand(3, 5, 40, dtype=torch.float64) * 3).requires_grad_()
    w = torch.randn(3, 5, 40, dtype=torch.float64)
    (lif(x) * w).sum().backward()
    fused = x.grad.clone()
    x.grad = None
    v, spikes = lif.initial_state(x[..., 0]), []
    for t in range(40):
        s, v = lif.step(x[..., t], v)
        spikes.append(s)
    (torch.stack(spikes, -1) * w).sum().backward()
    torch.testing.assert_close(fused, x.grad)
    assert fused.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton LIF kernels run on CUDA devices only")
@pytest.mark.parametrize("detach_reset", [True, False])
def test_triton_lif_equals_the_pytorch_loop(detach_reset):
    from lmustream.models import lif_triton
    if lif_triton.triton is None:
        pytest.skip("triton is not installed")
    lif = LIF(LIFConfig(detach_reset=detach_reset))
    x = (torch.rand(6, 300, 128, generator=torch.Generator().manual_seed(0)) * 3).requires_grad_()
    w = torch.randn(6, 300, 128, generator=torch.Generator().manual_seed(1))
    xc = x.detach().cuda().requires_grad_()
    (lif(x) * w).sum().backward()
    spikes_gpu = lif(xc)
    (spikes_gpu * w.cuda()).sum().backward()
    assert torch.equal(spikes_gpu.detach().cpu(), lif(x).detach())
    torch.testing.assert_close(xc.grad.cpu(), x.grad, rtol=1e-5, atol=1e-6)
