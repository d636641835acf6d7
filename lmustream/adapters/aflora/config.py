"""AFLoRA's settings (Liu et al., ACL 2024): the low-rank path and its adaptive-freezing schedule."""

from __future__ import annotations

from dataclasses import dataclass

from lmustream.adapters.core import AdapterConfig, check_lambda_d_init, positive_int
from lmustream.errors import ConfigError
from lmustream.ranges import check_range

SENSITIVITIES = ("weight_grad", "grad")
# The values each number may take: a smoothing factor of 1 never updates, a NaN one turns every
# score into NaN, and a threshold outside [0, 1] is no fraction of the score mass.
RANGES = {"beta1": "[0, 1)", "beta2": "[0, 1)", "initial_warmup": "[0, inf)", "final_warmup": "[0, inf)",
          "initial_threshold": "[0, 1]", "final_threshold": "[0, 1]"}


@dataclass(frozen=True)
class AFLoRAConfig(AdapterConfig):
    """The path ``lambda_u * B(lambda_d * A x)`` and when its A and B freeze.

    rank: r, the width of the path (the paper uses 4).
    lambda_d_init: initial value of the down-side vector (0.1, as the authors' code starts it;
      the up-side vector starts at 0, so the path starts at zero while A and B are random).
    beta1, beta2: smoothing of the sensitivity and of its uncertainty (paper: 0.85, 0.95).
    delta_t: steps per sensitivity window; the smoothed values update once per window, and the
      freezing test runs every delta_t steps of the cubic phase (paper: 10).
    initial_warmup, final_warmup: epochs at the start with nothing frozen (threshold 1) and at
      the end with the threshold at 0 (everything still trainable freezes); the threshold falls
      as a cubic in between.
    initial_threshold, final_threshold: the schedule's ends (1 -> 0).
    sensitivity: "weight_grad" = |theta * dL/dtheta| (the sensitivity the paper defines);
      "grad" = |dL/dtheta| (what the authors' released code computes).
    """

    method = "aflora"
    rank: int = 4
    lambda_d_init: float = 0.1
    beta1: float = 0.85
    beta2: float = 0.95
    delta_t: int = 10
    initial_warmup: float = 1.0
    final_warmup: float = 3.0
    initial_threshold: float = 1.0
    final_threshold: float = 0.0
    sensitivity: str = "weight_grad"

    def __post_init__(self):
        super().__post_init__()
        positive_int(self, "rank")
        positive_int(self, "delta_t")
        for name, interval in RANGES.items():
            check_range(f"AFLoRAConfig.{name}", getattr(self, name), interval)
        if not self.final_threshold <= self.initial_threshold:
            raise ConfigError(f"AFLoRAConfig thresholds must satisfy 0 <= final <= initial <= 1, got "
                              f"{self.initial_threshold} -> {self.final_threshold}")
        check_lambda_d_init(self)
        if self.sensitivity not in SENSITIVITIES:
            raise ConfigError(f"AFLoRAConfig.sensitivity must be one of {SENSITIVITIES}, got {self.sensitivity!r}")
