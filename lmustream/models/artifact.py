"""The single-file model format: safetensors tensors plus a JSON header.

A model file is a standard safetensors file whose ``__metadata__`` holds one entry,
``lmustream``, a JSON object:

    {
      "format": "lmustream-model",
      "format_version": 1,
      "config":   {...LMUFormerConfig fields...},
      "labels":   ["yes", "no", ...],            # one per class, in logit order
      "frontend": {...FbankConfig fields, incl. normalization mean/std...},
      "extra":    {...free-form: training recipe, metrics...}
    }

The tensors are the model's state dict (batch-norm statistics included; the Legendre
A and B are derived from the config and not stored). Python, the ONNX exporter and the
C++ kernel each read this file on their own; docs/model-format.md describes it.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmustream.audio.features import FbankConfig
from lmustream.errors import CheckpointError, not_a_model_file
from lmustream.models.lmuformer import LMUFormer, LMUFormerConfig

FORMAT_NAME = "lmustream-model"
FORMAT_VERSION = 1
METADATA_KEY = "lmustream"


@dataclass
class ModelArtifact:
    """A model with everything needed to run it on audio."""

    model: LMUFormer
    labels: list[str]
    frontend: FbankConfig = field(default_factory=FbankConfig)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        n = self.model.config.n_classes
        if len(self.labels) != n:
            raise CheckpointError(f"{len(self.labels)} labels given for a model with {n} classes")
        if len(set(self.labels)) != len(self.labels):
            raise CheckpointError(f"labels must be unique, got {self.labels}")


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` if a file can be written there (its missing folders made on writing); otherwise an OSError
    naming ``path`` and the fault: a folder at that name, a file where a folder must be, no permission.
    Callers run it before their work, so that the work is not lost to a path that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; name the file to write in it", str(path))
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{str(folder)!r} is a file, not a folder", str(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot write in {str(folder)!r}", str(path))
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one."""
    path = check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # e.g. a read-only file system: name the file asked for, not the temporary one
        raise type(e)(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def torch_load_safely(path: str | os.PathLike, what: str):
    """``torch.load`` of tensors only (``weights_only``: pickled code never runs); CheckpointError naming
    ``what`` and the fault for a file that is not a PyTorch file, or that holds other pickled objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors have many types
        if "Unsupported global" in str(e):  # weights_only refused a class or function the file names
            why = "it holds pickled Python objects besides tensors, which are never loaded (they could run code)"
        else:
            why = f"not a PyTorch checkpoint file ({type(e).__name__}: {_load_error_gist(e)})"
        raise CheckpointError(f"cannot read {what} {os.fspath(path)!r}: {why}") from e


def _load_error_gist(error: Exception) -> str:
    """The line of a torch.load error that says what was wrong (its advice to load unsafely does not apply)."""
    lines = [line.split("WeightsUnpickler error:")[-1].strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    detail = next((line for line in lines if line.startswith("Unsupported")), lines[0] if lines else "no detail")
    return detail.split(". ")[0][:200]  # its first sentence


def save_model(path: str | os.PathLike, artifact: ModelArtifact) -> None:
    """Write ``artifact`` as one self-describing file (atomically)."""
    from safetensors.torch import save

    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": artifact.model.config.to_dict(),
        "labels": list(artifact.labels),
        "frontend": artifact.frontend.to_dict(),
        "extra": artifact.extra,
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in artifact.model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={METADATA_KEY: json.dumps(header)}))


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a model file, validated, without reading the tensors."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"model file {path!r} does not exist")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise not_a_model_file(path, f"not a readable safetensors file ({e})") from e
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path!r} is a safetensors file but not an lmustream model (no '{METADATA_KEY}' header)")
    try:
        header = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path!r}: the lmustream header is not valid JSON: {e}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path!r}: the header does not describe an {FORMAT_NAME} file")
    version = header.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path!r}: the header has no integer format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path!r} uses model format version {version}, newer than this lmustream "
                              f"supports ({FORMAT_VERSION}); upgrade lmustream to read it")
    for key in ("config", "labels", "frontend"):
        if key not in header:
            raise CheckpointError(f"{path!r}: the header lacks '{key}'")
    return header


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> ModelArtifact:
    """Read a model file written by :func:`save_model`; the model comes back in eval mode."""
    from safetensors.torch import load_file

    header = read_header(path)
    try:
        config = LMUFormerConfig.from_dict(header["config"])
        frontend = FbankConfig.from_dict(header["frontend"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{os.fspath(path)!r}: bad config in header: {e}") from e
    try:
        tensors = load_file(os.fspath(path), device="cpu")
    except Exception as e:
        raise CheckpointError(f"{os.fspath(path)!r}: cannot read tensors: {e}") from e
    model = LMUFormer(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = [f"{k}: file {list(v.shape)} vs model {list(expected[k].shape)}"
                 for k, v in tensors.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or misshaped:
        raise CheckpointError(
            f"{os.fspath(path)!r}: tensors do not match the config in its header: "
            f"missing {missing}, unexpected {unexpected}, mis-shaped {misshaped}")
    model.load_state_dict(tensors, strict=True)
    return ModelArtifact(model.to(device).eval(), list(header["labels"]), frontend, header.get("extra", {}))
