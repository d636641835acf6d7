"""Shipped models by name: ``models/<name>.safetensors`` beside the package (a source checkout)."""

from __future__ import annotations

from pathlib import Path

from lmustream.errors import CheckpointError

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
MODEL_SUFFIX = ".safetensors"


def shipped_models() -> list[str]:
    """Names of the models in ``models/``."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name[: -len(MODEL_SUFFIX)] for p in MODELS_DIR.glob(f"*{MODEL_SUFFIX}"))


def resolve_model(name_or_path: str | Path) -> Path:
    """A model file path from a path or the name of a shipped model."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = MODELS_DIR / f"{name_or_path}{MODEL_SUFFIX}"
    if shipped.is_file():
        return shipped
    known = ", ".join(shipped_models()) or "none in this installation"
    if path.is_dir():
        raise CheckpointError(f"{str(name_or_path)!r} is a folder; pass a model file (.safetensors) or the name "
                              f"of a shipped model ({known})")
    raise CheckpointError(f"model file {str(name_or_path)!r} does not exist, and there is no shipped model of "
                          f"that name (shipped: {known})")
