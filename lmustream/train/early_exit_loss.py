"""Training for early exit: a loss on the running-mean prediction at prefixes of the clip.

A streaming LMUFormer answers after every frame with the head applied to the running mean
of its features (``all_seq``). The usual loss only looks at the last of these outputs, so
nothing asks the model to be right (or calibrated) sooner. With ``prefix_loss.weight`` w > 0
the training loss becomes

    L = loss(all_seq[N-1], y) + w * L_prefix

    mode "all":    L_prefix = mean over t in [min_frames-1, N-1] of loss(all_seq[t], y)
    mode "random": L_prefix = mean over clips b of loss(all_seq[t_b, b], y_b),
                   t_b ~ uniform on [min_frames-1, N-1], drawn from the step's generator

where loss is the recipe's own (BCE or cross-entropy, soft mixup targets included) and
``all_seq[N-1]`` equals the model's usual mean-mode output (the head is linear). Early
prefixes that cannot be told apart are pushed towards the class posterior given what has
been heard, not towards a confident guess, so thresholds on the running posterior stay
meaningful. w = 0 (the default) leaves training exactly as it was: one mean-mode forward.
"""

from __future__ import annotations

from typing import Callable

import torch

from lmustream.errors import ConfigError

PREFIX_MODES = ("all", "random")


def wants_prefixes(cfg) -> bool:
    """True when the recipe trains with a prefix loss (``prefix_loss.weight > 0``)."""
    return cfg is not None and cfg.weight > 0


def model_outputs(model, x: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits [B, K], prefix logits [N, B, K] or None)``: one forward pass either way."""
    if not wants_prefixes(cfg):
        return model(x), None
    prefixes = model(x, mode="all_seq")  # [N, B, K]: the head on the running mean at every frame
    return prefixes[-1], prefixes


def prefix_loss(prefixes: torch.Tensor, target: torch.Tensor, loss_fn: Callable, cfg,
                generator: torch.Generator | None = None, shard: slice | None = None,
                batch: int | None = None) -> torch.Tensor:
    """``w * L_prefix`` (see the module docstring) for ``prefixes [N, B, K]`` and ``target [B, K]``.

    ``shard`` and ``batch``: these B clips are ``shard`` of a global batch of ``batch`` clips (one
    process of several); mode "random" then draws for the global batch and keeps this shard's draws,
    so that every clip gets the prefix it would get in a single process.
    """
    N, B, K = prefixes.shape
    start = cfg.min_frames - 1
    if start >= N:
        raise ConfigError(f"prefix_loss.min_frames={cfg.min_frames} exceeds the clip length of {N} frames")
    if cfg.mode == "all":
        kept = prefixes[start:]  # [N', B, K]
        loss = loss_fn(kept.reshape(-1, K), target.repeat(kept.shape[0], 1))
    elif cfg.mode == "random":
        t = torch.randint(start, N, (batch or B,), generator=generator)[shard or slice(None)].to(prefixes.device)
        loss = loss_fn(prefixes[t, torch.arange(B, device=prefixes.device)], target)
    else:
        raise ConfigError(f"prefix_loss.mode must be one of {PREFIX_MODES}, got {cfg.mode!r}")
    return cfg.weight * loss


def validate(cfg, frames: int) -> None:
    """Raise ConfigError for a prefix-loss section that cannot work with ``frames``-frame clips."""
    w = cfg.weight
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
        raise ConfigError(f"prefix_loss.weight must be a number >= 0, got {w!r}")
    if cfg.mode not in PREFIX_MODES:
        raise ConfigError(f"prefix_loss.mode must be one of {PREFIX_MODES}, got {cfg.mode!r}")
    m = cfg.min_frames
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= frames:
        raise ConfigError(f"prefix_loss.min_frames must be an integer in [1, data.frames={frames}], got {m!r}")
