"""The LoRA layer: a frozen pretrained layer plus ``(alpha / r) B A x``."""

from __future__ import annotations

import torch
from torch import nn

from lmustream.adapters.core import AdaptedLayer, kaiming_uniform


class LoRALayer(AdaptedLayer):
    """``y = W0 x + s B A x`` with s = alpha / r (Hu et al., 2021).

    A [r, in] starts random (Kaiming uniform), B [out, r] at zero, so the adapted model starts
    equal to the pretrained one; both are trained throughout.
    """

    method = "lora"

    def __init__(self, base: nn.Module, rank: int, scaling: float, generator: torch.Generator):
        super().__init__(base, rank)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.scaling = float(scaling)
        self.A = nn.Parameter(kaiming_uniform((rank, self.in_features), generator).to(**like))
        self.B = nn.Parameter(torch.zeros(self.out_features, rank, **like))

    def down_matrix(self) -> torch.Tensor:
        return self.A

    def up_matrix(self) -> torch.Tensor:
        return self.B * self.scaling

    def matrices(self) -> dict[str, nn.Parameter]:
        return {"A": self.A, "B": self.B}
