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

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from lmustream.audio.features import FbankConfig
from lmustream.errors import CheckpointError, ConfigError, not_a_model_file
from lmustream.models.lmuformer import LMUFormer, LMUFormerConfig
from lmustream.models.registry import resolve_model
from lmustream.paths import check_writable

FORMAT_NAME = "lmustream-model"
FORMAT_VERSION = 1
METADATA_KEY = "lmustream"
# The C++ kernel's reader (csrc/artifact.cc, csrc/json.cc) refuses labels longer than this, JSON nested
# deeper than this, and a batch norm whose running_var + eps is not positive (with torch's default eps).
MAX_LABEL_BYTES = 4096
MAX_JSON_DEPTH = 32
BATCH_NORM_EPS = 1e-5


def check_labels(labels, n_classes: int) -> list[str]:
    """``labels`` as a list, or CheckpointError unless it is a list of ``n_classes`` distinct non-empty strings."""
    # a str is a sequence too: "abc" would become three one-letter labels
    if not isinstance(labels, (list, tuple)):
        raise CheckpointError(f"labels must be a list of strings, got {type(labels).__name__}")
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise CheckpointError(f"labels must be a list of strings; label {i} is {label!r} "
                                  f"({type(label).__name__})")
        if not label:
            raise CheckpointError(f"label {i} is an empty string")
        if len(label.encode("utf-8", "surrogatepass")) > MAX_LABEL_BYTES:
            raise CheckpointError(f"label {i} is longer than {MAX_LABEL_BYTES} bytes")
    if len(labels) != n_classes:
        raise CheckpointError(f"{len(labels)} labels given for a model with {n_classes} classes")
    if len(set(labels)) != len(labels):
        raise CheckpointError(f"labels must be unique, got {list(labels)}")
    return list(labels)


@dataclass
class ModelArtifact:
    """A model with everything needed to run it on audio.

    CheckpointError for labels that are not ``n_classes`` distinct non-empty strings, a frontend
    that is not an FbankConfig or whose n_mels is not the model's, or an ``extra`` that is not a dict.
    """

    model: LMUFormer
    labels: list[str]
    frontend: FbankConfig = field(default_factory=FbankConfig)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """The checks of construction; :func:`save_model` runs them again, as the fields may have been
        reassigned since."""
        if not isinstance(self.model, LMUFormer):
            raise CheckpointError(f"ModelArtifact needs an LMUFormer, got {type(self.model).__name__}")
        self.labels = check_labels(self.labels, self.model.config.n_classes)
        check_frontend(self.frontend, self.model.config.n_mels)
        if not isinstance(self.extra, dict):
            raise CheckpointError(f"extra must be a dict, got {type(self.extra).__name__}")


def check_frontend(frontend, n_mels: int) -> None:
    """CheckpointError unless ``frontend`` is an FbankConfig of ``n_mels`` mel bins (the model's)."""
    if not isinstance(frontend, FbankConfig):
        raise CheckpointError(f"the frontend must be an FbankConfig (FbankConfig.from_dict reads a dict), "
                              f"got {type(frontend).__name__}")
    if frontend.n_mels != n_mels:
        raise CheckpointError(f"frontend.n_mels ({frontend.n_mels}) differs from the model's n_mels ({n_mels})")


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


def _is_counter(name: str) -> bool:
    return name.endswith(".num_batches_tracked")  # batch-norm update counts: integers, unused at inference


def check_tensors(tensors: Mapping[str, torch.Tensor]) -> None:
    """CheckpointError for what the C++ kernel refuses in a state dict: a weight of an integer or bool
    dtype, a NaN or Inf, a batch norm whose running_var + eps is not positive (its scale would be NaN)."""
    for name, t in tensors.items():
        if _is_counter(name):
            continue
        if not t.is_floating_point():
            raise CheckpointError(f"tensor {name!r} has dtype {str(t.dtype)[6:]}; weights must be floating point")
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            index = int((~finite).flatten().nonzero()[0])
            raise CheckpointError(f"tensor {name!r} has a non-finite value (NaN or Inf) at flat index {index}")
        if name.endswith(".running_var"):
            positive = t.float() + BATCH_NORM_EPS > 0
            if not bool(positive.all()):
                channel = int((~positive).nonzero()[0])
                raise CheckpointError(f"tensor {name!r}: running_var + eps is not positive at channel {channel} "
                                      f"({float(t.flatten()[channel])!r})")


def _state_dict_mismatch(expected: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]) -> str | None:
    """What differs between ``tensors`` and the ``expected`` state dict (names and shapes), or None."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = [f"{k}: file {list(v.shape)} vs model {list(expected[k].shape)}"
                 for k, v in tensors.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or misshaped:
        return f"missing {missing}, unexpected {unexpected}, mis-shaped {misshaped}"
    return None


def _json_problem(value, where: str, depth: int) -> str | None:
    """Why ``value`` cannot go into the header so that the C++ kernel reads it back, or None."""
    if depth > MAX_JSON_DEPTH:
        return f"{where} is nested deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, float) and not math.isfinite(value):
        return (f"{where} is {value!r}: JSON has no NaN or Infinity (the C++ kernel refuses such a file); "
                f"store None or a string instead")
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _json_problem(item, f"{where}[{key!r}]", depth + 1)
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = _json_problem(item, f"{where}[{i}]", depth + 1)
            if problem:
                return problem
    return None


def save_model(path: str | os.PathLike, artifact: ModelArtifact) -> None:
    """Write ``artifact`` as one self-describing file (atomically).

    CheckpointError, before anything is written, for a file that :func:`load_model` or the C++
    kernel would refuse: a model with an adapter still attached, weights that are NaN/Inf or a
    batch norm with a negative running variance, or an ``extra`` holding NaN/Inf or values
    JSON cannot hold.
    """
    from safetensors.torch import save

    if not isinstance(artifact, ModelArtifact):
        raise CheckpointError(f"save_model needs a ModelArtifact, got {type(artifact).__name__}")
    artifact.validate()
    model = artifact.model
    adapter = getattr(model, "adapter_config", None)
    if adapter is not None:
        raise CheckpointError(f"the model still has a {getattr(adapter, 'method', '')} adapter attached: merge it "
                              f"(lmustream.adapters.merge) or remove it before saving the model")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with torch.random.fork_rng(devices=[]):  # building the reference model must not move the caller's RNG
        expected = LMUFormer(model.config).state_dict()
    mismatch = _state_dict_mismatch(expected, tensors)
    if mismatch:
        raise CheckpointError(f"the model's tensors do not match its config ({mismatch}); the file would not load")
    check_tensors(tensors)
    problem = _json_problem(artifact.extra, "extra", 1)
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "labels": list(artifact.labels),
        "frontend": artifact.frontend.to_dict(),
        "extra": artifact.extra,
    }
    try:
        text = None if problem else json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as e:  # e.g. a numpy float32 or a Path in extra
        problem = f"extra cannot be written as JSON: {e}"
    if problem:
        raise CheckpointError(f"cannot save the model: {problem}")
    atomic_write_bytes(path, save(tensors, metadata={METADATA_KEY: text}))


def _model_path(path) -> str:
    """The file ``path`` names, or the shipped model of that name (as Kernel and Detector take)."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise CheckpointError(f"a model file path (str or os.PathLike) is needed, got {path!r}")
    return str(resolve_model(os.fsdecode(os.fspath(path))))


def _strict_json(text: str):
    """``json.loads`` that refuses what the C++ kernel's parser refuses and Python's accepts:
    NaN, Infinity, numbers beyond the float range and duplicate keys."""
    def finite(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            raise ValueError(f"number {number} is out of range")
        return value

    def constant(name: str):
        raise ValueError(f"{name} is not JSON")

    def unique(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                raise ValueError(f"duplicate key {key!r}")
            obj[key] = value
        return obj

    return json.loads(text, parse_float=finite, parse_constant=constant, object_pairs_hook=unique)


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a model file, validated, without reading the tensors."""
    from safetensors import safe_open

    path = _model_path(path)
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise not_a_model_file(path, f"not a readable safetensors file ({e})") from e
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path!r} is a safetensors file but not an lmustream model (no '{METADATA_KEY}' header)")
    try:
        header = _strict_json(metadata[METADATA_KEY])
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
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
    """Read a model file written by :func:`save_model` (or a shipped model, by name); the model comes
    back in eval mode.

    It refuses (CheckpointError) what the C++ kernel refuses, so that both run a file or neither:
    config fields of the wrong type or range, labels that are not distinct non-empty strings,
    a frontend that is not an object or whose n_mels is not the model's, weights of an integer
    dtype, NaN/Inf weights and a batch norm whose running_var + eps is not positive. A bad
    ``device`` is a ConfigError.
    """
    from safetensors.torch import load_file

    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"load_model: device {device!r} is not a torch device (e.g. 'cpu', 'cuda:0')") from None
    path = _model_path(path)
    header = read_header(path)
    for key in ("config", "frontend"):
        if not isinstance(header[key], dict):
            raise CheckpointError(f"{path!r}: header '{key}' must be a JSON object, got {type(header[key]).__name__}")
    if not isinstance(header.get("extra", {}), dict):
        raise CheckpointError(f"{path!r}: header 'extra' must be a JSON object, got {type(header['extra']).__name__}")
    try:
        config = LMUFormerConfig.from_dict(header["config"])
        frontend = FbankConfig.from_dict(header["frontend"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path!r}: bad config in header: {e}") from e
    try:
        labels = check_labels(header["labels"], config.n_classes)
    except CheckpointError as e:
        raise CheckpointError(f"{path!r}: header 'labels': {e}") from None
    if frontend.n_mels != config.n_mels:
        raise CheckpointError(f"{path!r}: frontend.n_mels ({frontend.n_mels}) differs from config.n_mels "
                              f"({config.n_mels})")
    try:
        tensors = load_file(path, device="cpu")
    except Exception as e:
        raise CheckpointError(f"{path!r}: cannot read tensors: {e}") from e
    model = LMUFormer(config)
    mismatch = _state_dict_mismatch(model.state_dict(), tensors)
    if mismatch:
        raise CheckpointError(f"{path!r}: tensors do not match the config in its header: {mismatch}")
    try:
        check_tensors(tensors)
    except CheckpointError as e:
        raise CheckpointError(f"{path!r}: {e}") from None
    model.load_state_dict(tensors, strict=True)
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as e:  # e.g. "cuda" on a CPU-only build: torch asserts
        raise ConfigError(f"load_model: cannot use device {str(device)!r}: {e}") from None
    return ModelArtifact(model.eval(), labels, frontend, header.get("extra", {}))
