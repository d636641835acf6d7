"""What every adapter kind shares: its config fields, the adapted layer, and choosing targets by name.

An adapted layer keeps the pretrained layer (``W0``, frozen) and adds a parallel low-rank path:

    y = W0 x + b + up(down(x))

``down`` acts like the base layer with ``rank`` output channels: for a Conv1d it has the base
kernel, padding and causality, so that a kernel-k convolution gets a kernel-k down-projection;
``up`` is a per-frame linear map ``rank -> out``. The path is therefore one weight delta
``dW [out, in, k]`` (``[out, in]`` for a Linear) and merges into ``W0`` exactly: after
:func:`lmustream.adapters.merge` the model is a plain LMUFormer again.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import re
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lmustream.adapters import frozen_down
from lmustream.errors import ConfigError
from lmustream.ranges import check_range

ALL_LAYERS = ("*",)  # every Linear and Conv1d of the model (except modules_to_save)
REGEX_PREFIX = "re:"


@dataclass(frozen=True)
class AdapterConfig:
    """Fields common to every fine-tuning method.

    target_modules: which layers get an adapter: names or glob patterns of module paths
      ("blocks.0.lmu.W_h", "embed.convs.*", "fc1" matches every "...fc1"), or "re:<regex>"
      matched against the whole path. Default: every Linear and Conv1d.
    exclude_modules: patterns removed from the targets.
    modules_to_save: modules trained whole and saved with the adapter (the classifier head).
    seed: draws the adapters' random initial values (independent of the global RNG).

    Configs are frozen: a field set after the checks could otherwise reach a model unchecked (a NaN
    alpha, a rank of 0). ``dataclasses.replace(config, rank=8)`` makes a changed copy, checked.
    """

    method: ClassVar[str] = ""
    target_modules: tuple = ALL_LAYERS
    exclude_modules: tuple = ()
    modules_to_save: tuple = ("head",)
    seed: int = 0

    def __post_init__(self):
        for name in ("target_modules", "exclude_modules", "modules_to_save"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"{type(self).__name__}.{name} must be a list of module names or patterns, "
                                  f"got {value!r}")
            for pattern in value:
                if pattern.startswith(REGEX_PREFIX):
                    try:
                        re.compile(pattern[len(REGEX_PREFIX):])
                    except re.error as e:
                        raise ConfigError(f"{type(self).__name__}.{name}: bad regular expression {pattern!r}: "
                                          f"{e}") from None
            object.__setattr__(self, name, tuple(value))  # frozen: set once, before the config is handed out
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"{type(self).__name__}.seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        return {"method": self.method, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "AdapterConfig":
        d = {k: v for k, v in d.items() if k != "method"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**d)


def positive_int(owner: object, name: str) -> None:
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{type(owner).__name__}.{name} must be a positive integer, got {value!r}")


# A scale or start the float32 weights cannot hold: it becomes inf there, and 0 * inf (a vector
# that starts at zero) is NaN in the first forward pass. float32's largest is 3.40282e38.
FLOAT32_BOUND = "3.4e38"


def check_lambda_d_init(config: "AdapterConfig") -> None:
    """AFLoRA's and VeRA's down-side vector start: finite, within float32 and not 0."""
    name = f"{type(config).__name__}.lambda_d_init"
    check_range(name, config.lambda_d_init, f"[-{FLOAT32_BOUND}, {FLOAT32_BOUND}]")
    if config.lambda_d_init == 0:
        # The up-side vector starts at 0 too, and each vector's gradient is proportional to the
        # other: the path would never move from zero, and the run would train the head alone.
        raise ConfigError(f"{name} must not be 0 (with the up-side vector starting at 0 the path would get no "
                          f"gradient)")


def layer_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, layer name): the same adapter whatever else drew random numbers."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def kaiming_uniform(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """nn.Linear's default initialisation (Kaiming uniform, a = sqrt(5)) of a [out, in] matrix."""
    weight = torch.empty(shape)
    return nn.init.kaiming_uniform_(weight, a=5 ** 0.5, generator=generator)


# ------------------------------------------------------------------------------ targets


def matches_pattern(name: str, pattern: str) -> bool:
    """Whether module path ``name`` matches a target pattern (glob on the path or a suffix, or re:regex)."""
    if pattern.startswith(REGEX_PREFIX):
        return re.fullmatch(pattern[len(REGEX_PREFIX):], name) is not None
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*." + pattern)


def adaptable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear and Conv1d of ``model`` by module path (already adapted layers excluded).

    ``model`` itself is never one: an adapter replaces a layer in its parent, and the root has none
    (a bare Linear adapted "in itself" would wrap itself and recurse forever).
    """
    adapted = [name for name, module in model.named_modules() if isinstance(module, AdaptedLayer)]
    return {name: module for name, module in model.named_modules()
            if name and isinstance(module, (nn.Linear, nn.Conv1d))
            and not any(name == a or name.startswith(a + ".") for a in adapted)}


def select_targets(model: nn.Module, config: AdapterConfig) -> list[str]:
    """Module paths of the layers ``config`` adapts; a pattern that matches nothing is an error."""
    candidates = adaptable_layers(model)
    if not candidates:
        raise ConfigError(f"the {type(model).__name__} has no Linear or Conv1d layer inside it to adapt (an adapter "
                          f"replaces layers within a model, not the model itself)")
    saved = [n for n in candidates if any(matches_pattern(n, p) for p in config.modules_to_save)]
    chosen = []
    for pattern in config.target_modules:
        hits = [n for n in candidates if matches_pattern(n, pattern)]
        if not hits:
            raise ConfigError(f"target module pattern {pattern!r} matches no Linear or Conv1d layer; "
                              f"the layers are: {', '.join(candidates)}")
        chosen += [n for n in hits if n not in chosen]
    for pattern in config.exclude_modules:
        chosen = [n for n in chosen if not matches_pattern(n, pattern)]
    chosen = [n for n in chosen if n not in saved]
    if not chosen:
        raise ConfigError(f"no layer left to adapt (targets {list(config.target_modules)}, excluded "
                          f"{list(config.exclude_modules)}, trained whole {list(config.modules_to_save)})")
    return chosen


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def inject(model: nn.Module, config: AdapterConfig, make_layer) -> dict[str, "AdaptedLayer"]:
    """Replace every target layer of ``config`` by ``make_layer(name, layer)``; returns the new layers."""
    layers = {}
    for name in select_targets(model, config):
        layers[name] = make_layer(name, model.get_submodule(name))
        replace_module(model, name, layers[name])
    return layers


# ------------------------------------------------------------------------------ the adapted layer


class AdaptedLayer(nn.Module):
    """A frozen ``nn.Linear`` / ``nn.Conv1d`` (``self.base``) plus a parallel low-rank path.

    Subclasses define the path as two matrices: :meth:`down_matrix` ``A [rank, in_features]``
    (``in_features`` = in_channels x kernel for a convolution), applied to x like the base layer,
    and :meth:`up_matrix` ``U [out, rank]``, applied per frame. The path is ``U A x``, and its
    weight ``dW = U A``. While A is trainable the path runs beside the base layer; once A is
    frozen, base and path run as the single product ``(W0 + U A) x``
    (:mod:`lmustream.adapters.frozen_down`).
    """

    method: ClassVar[str] = ""

    def __init__(self, base: nn.Module, rank: int):
        super().__init__()
        if isinstance(base, nn.Conv1d):
            if base.stride != (1,) or base.dilation != (1,) or base.groups != 1 or base.padding_mode != "zeros":
                raise ConfigError(f"adapters support Conv1d with stride 1, dilation 1, groups 1 and zero "
                                  f"padding only, got {base}")
            self.is_conv = True
            self.kernel = base.kernel_size[0]
            self.in_features = base.in_channels * self.kernel
            self.out_features = base.out_channels
        elif isinstance(base, nn.Linear):
            self.is_conv = False
            self.kernel = 1
            self.in_features, self.out_features = base.in_features, base.out_features
        else:
            raise ConfigError(f"adapters wrap nn.Linear or nn.Conv1d layers, got {type(base).__name__}")
        self.base = base
        base.requires_grad_(False)  # W0 is never trained by an adapter
        self.rank = rank

    # -- the path's building blocks ---------------------------------------------------------
    def apply_like_base(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``weight`` (``[n, in_features]``, or a convolution weight ``[n, in_ch, k]``) applied as the
        base layer applies W0 (same kernel, padding, causality)."""
        if not self.is_conv:
            return F.linear(x, weight, bias)
        weight = weight.reshape(weight.shape[0], self.base.in_channels, self.kernel)
        if getattr(self.base, "causal", False):  # FrameConv: left padding, no look-ahead
            return F.conv1d(F.pad(x, (self.kernel - 1, 0)), weight, bias)
        return F.conv1d(x, weight, bias, padding=self.base.padding)

    def down(self, x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """``A [rank, in_features]`` applied like the base layer: [..., in] -> [..., rank] or [B, in, N] -> [B, rank, N]."""
        return self.apply_like_base(x, A)

    def up(self, h: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """``U [out, rank]`` applied per frame."""
        return F.conv1d(h, U[:, :, None]) if self.is_conv else F.linear(h, U)

    # -- what subclasses define -------------------------------------------------------------
    def down_matrix(self) -> torch.Tensor:
        """``A [rank, in_features]``: what the path applies to x first."""
        raise NotImplementedError

    def up_matrix(self) -> torch.Tensor:
        """``U [out, rank]``: what the path applies to ``A x``."""
        raise NotImplementedError

    def matrices(self) -> dict[str, nn.Parameter]:
        """The projection matrices that adaptive freezing may freeze (empty for most kinds)."""
        return {}

    # -- forward and merge ------------------------------------------------------------------
    def path(self, x: torch.Tensor) -> torch.Tensor:
        """The path alone: ``U A x``."""
        return self.up(self.down(x, self.down_matrix()), self.up_matrix())

    def delta_weight(self) -> torch.Tensor:
        """The path as a weight: ``U A`` ``[out, in_features]``."""
        return self.up_matrix() @ self.down_matrix()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        A = self.down_matrix()
        if frozen_down.usable(self, A):
            return frozen_down.frozen_down_forward(self, x, A, self.up_matrix())
        return self.base(x) + self.path(x)

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """A copy of the base layer with the path folded into its weight: ``W0 + dW``."""
        layer = copy.deepcopy(self.base)
        delta = self.delta_weight().to(layer.weight.dtype)
        layer.weight.add_(delta.view_as(layer.weight))
        return layer

    def extra_repr(self) -> str:
        kind = f"Conv1d k={self.kernel}" if self.is_conv else "Linear"
        return f"{self.method}, rank={self.rank}, {kind} {self.in_features} -> {self.out_features}"
