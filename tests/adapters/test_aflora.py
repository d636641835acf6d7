"""AFLoRA's freezing score and cubic schedule, checked against the paper's definitions."""

import pytest
import torch
import torch.nn.functional as F

from lmustream.adapters import AFLoRAConfig, AFLoRAFreezer, AFLoRALayer, FreezingSchedule, add_adapter
from lmustream.errors import ConfigError
from lmustream.models import LMUFormer, get_config


def test_cubic_schedule():
    config = AFLoRAConfig(initial_warmup=1, final_warmup=2, delta_t=5)
    schedule = FreezingSchedule(config, steps_per_epoch=10, total_steps=100)  # t_i = 10, t_f = 20, cubic 70 steps
    assert schedule.threshold(1) == (1.0, False)
    assert schedule.threshold(10) == (1.0, False)  # initial warm-up: nothing freezes
    threshold, test = schedule.threshold(45)  # halfway through the cubic phase
    assert threshold == pytest.approx(0.5 ** 3) and test
    assert schedule.threshold(46)[1] is False  # tested every delta_t steps only
    assert schedule.threshold(12)[0] == pytest.approx((1 - 2 / 70) ** 3)
    assert schedule.threshold(81) == (0.0, True)  # final warm-up: threshold 0, tested every step
    assert schedule.threshold(100) == (0.0, True)
    values = [schedule.threshold(t)[0] for t in range(1, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # 1 -> 0, never back up
    ranged = FreezingSchedule(AFLoRAConfig(initial_threshold=0.8, final_threshold=0.2), 10, 100)
    assert ranged.threshold(1)[0] == 0.8 and ranged.threshold(100)[0] == 0.2
    with pytest.raises(ConfigError, match="leave no step"):
        FreezingSchedule(AFLoRAConfig(initial_warmup=5, final_warmup=5), 10, 100)
    with pytest.raises(ConfigError):
        AFLoRAConfig(beta1=1.0)
    with pytest.raises(ConfigError):
        AFLoRAConfig(sensitivity="hessian")


def one_layer_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5))
    model.head = torch.nn.Linear(5, 2)  # a module named "head", like LMUFormer's
    add_adapter(model, AFLoRAConfig(rank=3, target_modules=["0"], delta_t=4))
    return model


@pytest.mark.parametrize("kind", ["weight_grad", "grad"])
def test_score_is_the_smoothed_sensitivity_times_its_smoothed_uncertainty(kind):
    model = one_layer_model()
    layer: AFLoRALayer = model[0]
    config = AFLoRAConfig(rank=3, delta_t=4, sensitivity=kind, initial_warmup=100, final_warmup=0)
    freezer = AFLoRAFreezer(model, config, steps_per_epoch=1, total_steps=200)  # warm-up: observe only
    g = torch.Generator().manual_seed(1)
    history = []
    for step in range(1, 18):
        layer.A.grad = torch.randn(layer.A.shape, generator=g)
        layer.B.grad = torch.randn(layer.B.shape, generator=g)
        history.append((layer.A * layer.A.grad).abs() if kind == "weight_grad" else layer.A.grad.abs())
        assert freezer.step(step) == []
    # Reference: windows close at steps 4, 8, 12, 16 (the first holds steps 1-3, the others
    # delta_t steps each); each closed window's mean updates I_bar then U_bar.
    I_bar = torch.zeros_like(layer.A)
    U_bar = torch.zeros_like(layer.A)
    for start, end in ((1, 4), (4, 8), (8, 12), (12, 16)):
        window = torch.stack(history[start - 1:end - 1]).mean(0)
        I_bar = 0.85 * I_bar + 0.15 * window
        U_bar = 0.95 * U_bar + 0.05 * (window - I_bar).abs()
    name = "0.A"
    assert torch.allclose(freezer.sensitivity[name], I_bar, atol=1e-6)
    assert torch.allclose(freezer.uncertainty[name], U_bar, atol=1e-6)
    assert torch.allclose(freezer.window[name], torch.stack(history[15:17]).mean(0), atol=1e-6)
    assert torch.allclose(freezer.scores()[name], I_bar * U_bar, atol=1e-9)


def tiny_training(total_steps=40, seed=0):
    torch.manual_seed(seed)
    model = LMUFormer(get_config("lmuformer-tiny", n_classes=3)).eval()
    config = AFLoRAConfig(rank=2, delta_t=2, initial_warmup=1, final_warmup=1)
    add_adapter(model, config)
    events = []
    freezer = AFLoRAFreezer(model, config, steps_per_epoch=10, total_steps=total_steps, on_freeze=events.append)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(4, 12, 128, generator=g), torch.randint(0, 3, (4,), generator=g)
    return model, freezer, optimizer, x, y, events


def test_freezing_during_training():
    model, freezer, optimizer, x, y, events = tiny_training()
    n_matrices = len(freezer.matrices)
    assert n_matrices == 16  # A and B of the 8 adapted layers
    trainable_over_time = []
    for step in range(1, 41):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for name, p in freezer.matrices.items():  # a frozen matrix gets no gradient any more
            assert (p.grad is None) == (not p.requires_grad), name
        frozen_now = freezer.step(step)
        if step <= 10:
            assert frozen_now == []  # initial warm-up
        for event in frozen_now:
            assert event.step == step and (event.cut is None or event.score < event.cut)  # None: the final warm-up
            assert not freezer.matrices[event.matrix].requires_grad and freezer.matrices[event.matrix].grad is None
        optimizer.step()
        trainable_over_time.append(len(freezer.trainable()))
    assert trainable_over_time[-1] == 0  # the final warm-up froze everything
    assert all(a >= b for a, b in zip(trainable_over_time, trainable_over_time[1:]))
    assert 0 < trainable_over_time[15] < n_matrices  # the cubic phase froze some, not all, at first
    assert sorted(e.matrix for e in events) == sorted(freezer.matrices) and events == freezer.events
    vectors = [p for n, p in model.named_parameters() if "lambda" in n]
    assert vectors and all(p.requires_grad and p.grad is not None for p in vectors)  # the vectors stay trainable


def test_cut_off_is_the_quantile_of_the_remaining_scores():
    model, freezer, optimizer, x, y, _ = tiny_training()
    for step in range(1, 9):  # warm-up steps: scores accumulate, nothing freezes
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        freezer.step(step)
        optimizer.step()
    scores = freezer.scores()
    elements = torch.cat([s.flatten() for s in scores.values()])
    threshold = 0.3
    cut = torch.sort(elements).values[int(len(elements) * (1 - threshold)) - 1]
    expected = sorted(name for name, s in scores.items() if s.mean() < cut)
    frozen = freezer._freeze(9, threshold)
    assert sorted(e.matrix for e in frozen) == expected and expected
    assert all(e.cut == pytest.approx(float(cut)) for e in frozen)
    assert freezer._freeze(10, 1.0) == []  # threshold 1 keeps everything
