"""LoRA: low-rank adaptation (Hu et al., 2021), the baseline AFLoRA is measured against."""

from lmustream.adapters.lora.config import LoRAConfig
from lmustream.adapters.lora.layer import LoRALayer
from lmustream.adapters.lora.model import add_lora

__all__ = ["LoRAConfig", "LoRALayer", "add_lora"]
