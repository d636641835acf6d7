"""The models and training recipes that ship with lmustream, found by name.

A source checkout keeps them in ``models/`` and ``configs/`` beside the package. An installed
wheel has no checkout around it, so setup.py copies both folders into the package
(``lmustream/_shipped/``): ``--model sc12-lmuformer`` and ``--config sc12-lmuformer`` then work
after ``pip install .`` as they do in the checkout. The checkout's files win where both exist
(an editable install sees the files being edited).

Torch-free: the C++ kernel's Python face resolves model names without importing torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from lmustream.errors import CheckpointError, ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent
INSTALLED_DIR = PACKAGE_DIR / "_shipped"
MODEL_SUFFIX = ".safetensors"
CONFIG_SUFFIX = ".yaml"


def shipped_folders(kind: str) -> list[Path]:
    """Where shipped files of ``kind`` ("models" or "configs") are, checkout first."""
    return [root / kind for root in (CHECKOUT_DIR, INSTALLED_DIR) if (root / kind).is_dir()]


def _shipped_names(kind: str, suffix: str) -> list[str]:
    return sorted({p.name[: -len(suffix)] for folder in shipped_folders(kind) for p in folder.glob(f"*{suffix}")})


def _shipped_file(kind: str, name: str, suffix: str) -> Path | None:
    if not name or os.sep in name or (os.altsep and os.altsep in name):
        return None  # a path, not a name
    for folder in shipped_folders(kind):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def shipped_models() -> list[str]:
    """Names of the shipped models (``models/<name>.safetensors``)."""
    return _shipped_names("models", MODEL_SUFFIX)


def shipped_configs() -> list[str]:
    """Names of the shipped training recipes (``configs/<name>.yaml``)."""
    return _shipped_names("configs", CONFIG_SUFFIX)


def model_card(name: str) -> Path | None:
    """The model card ``<name>.md`` of a shipped model, or None."""
    return _shipped_file("models", name, ".md")


def beside_model(path: Path, suffix: str) -> Path:
    """The file ``<model name><suffix>`` next to the model file ``path`` (its card ``.md``, its
    calibration ``.detector.json``)."""
    stem = path.name[: -len(MODEL_SUFFIX)] if path.name.endswith(MODEL_SUFFIX) else path.stem
    return path.with_name(f"{stem}{suffix}")


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A model file path from a path or the name of a shipped model."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = _shipped_file("models", os.fspath(name_or_path), MODEL_SUFFIX)
    if shipped is not None:
        return shipped
    known = ", ".join(shipped_models()) or "none in this installation"
    if path.is_dir():
        raise CheckpointError(f"{str(name_or_path)!r} is a folder; pass a model file (.safetensors) or the name "
                              f"of a shipped model ({known})")
    raise CheckpointError(f"model file {str(name_or_path)!r} does not exist, and there is no shipped model of "
                          f"that name (shipped: {known})")


def resolve_config(name_or_path: str | os.PathLike) -> Path:
    """A recipe path from a path or the name of a shipped recipe (``sc12-lmuformer``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = os.fspath(name_or_path)
    name = text[: -len(CONFIG_SUFFIX)] if text.endswith(CONFIG_SUFFIX) else text
    shipped = _shipped_file("configs", name, CONFIG_SUFFIX)
    if shipped is not None:
        return shipped
    if path.is_dir():
        raise ConfigError(f"config file {text!r} is a folder; pass a YAML recipe such as configs/sc12-lmuformer.yaml "
                          f"or the name of a shipped one")
    known = ", ".join(shipped_configs()) or "none in this installation"
    raise ConfigError(f"config file {text!r} does not exist, and there is no shipped recipe of that name "
                      f"(shipped: {known})")
