"""Import of checkpoints saved by the LMUFormer authors' code (state dicts in their naming).

Their models ``lmu_rnn_conv1d`` (LMUFormer) and ``slmu_rnn_ms_conv1d`` (spiking LMUFormer)
map onto ours name by name (table below). Their buffers A, B, H and fft_H are not
imported: ours are derived from (memory_size, theta), and the stored A is only used to
check that the theta we assume is the one the checkpoint was trained with.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace

import torch

from lmustream.errors import CheckpointError
from lmustream.models.lmu import lmu_state_space
from lmustream.models.lmuformer import LMUFormer, LMUFormerConfig

VARIANTS = ("lmuformer", "spiking_lmuformer")

# (pattern in the authors' naming, replacement in ours); the first match wins.
_COMMON_RULES = [
    (r"^block\.(\d+)\.attn\.lmu\.(W_u|W_h|bn_u|bn_m|bn_h)\.", r"blocks.\1.lmu.\2."),
    (r"^block\.(\d+)\.attn\.proj_conv\.", r"blocks.\1.lmu.proj."),
    (r"^block\.(\d+)\.attn\.proj_bn\.", r"blocks.\1.lmu.proj_bn."),
    (r"^block\.(\d+)\.attn\.prev_bn\.", r"blocks.\1.lmu.input_bn."),
    (r"^block\.(\d+)\.mlp\.fc(\d)_conv\.", r"blocks.\1.ffn.fc\2."),
    (r"^block\.(\d+)\.mlp\.fc(\d)_bn\.", r"blocks.\1.ffn.fc\2_bn."),
    (r"^patch_embed\.rpe_conv\.", r"embed.rpe."),
    (r"^(head|head_bn)\.", r"\1."),
]
_EMBED_RULES = {
    "lmuformer": [
        (r"^patch_embed\.conv_layers\.(\d+)\.0\.", r"embed.convs.\1."),
        (r"^patch_embed\.conv_layers\.(\d+)\.3\.", r"embed.bns.\1."),
    ],
    "spiking_lmuformer": [
        (r"^patch_embed\.proj_conv(\d*)\.", lambda m: f"embed.convs.{int(m.group(1) or 0)}."),
        (r"^patch_embed\.proj_bn(\d*)\.", lambda m: f"embed.bns.{int(m.group(1) or 0)}."),
    ],
}
_DERIVED_BUFFER = re.compile(r"^block\.(\d+)\.attn\.lmu\.(A|B|H|fft_H)$")


def _read_state_dict(source) -> dict[str, torch.Tensor]:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            raise CheckpointError(f"reference checkpoint {path!r} is a folder; name the .pt file in it")
        if not os.path.isfile(path):
            raise CheckpointError(f"reference checkpoint {path!r} does not exist")
        if path.endswith(".safetensors"):
            raise CheckpointError(f"{path!r} is a .safetensors file, not a PyTorch checkpoint of the LMUFormer "
                                  f"authors' code; an lmustream model file needs no converting")
        from lmustream.models.artifact import torch_load_safely

        source = torch_load_safely(source, "reference checkpoint")  # never runs pickled code from a download
        if isinstance(source, dict) and {"model", "optimizer"} <= set(source) and "epoch" in source:
            raise CheckpointError(f"{path!r} is an lmustream training checkpoint, not the authors' code's: its run "
                                  f"folder holds the model file (model.safetensors)")
    if isinstance(source, dict) and not any(isinstance(v, torch.Tensor) for v in source.values()):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(source.get(key), dict):
                source = source[key]
                break
    if not isinstance(source, dict) or not source:
        raise CheckpointError("reference checkpoint must be a non-empty state dict (name -> tensor)")
    # Checkpoints saved through DataParallel / DDP carry a "module." prefix.
    return {k.removeprefix("module."): v for k, v in source.items()}


def _some(names: list[str], sep: str = ", ", shown: int = 6) -> str:
    """The first ``shown`` of ``names``, and how many more: a mismatch lists dozens of tensors."""
    more = f"{sep}... and {len(names) - shown} more" if len(names) > shown else ""
    return sep.join(names[:shown]) + more


def _rename(key: str, variant: str) -> str | None:
    for pattern, repl in _EMBED_RULES[variant] + _COMMON_RULES:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def _infer_config(sd: dict[str, torch.Tensor], variant: str, theta: float) -> LMUFormerConfig:
    """Sizes read off the tensors; missing tensors fall back to the paper's values."""
    spiking = variant == "spiking_lmuformer"
    first = sd.get("patch_embed.proj_conv.weight" if spiking else "patch_embed.conv_layers.0.0.weight")
    embed_prefix = r"^patch_embed\.proj_conv\d*\.weight$" if spiking else r"^patch_embed\.conv_layers\.\d+\.0\.weight$"
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"^block\.(\d+)\.", k))}
    head = sd.get("head.weight")
    fc1 = sd.get("block.0.mlp.fc1_conv.weight")
    W_h = sd.get("block.0.attn.lmu.W_h.weight")
    c = LMUFormerConfig(spiking=spiking, memory_size=512 if spiking else 256, theta=theta)
    if first is not None and first.ndim == 3:
        c = replace(c, dim=first.shape[0], n_mels=first.shape[1], kernel_size=first.shape[2])
    n_embed = sum(1 for k in sd if re.match(embed_prefix, k))
    if n_embed:
        c = replace(c, embed_convs=n_embed)
    if blocks:
        c = replace(c, depth=max(blocks) + 1)
    if head is not None and head.ndim == 2:
        c = replace(c, n_classes=head.shape[0])
    if fc1 is not None and fc1.shape[0] % c.dim == 0:
        c = replace(c, mlp_ratio=fc1.shape[0] // c.dim)
    if W_h is not None and W_h.ndim == 2 and W_h.shape[1] > c.dim:
        c = replace(c, memory_size=W_h.shape[1] - c.dim)
    return c


def load_reference_checkpoint(source, variant: str, theta: float = 128.0,
                              config: LMUFormerConfig | None = None) -> LMUFormer:
    """Our model (eval mode) from an LMUFormer-authors state dict or ``.pt`` file.

    ``variant`` is "lmuformer" or "spiking_lmuformer". Sizes are read off the tensors
    unless ``config`` is given; ``theta`` (frames) cannot be read off and is checked
    against the stored A matrix. Raises CheckpointError listing every missing,
    unexpected or mis-shaped tensor.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    sd = _read_state_dict(source)
    config = config or _infer_config(sd, variant, theta)
    model = LMUFormer(config)
    expected = model.state_dict()

    renamed, unexpected, derived = {}, [], {}
    for key, value in sd.items():
        if _DERIVED_BUFFER.match(key):
            derived[key] = value
            continue
        ours = _rename(key, variant)
        if ours is None or ours not in expected:
            unexpected.append(key)
        else:
            renamed[ours] = value
    missing = sorted(set(expected) - set(renamed))
    misshaped = [f"{k}: checkpoint {list(v.shape)} vs model {list(expected[k].shape)}"
                 for k, v in renamed.items() if v.shape != expected[k].shape]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing ({len(missing)}): " + _some(missing))
        if unexpected:
            parts.append(f"unexpected ({len(unexpected)}): " + _some(sorted(unexpected)))
        if misshaped:
            parts.append(f"mis-shaped ({len(misshaped)}): " + _some(misshaped, "; "))
        other = next(v for v in VARIANTS if v != variant)
        hint = (f"\n  (the other variant, --variant {other}?)" if unexpected and len(unexpected) >= len(sd) // 4 else "")
        raise CheckpointError(f"reference {variant} checkpoint does not match {config}:\n  " + "\n  ".join(parts)
                              + hint)

    _check_memory_matches(derived, config)
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def _check_memory_matches(derived: dict[str, torch.Tensor], config: LMUFormerConfig) -> None:
    A_ours, _ = lmu_state_space(config.memory_size, config.theta)
    for key, value in derived.items():
        if not key.endswith(".A"):
            continue
        if tuple(value.shape) != tuple(A_ours.shape):
            raise CheckpointError(f"{key} has shape {list(value.shape)}, expected {list(A_ours.shape)} "
                                  f"for memory_size={config.memory_size}")
        err = (value.double() - A_ours).abs().max().item()
        if err > 1e-5:
            raise CheckpointError(f"{key} differs from the Legendre memory with theta={config.theta} "
                                  f"(max abs difference {err:.2e}): pass the theta the checkpoint was trained with")
