"""The VeRA / ELoRA layer: frozen shared random projections, trainable scaling vectors."""

from __future__ import annotations

import torch
from torch import nn

from lmustream.adapters.core import AdaptedLayer


class VeRALayer(AdaptedLayer):
    """``y = W0 x + Lambda_b B Lambda_d A x`` (Kopiczko et al., ICLR 2024).

    A and B are slices of random matrices shared by every layer of the model (non-persistent
    buffers: regenerated from the config's seed); only lambda_d [r] and lambda_b [out] train.
    """

    method = "vera"

    def __init__(self, base: nn.Module, rank: int, shared_A: torch.Tensor, shared_B: torch.Tensor,
                 lambda_d_init: float = 0.1):
        super().__init__(base, rank)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.register_buffer("A", shared_A[:, :self.in_features].to(**like), persistent=False)
        self.register_buffer("B", shared_B[:self.out_features, :].to(**like), persistent=False)
        self.lambda_d = nn.Parameter(torch.full((rank,), float(lambda_d_init), **like))
        self.lambda_b = nn.Parameter(torch.zeros(self.out_features, **like))

    def down_matrix(self) -> torch.Tensor:
        return self.A  # frozen: the layer runs as one product (AdaptedLayer.forward)

    def up_matrix(self) -> torch.Tensor:
        return self.lambda_b[:, None] * self.B * self.lambda_d[None, :]
