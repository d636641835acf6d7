"""AFLoRA on a model: adding its layers, and the adaptive freezing of their A and B matrices.

Freezing score (Liu et al., ACL 2024, sec. 3; as the authors' code computes it). For every
still-trainable projection matrix, per element and at every step t:

    I(t)     = |theta * dL/dtheta|                         sensitivity
    I_w      = mean of I over the current window of delta_t steps
    I_bar    <- beta1 I_bar + (1 - beta1) I_w              once per window   (beta1 = 0.85)
    U_bar    <- beta2 U_bar + (1 - beta2) |I_w - I_bar|    once per window   (beta2 = 0.95)
    score    = mean over the matrix of I_bar * U_bar

Threshold schedule (cubic, t in steps, t_i / t_f the initial / final warm-up):

    thr(t) = thr_0                                                        t <= t_i
           = thr_f + (thr_0 - thr_f) (1 - (t - t_i) / (T - t_i - t_f))^3  t_i < t <= T - t_f
           = thr_f                                                        t > T - t_f

``thr`` is the fraction of score mass ranked from the top that stays trainable: the cut-off
is the (1 - thr)-quantile of the element scores (I_bar * U_bar) of all still-trainable
matrices, and a matrix whose score (the mean of its elements) is under that cut-off is frozen
for good. The test runs every delta_t steps of the cubic phase and at every step of the final
warm-up, where thr = 0 (the cut-off above every score) freezes whatever is left. Frozen matrices get no gradient again; the
feature-transformation vectors are never frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lmustream.adapters.aflora.config import AFLoRAConfig
from lmustream.adapters.aflora.layer import AFLoRALayer
from lmustream.adapters.core import inject, layer_generator
from lmustream.errors import ConfigError


def add_aflora(model: nn.Module, config: AFLoRAConfig) -> dict[str, AFLoRALayer]:
    """Wrap every target layer of ``model`` in an :class:`AFLoRALayer` (in place)."""
    return inject(model, config, lambda name, layer: AFLoRALayer(
        layer, config.rank, layer_generator(config.seed, name), config.lambda_d_init))


@dataclass
class FreezingSchedule:
    """The cubic threshold schedule over ``total_steps`` optimizer steps of ``steps_per_epoch`` each."""

    config: AFLoRAConfig
    steps_per_epoch: int
    total_steps: int

    def __post_init__(self):
        if self.steps_per_epoch < 1 or self.total_steps < 1:
            raise ConfigError(f"freezing schedule needs >= 1 step per epoch and in all, got "
                              f"{self.steps_per_epoch} and {self.total_steps}")
        self.initial_steps = round(self.config.initial_warmup * self.steps_per_epoch)
        self.final_steps = round(self.config.final_warmup * self.steps_per_epoch)
        self.cubic_steps = self.total_steps - self.initial_steps - self.final_steps
        if self.cubic_steps <= 0:
            raise ConfigError(
                f"AFLoRA warm-ups ({self.config.initial_warmup} + {self.config.final_warmup} epochs = "
                f"{self.initial_steps + self.final_steps} steps) leave no step of the {self.total_steps} for the "
                f"freezing schedule; train longer or shorten the warm-ups")

    def threshold(self, step: int) -> tuple[float, bool]:
        """``(threshold, test now)`` at optimizer step ``step`` (counted from 1)."""
        c = self.config
        if step <= self.initial_steps:
            return c.initial_threshold, False
        if step > self.total_steps - self.final_steps:
            return c.final_threshold, True
        remaining = 1 - (step - self.initial_steps) / self.cubic_steps
        return c.final_threshold + (c.initial_threshold - c.final_threshold) * remaining ** 3, step % c.delta_t == 0


@dataclass(frozen=True)
class FreezeEvent:
    """One projection matrix frozen: which, when, and by how much its score missed the cut-off."""

    step: int
    epoch: float
    matrix: str
    score: float
    cut: float | None  # None: the final warm-up (threshold 0), which freezes whatever is left
    threshold: float

    def describe(self) -> str:
        why = "the final warm-up" if self.cut is None else f"score {self.score:.3g} < cut-off {self.cut:.3g}"
        return f"step {self.step} (epoch {self.epoch:.2f}): froze {self.matrix} ({why}, threshold {self.threshold:.3f})"


class AFLoRAFreezer:
    """Tracks the freezing score of every AFLoRA A and B matrix and freezes them on schedule.

    Call :meth:`step` once per optimizer step, after ``loss.backward()`` and before
    ``optimizer.step()``: it reads the gradients, and a matrix it freezes loses its gradient,
    so the optimizer skips it from then on.
    """

    def __init__(self, model: nn.Module, config: AFLoRAConfig, steps_per_epoch: int, total_steps: int,
                 on_freeze=None):
        self.config = config
        self.schedule = FreezingSchedule(config, steps_per_epoch, total_steps)
        self.matrices: dict[str, nn.Parameter] = {
            f"{name}.{key}": p for name, layer in model.named_modules() if isinstance(layer, AFLoRALayer)
            for key, p in layer.matrices().items()}
        if not self.matrices:
            raise ConfigError("the model has no AFLoRA layers to freeze (add_adapter with an AFLoRAConfig first)")
        self.window: dict[str, torch.Tensor] = {}  # mean sensitivity of the current window
        self.window_steps: dict[str, int] = {}
        self.sensitivity: dict[str, torch.Tensor] = {}  # I_bar
        self.uncertainty: dict[str, torch.Tensor] = {}  # U_bar
        self.events: list[FreezeEvent] = []
        self.on_freeze = on_freeze

    def trainable(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.matrices.items() if p.requires_grad}

    def step(self, step: int) -> list[FreezeEvent]:
        """Update the scores with this step's gradients, then freeze what the schedule says."""
        self._observe(step)
        threshold, test = self.schedule.threshold(step)
        return self._freeze(step, threshold) if test else []

    @torch.no_grad()
    def _observe(self, step: int) -> None:
        c = self.config
        for name, p in self.trainable().items():
            if p.grad is None:
                continue
            sensitivity = (p * p.grad).abs() if c.sensitivity == "weight_grad" else p.grad.abs()
            if name not in self.window:
                self.window[name] = torch.zeros_like(p)
                self.window_steps[name] = 0
                self.sensitivity[name] = torch.zeros_like(p)
                self.uncertainty[name] = torch.zeros_like(p)
            if step % c.delta_t == 0 and self.window_steps[name] > 0:
                # A window ends: smooth its mean into I_bar, then its deviation into U_bar.
                window = self.window[name]
                self.sensitivity[name].mul_(c.beta1).add_(window, alpha=1 - c.beta1)
                self.uncertainty[name].mul_(c.beta2).add_((window - self.sensitivity[name]).abs(), alpha=1 - c.beta2)
                self.window[name], self.window_steps[name] = sensitivity.clone(), 1
            else:  # running mean of the window so far
                n = self.window_steps[name]
                self.window[name].mul_(n).add_(sensitivity).div_(n + 1)
                self.window_steps[name] = n + 1

    def scores(self) -> dict[str, torch.Tensor]:
        """Element-wise I_bar * U_bar of every still-trainable matrix seen so far."""
        return {name: self.sensitivity[name] * self.uncertainty[name]
                for name in self.trainable() if name in self.sensitivity}

    @torch.no_grad()
    def _freeze(self, step: int, threshold: float) -> list[FreezeEvent]:
        scores = self.scores()
        if not scores:
            return []
        elements = torch.cat([s.flatten() for s in scores.values()]).float()
        k = int(elements.numel() * (1 - threshold))
        if k < 1:
            return []
        # thr = 0 keeps nothing: freeze every matrix (a matrix whose score is the maximum included)
        cut = float(torch.kthvalue(elements, k).values) if k < elements.numel() else float("inf")
        frozen = []
        for name, score in scores.items():
            mean = float(score.mean())
            if mean < cut:
                p = self.matrices[name]
                p.requires_grad_(False)
                p.grad = None
                for table in (self.window, self.window_steps, self.sensitivity, self.uncertainty):
                    table.pop(name, None)
                # JSON, where the events are kept in the model file, has no infinity
                event = FreezeEvent(step, step / self.schedule.steps_per_epoch, name, mean,
                                    None if math.isinf(cut) else cut, threshold)
                frozen.append(event)
                if self.on_freeze is not None:
                    self.on_freeze(event)
        self.events += frozen
        return frozen

    def freeze_all(self, step: int) -> list[FreezeEvent]:
        """Freeze every matrix left, scored or not (the end of training)."""
        for name in self.trainable():
            if name not in self.sensitivity:
                zeros = torch.zeros_like(self.matrices[name])
                self.window[name], self.sensitivity[name], self.uncertainty[name] = zeros, zeros, zeros
        return self._freeze(step, 0.0)
