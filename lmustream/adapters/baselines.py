"""The two baselines that add no layer: training the classifier head only, and full fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass

from lmustream.adapters.core import AdapterConfig


@dataclass(frozen=True)
class HeadOnlyConfig(AdapterConfig):
    """Train the modules in ``modules_to_save`` (the head) and nothing else."""

    method = "head"


@dataclass(frozen=True)
class FullFineTuneConfig(AdapterConfig):
    """Train every parameter of the model (batch-norm statistics stay those of the pretrained model)."""

    method = "full"
