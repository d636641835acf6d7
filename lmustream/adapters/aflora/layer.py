"""The AFLoRA layer: a frozen pretrained layer plus ``lambda_u * B(lambda_d * A x)``."""

from __future__ import annotations

import torch
from torch import nn

from lmustream.adapters.core import AdaptedLayer, kaiming_uniform


class AFLoRALayer(AdaptedLayer):
    """``y = W0 x + Lambda_u B Lambda_d A x`` (Liu et al., ACL 2024, eq. 1).

    A [r, in] (down-projection) and B [out, r] (up-projection) start random (Kaiming uniform)
    and trainable, and are frozen for good by :class:`~lmustream.adapters.aflora.model.AFLoRAFreezer`
    once their freezing score falls under the schedule's threshold; the feature-transformation
    vectors lambda_d [r] and lambda_u [out] stay trainable. lambda_u starts at zero, so the
    adapted model starts equal to the pretrained one.
    """

    method = "aflora"

    def __init__(self, base: nn.Module, rank: int, generator: torch.Generator, lambda_d_init: float = 0.1):
        super().__init__(base, rank)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.A = nn.Parameter(kaiming_uniform((rank, self.in_features), generator).to(**like))
        self.B = nn.Parameter(kaiming_uniform((self.out_features, rank), generator).to(**like))
        self.lambda_d = nn.Parameter(torch.full((rank,), float(lambda_d_init), **like))
        self.lambda_u = nn.Parameter(torch.zeros(self.out_features, **like))

    def down_matrix(self) -> torch.Tensor:
        return self.A

    def up_matrix(self) -> torch.Tensor:
        # Both diagonal vectors scale the small up side, Lambda_u B Lambda_d [out, r]: the same
        # function, and A alone meets x, so a frozen A lets the layer run as one product.
        return self.lambda_u[:, None] * self.B * self.lambda_d[None, :]

    def matrices(self) -> dict[str, nn.Parameter]:
        return {"A": self.A, "B": self.B}
