"""Shipped models by name (see :mod:`lmustream.shipped`, which also finds them in an installed wheel)."""

from lmustream.shipped import MODEL_SUFFIX, model_card, resolve_model, shipped_models

__all__ = ["MODEL_SUFFIX", "model_card", "resolve_model", "shipped_models"]
