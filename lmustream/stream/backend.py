"""Which engine runs a model for detection: the C++ kernel when it is built, else PyTorch.

``open_kernel(model, backend)`` returns an object with the kernel API (``labels``,
``lookahead``, ``open()`` -> a stream with ``push`` / ``flush`` / ``reset``):

  * ``"kernel"``: the C++ kernel, ``lmustream.stream.kernel.Kernel`` (no torch at inference);
    an error when it is not available;
  * ``"torch"``: :class:`lmustream.stream.torch_stream.TorchKernel`, the PyTorch step form;
  * ``"auto"`` (default): the C++ kernel when it imports and loads this model, else PyTorch.
    ``kernel.backend_note`` says which one was chosen and, on fallback, why. A file the kernel
    refuses as invalid (CheckpointError: corrupt or inconsistent content) is not run on PyTorch:
    that error is raised, with any backend.

``int8=True`` runs the C++ kernel with int8 weights (docs/kernel.md): it needs the kernel, so
it never falls back to PyTorch.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any


from lmustream.errors import CheckpointError, ConfigError, not_a_model_file
from lmustream.ranges import check_flag

BACKENDS = ("auto", "kernel", "torch")
_SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024  # the JSON header of a sane model file is far smaller


def _cpp_kernel_class():
    """``(Kernel class, None)`` or ``(None, why it is unavailable)``."""
    try:
        from lmustream.stream import kernel as kernel_module
    except Exception as e:  # a broken build must never stop detection
        return None, f"{type(e).__name__}: {e}"
    cls = getattr(kernel_module, "Kernel", None)
    if cls is None:
        return None, "this build's lmustream.stream.kernel has no streaming Kernel"
    available = getattr(kernel_module, "kernel_available", lambda: True)
    if not available():
        info = getattr(kernel_module, "kernel_info", lambda: {})()
        return None, f"the C++ extension is not loaded ({info.get('error')})"
    return cls, None


_NEWER_FORMAT = "newer than this kernel supports"  # csrc/artifact.cc: the one refusal that is the kernel's limit


def _file_is_invalid(error: CheckpointError) -> bool:
    """Whether the C++ kernel's CheckpointError judges the file (corrupt, inconsistent: raise it)
    rather than the kernel (a format version it predates: PyTorch may read it).

    The kernel raises CheckpointError for every problem it finds in a file's content, and other
    types for anything else. A build left over from another lmustream version cannot be trusted
    to judge this version's files, so its refusals fall back too.
    """
    if _NEWER_FORMAT in str(error):
        return False
    try:
        from lmustream.stream import kernel as kernel_module

        stale = kernel_module.kernel_info().get("error") is not None
    except Exception:  # the probe must not hide the kernel's own error
        stale = False
    return not stale


def check_model_spec(model: Any, who: str, kernel_ok: bool = False) -> None:
    """ConfigError unless ``model`` is something a model can be opened from: a file path, a
    shipped model's name, a ModelArtifact, or (``kernel_ok``) an opened kernel."""
    if isinstance(model, (str, os.PathLike)) and os.fspath(model):
        return
    if type(model).__name__ == "ModelArtifact" or (kernel_ok and hasattr(model, "open") and hasattr(model, "labels")):
        return
    what = repr(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    kinds = "a model file path, a shipped model name, a ModelArtifact" + (" or an opened kernel" if kernel_ok else "")
    raise ConfigError(f"{who}: model must be {kinds}, got {what}")


def default_backend_note() -> str:
    """What ``backend="auto"`` runs models on here (``lmustream info``)."""
    cls, why = _cpp_kernel_class()
    return "C++ kernel (lmustream.stream.kernel.Kernel)" if cls is not None else f"PyTorch step form ({why})"


def open_kernel(model: Any, backend: str = "auto", threads: int | None = None, int8: bool = False):
    """Load ``model`` (file path, shipped name, or a ModelArtifact: torch only) on a backend.

    The returned object carries ``backend`` ("kernel" or "torch") and ``backend_note``.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_model_spec(model, "open_kernel")
    int8 = check_flag("int8", int8)
    from lmustream.models.registry import resolve_model

    is_artifact = type(model).__name__ == "ModelArtifact"
    if int8 and (backend == "torch" or is_artifact):
        raise ConfigError("int8 weights run on the C++ kernel only: use backend 'kernel' or 'auto' with a model "
                          "file" + ("" if backend == "torch" else ", not an in-memory ModelArtifact"))
    note = None
    if backend in ("auto", "kernel") and not is_artifact:
        path = resolve_model(model)
        cls, why = _cpp_kernel_class()
        if cls is not None:
            try:
                kernel = cls(str(path), int8=int8)
            except CheckpointError as e:
                if _file_is_invalid(e):
                    raise  # PyTorch would run the same bad file, without the kernel's checks
                why = f"the C++ kernel could not load {path.name}: {type(e).__name__}: {e}"
            except Exception as e:  # e.g. a model kind the C++ kernel does not support yet
                why = f"the C++ kernel could not load {path.name}: {type(e).__name__}: {e}"
            else:
                simd = getattr(kernel, "simd", None)
                weights = ", int8 weights" if int8 else ""
                _set_note(kernel, "kernel", f"C++ kernel ({simd}{weights})" if simd else f"C++ kernel{weights}")
                return kernel
        if int8:
            raise ConfigError(f"int8 weights need the C++ kernel, but {why}")
        if backend == "kernel":
            raise ConfigError(f"backend 'kernel' requested but {why}")
        note = f"PyTorch step form (C++ kernel unavailable: {why})"
    elif backend == "kernel":
        raise ConfigError("backend 'kernel' needs a model file, not an in-memory ModelArtifact")
    from lmustream.stream.torch_stream import TorchKernel

    kernel = TorchKernel(model, threads=threads)
    _set_note(kernel, "torch", note or "PyTorch step form")
    return kernel


def _set_note(kernel, backend: str, note: str) -> None:
    for name, value in (("backend", backend), ("backend_note", note)):
        try:
            setattr(kernel, name, value)
        except AttributeError:  # a C++ class without a __dict__: keep the note aside
            _NOTES[id(kernel)] = (backend, note)


_NOTES: dict[int, tuple[str, str]] = {}


def backend_of(kernel) -> tuple[str, str]:
    """``(backend, note)`` of a kernel returned by :func:`open_kernel`."""
    if id(kernel) in _NOTES:
        return _NOTES[id(kernel)]
    return getattr(kernel, "backend", "unknown"), getattr(kernel, "backend_note", "unknown")


def read_model_header(path: str | os.PathLike) -> dict:
    """The ``lmustream`` JSON header of a model file, read without torch (or safetensors).

    A safetensors file starts with an 8-byte little-endian header length and a JSON header
    whose ``__metadata__`` holds our header as a JSON string (docs/model-format.md).
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{name!r} is too short to be a model file")
            (size,) = struct.unpack("<Q", head)
            if size > min(_SAFETENSORS_HEADER_LIMIT, os.path.getsize(name) - 8):
                raise not_a_model_file(name, f"its header length {size} does not fit the file")
            outer = json.loads(f.read(size))
        header = json.loads(outer["__metadata__"]["lmustream"])
    except OSError as e:
        raise CheckpointError(f"cannot read model file {name!r}: {e}") from e
    except (ValueError, KeyError, TypeError) as e:
        raise not_a_model_file(name, f"no lmustream header ({type(e).__name__}: {e})") from e
    if not isinstance(header, dict) or "labels" not in header:
        raise CheckpointError(f"{name!r}: the lmustream header has no labels")
    return header


def model_training_loss(model: Any) -> str | None:
    """The loss that last shaped the model's logits ("bce" or "ce"), or None (see :func:`training_loss_in`)."""
    if type(model).__name__ == "ModelArtifact":
        return training_loss_in(model.extra)
    from lmustream.models.registry import resolve_model

    return training_loss_in(read_model_header(resolve_model(model)).get("extra") or {})


def training_loss_in(extra) -> str | None:
    """The training loss a model header's ``extra`` records. A fine-tuned model's (``extra.finetune.loss``,
    see lmustream.adapters.finetune) comes before the recipe of the model it was adapted from
    (``extra.recipe.optim.loss``)."""
    if not isinstance(extra, dict):
        return None
    finetuned = (extra.get("finetune") or {}).get("loss")
    recipe = ((extra.get("recipe") or {}).get("optim") or {}).get("loss")
    return next((loss for loss in (finetuned, recipe) if isinstance(loss, str)), None)


def kernel_training_loss(kernel) -> str | None:
    """:func:`model_training_loss` of the model an opened kernel runs (None when it cannot tell)."""
    source = getattr(kernel, "artifact", None) or getattr(kernel, "path", None)
    if source is None:
        return None
    try:
        return model_training_loss(source)
    except (CheckpointError, OSError):
        return None


def model_detector_defaults(model: Any) -> dict:
    """The detector settings a model ships with (``extra.detector`` of its header), or ``{}``.

    Looked up, in order: the model file's header, then a ``<model>.detector.json`` file beside
    it (written by ``lmustream calibrate --out``), so a calibration can ship without rewriting
    the model file.
    """
    if type(model).__name__ == "ModelArtifact":
        return dict(model.extra.get("detector", {}))
    from lmustream.models.registry import resolve_model

    path = Path(resolve_model(model))
    return detector_defaults_in(read_model_header(path).get("extra") or {}, path)


def detector_defaults_in(extra: dict, path: Path) -> dict:
    """:func:`model_detector_defaults` of the model file ``path`` whose header's ``extra`` is given."""
    from lmustream.shipped import beside_model

    found = dict(extra.get("detector", {}))
    sidecar = beside_model(path, ".detector.json")
    if not found and sidecar.is_file():
        try:
            found = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{sidecar}: not a readable detector calibration: {e}") from e
        if not isinstance(found, dict):
            raise ConfigError(f"{sidecar}: expected a JSON object")
    return found
