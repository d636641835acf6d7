"""LMUFormer and spiking LMUFormer models, their named configurations and file formats."""

from lmustream.models.lmu import LegendreMemory, LMUConfig, impulse_response, lmu_state_space
from lmustream.models.lmuformer import (
    NAMED_CONFIGS,
    LMUFormer,
    LMUFormerConfig,
    get_config,
    macs_per_frame,
)
from lmustream.models.reference import load_reference_checkpoint
from lmustream.models.spiking import LIF, LIFConfig

__all__ = [
    "LIF", "LIFConfig", "LMUConfig", "LMUFormer", "LMUFormerConfig", "LegendreMemory", "NAMED_CONFIGS",
    "get_config", "impulse_response", "lmu_state_space", "load_reference_checkpoint", "macs_per_frame",
]
