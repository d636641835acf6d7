"""VeRA / ELoRA: frozen shared random projections with trainable vectors (Kopiczko et al., ICLR 2024)."""

from lmustream.adapters.vera.config import VeRAConfig
from lmustream.adapters.vera.layer import VeRALayer
from lmustream.adapters.vera.model import add_vera

__all__ = ["VeRAConfig", "VeRALayer", "add_vera"]
