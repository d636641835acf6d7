"""LoRA's settings (Hu et al., 2021)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmustream.adapters.core import AdapterConfig, positive_int
from lmustream.errors import ConfigError


@dataclass
class LoRAConfig(AdapterConfig):
    """The path ``(alpha / r) B A x``: A [r, in] random, B [out, r] zero, both trained.

    rank: r. alpha: scaling numerator (default: r, so the scaling is 1).
    """

    method = "lora"
    rank: int = 8
    alpha: float | None = None

    def __post_init__(self):
        super().__post_init__()
        positive_int(self, "rank")
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)
                                           and self.alpha > 0):
            raise ConfigError(f"LoRAConfig.alpha must be a positive number, got {self.alpha!r}")

    @property
    def scaling(self) -> float:
        return (self.rank if self.alpha is None else self.alpha) / self.rank
