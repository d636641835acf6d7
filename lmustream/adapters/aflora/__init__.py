"""AFLoRA: adaptive freezing of low-rank adaptation (Liu et al., ACL 2024)."""

from lmustream.adapters.aflora.config import AFLoRAConfig
from lmustream.adapters.aflora.layer import AFLoRALayer
from lmustream.adapters.aflora.model import AFLoRAFreezer, FreezeEvent, FreezingSchedule, add_aflora

__all__ = ["AFLoRAConfig", "AFLoRAFreezer", "AFLoRALayer", "FreezeEvent", "FreezingSchedule", "add_aflora"]
