"""VeRA on a model: one pair of random matrices, sliced for every layer."""

from __future__ import annotations

from torch import nn

from lmustream.adapters.core import inject, kaiming_uniform, layer_generator, select_targets
from lmustream.adapters.vera.config import VeRAConfig
from lmustream.adapters.vera.layer import VeRALayer


def add_vera(model: nn.Module, config: VeRAConfig) -> dict[str, VeRALayer]:
    """Wrap every target layer of ``model`` in a :class:`VeRALayer` sharing one random A and B (in place)."""
    layers = [model.get_submodule(name) for name in select_targets(model, config)]
    widest_in = max(layer.weight[0].numel() for layer in layers)
    widest_out = max(layer.weight.shape[0] for layer in layers)
    generator = layer_generator(config.seed, "vera.shared")
    shared_A = kaiming_uniform((config.rank, widest_in), generator)  # (r, max in)
    shared_B = kaiming_uniform((widest_out, config.rank), generator)  # (max out, r)
    return inject(model, config, lambda name, layer: VeRALayer(
        layer, config.rank, shared_A, shared_B, config.lambda_d_init))
