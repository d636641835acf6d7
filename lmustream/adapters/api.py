"""The user-facing adapter API, in the style of PEFT.

    from lmustream.adapters import AFLoRAConfig, add_adapter, print_trainable_parameters, merge

    add_adapter(model, AFLoRAConfig(rank=4, target_modules=["blocks.*", "embed.rpe"]))
    print_trainable_parameters(model)        # trainable params: ... || all params: ... || trainable%: ...
    ...train...
    save_adapter("accent.adapter.safetensors", model, labels)   # the adapter alone: small
    model = merge(model)                      # a plain LMUFormer again: W0 + dW, zero extra cost

and later, on the same base model: ``load_adapter(base_model, "accent.adapter.safetensors")``.

An adapter file is a safetensors file holding the adapter's tensors (the low-rank matrices and
vectors, and the modules trained whole, such as a grown head) with a JSON header under
``__metadata__["lmustream"]``: format name and version, the adapter config, the base model's
config, the labels (when the head changed), a fingerprint of the base weights the adapter was
trained on, and free-form extras (freeze log, metrics).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from lmustream.adapters.aflora import AFLoRAConfig, add_aflora
from lmustream.adapters.baselines import FullFineTuneConfig, HeadOnlyConfig
from lmustream.adapters.core import AdaptedLayer, AdapterConfig, matches_pattern, replace_module
from lmustream.adapters.head import grow_head
from lmustream.adapters.lora import LoRAConfig, add_lora
from lmustream.adapters.vera import VeRAConfig, add_vera
from lmustream.errors import CheckpointError, ConfigError

ADAPTER_FORMAT = "lmustream-adapter"
ADAPTER_FORMAT_VERSION = 1
METADATA_KEY = "lmustream"

CONFIGS: dict[str, type[AdapterConfig]] = {
    "aflora": AFLoRAConfig, "lora": LoRAConfig, "vera": VeRAConfig, "head": HeadOnlyConfig, "full": FullFineTuneConfig}
_ADD = {"aflora": add_aflora, "lora": add_lora, "vera": add_vera}
METHODS = tuple(CONFIGS)


def make_config(method: str, **fields) -> AdapterConfig:
    """The config of ``method`` ("aflora", "lora", "vera", "head", "full") with ``fields`` set."""
    if method not in CONFIGS:
        raise ConfigError(f"unknown fine-tuning method {method!r}; known: {', '.join(METHODS)}")
    try:
        return CONFIGS[method](**fields)
    except TypeError as e:  # a field this method does not have
        raise ConfigError(f"{method} adapter config: {e}") from None


def adapter_config(model: nn.Module) -> AdapterConfig | None:
    """The config of the adapter added to ``model``, or None."""
    return getattr(model, "adapter_config", None)


def adapter_layers(model: nn.Module) -> dict[str, AdaptedLayer]:
    """Every adapted layer of ``model`` by module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AdaptedLayer)}


def _saved_modules(model: nn.Module, config: AdapterConfig) -> dict[str, nn.Module]:
    found = {}
    for pattern in config.modules_to_save:
        hits = {name: m for name, m in model.named_modules() if name and matches_pattern(name, pattern)}
        if not hits:
            raise ConfigError(f"modules_to_save pattern {pattern!r} matches no module of the model")
        found.update(hits)
    return found


def add_adapter(model: nn.Module, config: AdapterConfig) -> nn.Module:
    """Add the adapter of ``config`` to ``model`` in place and make only its parameters trainable.

    AFLoRA, LoRA and VeRA wrap each target layer (frozen) with their path; ``head`` trains the
    modules in ``modules_to_save`` only; ``full`` trains everything. ``modules_to_save`` (the head
    by default) is trained whole by every method. Returns ``model``.
    """
    _check_module(model, "add_adapter")
    if not isinstance(config, AdapterConfig) or not config.method:
        raise ConfigError(f"add_adapter needs an adapter config (one of {', '.join(METHODS)}), got {config!r}")
    if adapter_config(model) is not None:
        raise ConfigError(f"the model already has an adapter ({adapter_config(model).method}); merge it first")
    saved = _saved_modules(model, config)
    # Everything below changes the model step by step, and a target layer found unfit halfway (a
    # strided Conv1d) must not leave the layers before it wrapped or every parameter frozen: a
    # caller that catches the error and trains on would train nothing.
    trainable = [(p, p.requires_grad) for p in model.parameters()]
    adapted_before = set(adapter_layers(model))
    try:
        model.requires_grad_(config.method == "full")
        if config.method in _ADD:
            _ADD[config.method](model, config)  # new adapter parameters are created trainable
        for module in saved.values():
            module.requires_grad_(True)
    except BaseException:
        for name, layer in adapter_layers(model).items():
            if name not in adapted_before:
                replace_module(model, name, layer.base)
        for p, was_trainable in trainable:
            p.requires_grad_(was_trainable)
        raise
    model.adapter_config = config
    return model


def _check_module(model: object, caller: str) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{caller} needs a model (a torch nn.Module), got {type(model).__name__}")


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, all)`` parameter counts (shared tensors counted once; VeRA's buffers are not parameters)."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def print_trainable_parameters(model: nn.Module, file=None) -> None:
    """``trainable params: N || all params: M || trainable%: P`` (the PEFT line)."""
    _check_module(model, "print_trainable_parameters")
    trainable, total = count_parameters(model)
    share = 100 * trainable / total if total else 0.0  # a module without parameters (a ReLU) trains none
    print(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {share:.4f}",
          file=file or sys.stdout)


# ------------------------------------------------------------------------------ merge


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter path into its layer's weights (``W0 + dW``) and drop the adapter.

    The result is a plain model (the same class, the same state-dict keys as before
    ``add_adapter``, plus a grown head if it grew) that saves to the single-file artifact,
    exports to ONNX and runs in the step form unchanged. Every parameter is trainable again.
    """
    _check_module(model, "merge")
    for name, layer in adapter_layers(model).items():
        replace_module(model, name, layer.merged())
    if hasattr(model, "adapter_config"):
        del model.adapter_config
    model.requires_grad_(True)
    return model


# ------------------------------------------------------------------------------ files


def _is_adapter_key(key: str, layers: dict[str, AdaptedLayer]) -> bool:
    owner = next((name for name in layers if key.startswith(name + ".")), None)
    return owner is not None and not key.startswith(owner + ".base.")


def _is_saved_key(key: str, saved: dict[str, nn.Module]) -> bool:
    return any(key.startswith(name + ".") for name in saved)


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors an adapter file holds: adapter parameters and the modules trained whole."""
    config = adapter_config(model)
    if config is None:
        raise ConfigError("the model has no adapter (add_adapter or load_adapter first)")
    state = model.state_dict()
    if config.method == "full":
        return dict(state)
    layers, saved = adapter_layers(model), _saved_modules(model, config)
    return {k: v for k, v in state.items() if _is_adapter_key(k, layers) or _is_saved_key(k, saved)}


def base_fingerprint(model: nn.Module, config: AdapterConfig) -> str:
    """sha256 of the pretrained tensors an adapter builds on (the modules it trains whole excluded).

    The same for the plain model and for the model with the adapter added, so a file can check
    that it is being loaded onto the base it was trained on.
    """
    layers, saved = adapter_layers(model), _saved_modules(model, config)
    digest = hashlib.sha256()
    items = []
    for key, value in model.state_dict().items():
        if _is_adapter_key(key, layers) or _is_saved_key(key, saved):
            continue
        items.append((key.replace(".base.", "."), value))
    for key, value in sorted(items, key=lambda kv: kv[0]):
        digest.update(key.encode())
        digest.update(value.detach().to("cpu", torch.float64 if value.is_floating_point() else value.dtype)
                      .contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_adapter(path: str | os.PathLike, model: nn.Module, labels: list[str] | None = None,
                 extra: dict | None = None) -> None:
    """Write the adapter of ``model`` alone (atomically); ``labels`` when the head's classes changed."""
    from safetensors.torch import save

    from lmustream.models.artifact import atomic_write_bytes

    config = adapter_config(model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in adapter_state_dict(model).items()}
    header = {"format": ADAPTER_FORMAT, "format_version": ADAPTER_FORMAT_VERSION, "adapter": config.to_dict(),
              "model_config": model.config.to_dict(), "labels": list(labels) if labels is not None else None,
              "base_fingerprint": None if config.method == "full" else base_fingerprint(model, config),
              "extra": extra or {}}
    atomic_write_bytes(path, save(tensors, metadata={METADATA_KEY: json.dumps(header)}))


def read_adapter_header(path: str | os.PathLike) -> dict:
    """The validated JSON header of an adapter file."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"adapter file {path!r} does not exist")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        header = json.loads(metadata[METADATA_KEY])
    except KeyError:
        raise CheckpointError(f"{path!r} is a safetensors file but not an lmustream adapter (no header)") from None
    except Exception as e:
        raise CheckpointError(f"{path!r} is not a readable adapter file: {e}") from e
    if not isinstance(header, dict) or header.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(f"{path!r} is not an lmustream adapter file (format {header.get('format')!r})"
                              if isinstance(header, dict) else f"{path!r}: bad adapter header")
    if not isinstance(header.get("format_version"), int) or header["format_version"] > ADAPTER_FORMAT_VERSION:
        raise CheckpointError(f"{path!r}: adapter format version {header.get('format_version')!r} is not supported "
                              f"(this lmustream reads up to {ADAPTER_FORMAT_VERSION})")
    for key in ("adapter", "model_config"):
        if not isinstance(header.get(key), dict):
            raise CheckpointError(f"{path!r}: the adapter header lacks '{key}'")
    return header


def load_adapter(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> dict:
    """Add the adapter stored at ``path`` to ``model`` (its base) with its trained values; returns the header.

    The head grows to the file's class count when the adapter taught new classes (the header's
    ``labels`` then name them all). ``strict`` refuses a base model whose weights differ from those
    the adapter was trained on. A file that does not fit leaves ``model`` as it was.
    """
    from safetensors.torch import load_file

    from lmustream.models.artifact import check_labels

    if not (isinstance(model, nn.Module) and callable(getattr(getattr(model, "config", None), "to_dict", None))):
        raise ConfigError(f"load_adapter needs the base model the adapter was trained on (an LMUFormer), got "
                          f"{type(model).__name__}")
    if adapter_config(model) is not None:
        raise ConfigError(f"the model already has an adapter ({adapter_config(model).method}); merge it first")
    header = read_adapter_header(path)
    where = os.fspath(path)
    config_dict = dict(header["adapter"])
    method = config_dict.get("method")
    if method not in CONFIGS:
        raise CheckpointError(f"{where!r}: unknown adapter method {method!r}")
    try:
        config = CONFIGS[method].from_dict(config_dict)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where!r}: bad adapter config: {e}") from e
    mine = {k: v for k, v in model.config.to_dict().items() if k != "n_classes"}
    theirs = {k: v for k, v in header["model_config"].items() if k != "n_classes"}
    if mine != theirs:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise CheckpointError(f"{where!r} was trained on a model of another shape (differs in {', '.join(diff)})")
    n_classes = header["model_config"].get("n_classes", model.config.n_classes)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise CheckpointError(f"{where!r}: the adapter header's n_classes must be a positive integer, got "
                              f"{n_classes!r}")
    if n_classes < model.config.n_classes:
        raise CheckpointError(f"{where!r} has {n_classes} classes and this model {model.config.n_classes}: an "
                              f"adapter can only add classes to its base's (is this its base model?)")
    if header.get("labels") is not None:
        try:
            check_labels(header["labels"], n_classes)
        except CheckpointError as e:
            raise CheckpointError(f"{where!r}: the adapter header's labels: {e}") from None
    try:
        if strict and header.get("base_fingerprint") and base_fingerprint(model, config) != header["base_fingerprint"]:
            raise CheckpointError(f"{where!r} was trained on other base weights than this model's "
                                  "(pass strict=False to load it anyway)")
    except ConfigError as e:  # its modules_to_save name modules this model lacks
        raise CheckpointError(f"{where!r} does not fit this model: {e}") from None
    try:
        tensors = load_file(where, device="cpu")
    except Exception as e:
        raise CheckpointError(f"{where!r}: the adapter's tensors cannot be read: {e}") from e
    broken = sorted(k for k, v in tensors.items()
                    if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()))
    if broken:
        raise CheckpointError(f"{where!r}: adapter tensors hold NaN or infinity: {broken[:5]}")
    # The file is fitted to a copy first: a file that does not fit (a target this model lacks, a
    # tensor of another shape) is found only once the adapter is built, and must not leave a grown
    # head or a half-attached adapter on the caller's model.
    try:
        _fit_adapter(copy.deepcopy(model), config, n_classes, tensors, where)
    except ConfigError as e:
        raise CheckpointError(f"{where!r} does not fit this model: {e}") from None
    _fit_adapter(model, config, n_classes, tensors, where)
    return header


def _tensor_kind(t: torch.Tensor) -> str:
    return "complex" if t.is_complex() else "float" if t.is_floating_point() else "bool" if t.dtype == torch.bool \
        else "integer"


def _fit_adapter(model: nn.Module, config: AdapterConfig, n_classes: int, tensors: dict[str, torch.Tensor],
                 where: str) -> None:
    """Grow the head, add the adapter of ``config`` and load ``tensors`` (CheckpointError if they do not fit)."""
    if n_classes != model.config.n_classes:
        grow_head(model, n_classes)
    add_adapter(model, config)
    expected = adapter_state_dict(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = [k for k in tensors if k in expected and tensors[k].shape != expected[k].shape]
    if missing or unexpected or misshaped:
        raise CheckpointError(f"{where!r}: tensors do not fit the model: missing {missing[:5]}, unexpected "
                              f"{unexpected[:5]}, mis-shaped {misshaped[:5]}")
    # load_state_dict would cast an integer tensor into a float weight without a word
    retyped = [k for k in tensors if _tensor_kind(tensors[k]) != _tensor_kind(expected[k])]
    if retyped:
        raise CheckpointError(f"{where!r}: tensors of the wrong dtype: " + ", ".join(
            f"{k} is {tensors[k].dtype}, the model's {expected[k].dtype}" for k in retyped[:5]))
    model.load_state_dict(tensors, strict=False)


# Header keys of a base model that describe its own outputs and so do not carry over to an adapted
# model: a detector calibration (thresholds, smoothing) was chosen for the base's posteriors.
BASE_ONLY_EXTRA = ("detector",)


def adapted_extra(base_extra: dict, extra: dict | None = None) -> dict:
    """The header extras of a model adapted from a base: the base's (its recipe, for the record) with
    ``extra`` on top, less what described the base's outputs alone (:data:`BASE_ONLY_EXTRA`)."""
    kept = {k: v for k, v in base_extra.items() if k not in BASE_ONLY_EXTRA}
    return {**kept, **(extra or {})}


def merged_artifact(artifact, labels: list[str] | None = None, extra: dict | None = None):
    """A :class:`~lmustream.models.artifact.ModelArtifact` of ``artifact.model`` merged (new labels if given)."""
    from lmustream.models.artifact import ModelArtifact

    model = merge(artifact.model).eval()
    return ModelArtifact(model, list(labels or artifact.labels), artifact.frontend, adapted_extra(artifact.extra, extra))


def default_adapter_path(model_path: str | os.PathLike) -> Path:
    """``x.safetensors`` -> ``x.adapter.safetensors``."""
    path = Path(model_path)
    stem = path.name[:-len(".safetensors")] if path.name.endswith(".safetensors") else path.stem
    return path.with_name(f"{stem}.adapter.safetensors")
