"""An exponential moving average of the weights (Polyak averaging), validated and saved in their place.

With ``optim.ema_decay = d > 0`` the trainer keeps, next to the model it trains,

    theta_avg <- d_t * theta_avg + (1 - d_t) * theta,   d_t = min(d, (1 + n) / (10 + n))

after the n-th optimizer step, for every floating-point tensor of the state dict (weights and
the batch norms' running statistics; step counters are copied). The average moves less from step
to step than the last iterate, so the epoch chosen on validation depends less on where the final
steps happened to land; whether it also generalises better depends on the task (measure it).
The warm-up ``d_t`` keeps the first steps from averaging in the initial weights for long (it
matters when training from scratch). Validation, best-model selection and the saved model use
the average.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lmustream.errors import ConfigError


class WeightAverage:
    """The averaged copy of ``model`` (``.model``, eval mode, no gradients) and its update rule."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"optim.ema_decay must be in (0, 1) to average, got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average toward ``model``'s current state (call after each optimizer step)."""
        d = self.current_decay()
        averaged, current = self.model.state_dict(), model.state_dict()
        for name, value in averaged.items():
            if value.is_floating_point():
                value.lerp_(current[name].to(value.dtype), 1.0 - d)
            else:
                value.copy_(current[name])
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def validate(decay: float) -> None:
    if not (isinstance(decay, (int, float)) and 0.0 <= decay < 1.0):
        raise ConfigError(f"optim.ema_decay must be in [0, 1) (0 turns the average off), got {decay!r}")
