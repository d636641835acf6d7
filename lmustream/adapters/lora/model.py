"""LoRA on a model."""

from __future__ import annotations

from torch import nn

from lmustream.adapters.core import inject, layer_generator
from lmustream.adapters.lora.config import LoRAConfig
from lmustream.adapters.lora.layer import LoRALayer


def add_lora(model: nn.Module, config: LoRAConfig) -> dict[str, LoRALayer]:
    """Wrap every target layer of ``model`` in a :class:`LoRALayer` (in place)."""
    return inject(model, config, lambda name, layer: LoRALayer(
        layer, config.rank, config.scaling, layer_generator(config.seed, name)))
