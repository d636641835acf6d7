"""LoRA's settings (Hu et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from lmustream.adapters.core import FLOAT32_BOUND, AdapterConfig, positive_int
from lmustream.ranges import check_range


@dataclass(frozen=True)
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
        if self.alpha is not None:
            check_range("LoRAConfig.alpha", self.alpha, f"(0, {FLOAT32_BOUND}]")  # the scaling alpha / r <= alpha

    @property
    def scaling(self) -> float:
        return (self.rank if self.alpha is None else self.alpha) / self.rank
