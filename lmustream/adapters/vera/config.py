"""VeRA / ELoRA settings (Kopiczko et al., ICLR 2024)."""

from __future__ import annotations

from dataclasses import dataclass

from lmustream.adapters.core import AdapterConfig, check_lambda_d_init, positive_int


@dataclass(frozen=True)
class VeRAConfig(AdapterConfig):
    """The path ``lambda_b * B(lambda_d * A x)`` with A, B random, frozen and shared by every layer.

    rank: width of the shared random matrices (VeRA uses high ranks: the matrices are not trained).
    lambda_d_init: initial value of the down-side vector (the paper's 0.1); lambda_b starts at 0.
    The shared matrices are drawn from ``seed``: an adapter file stores the seed, not the matrices.
    """

    method = "vera"
    rank: int = 64
    lambda_d_init: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        positive_int(self, "rank")
        check_lambda_d_init(self)
