"""Growing the classifier head by new classes, the old rows kept."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from lmustream.errors import ConfigError


def grow_head(model: nn.Module, n_classes: int) -> nn.Linear:
    """Replace ``model.head`` by a Linear with ``n_classes`` outputs whose first rows are the old head.

    The new rows start at zero (see :func:`imprint_classes` for a better start); ``model.config``
    follows the new class count.
    """
    old = getattr(model, "head", None)
    if not isinstance(old, nn.Linear):
        raise ConfigError(f"grow_head needs a model whose classifier head is an nn.Linear named 'head', got "
                          f"{type(old).__name__}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ConfigError(f"grow_head: the class count must be a positive integer, got {n_classes!r}")
    if n_classes < old.out_features:
        raise ConfigError(f"the head can only grow: it has {old.out_features} classes, asked for {n_classes}")
    head = nn.Linear(old.in_features, n_classes, bias=old.bias is not None,
                     dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:old.out_features] = old.weight
        if old.bias is not None:
            head.bias.zero_()
            head.bias[:old.out_features] = old.bias
    head.weight.requires_grad_(old.weight.requires_grad)
    if head.bias is not None:
        head.bias.requires_grad_(old.bias.requires_grad)
    model.head = head
    model.config = replace(model.config, n_classes=n_classes)
    return head


@torch.no_grad()
def pooled_features(model: nn.Module, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """What the head sees, averaged over frames: ``[clips, dim]`` (logits = head(pooled) for mode "mean")."""
    return torch.cat([model.features(x[i:i + batch]).mean(dim=2) for i in range(0, len(x), batch)])


@torch.no_grad()
def imprint_classes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[int], margin: float = 4.0) -> None:
    """Start each new class's head row as a nearest-class-mean detector, calibrated to the old logits.

    With d_c the class's mean feature minus the mean feature of all the clips, the new logit is
    ``tau + margin * ((f - centre) . d_c / |d_c|^2 - 1/2)``: ``tau + margin/2`` at the class mean,
    ``tau - margin/2`` at the centre, where ``tau`` is the old head's average winning logit on these
    clips. So the new words are recognised from the first step without outbidding the old words
    on their own clips (where the old logits are larger than on words the model never learned).
    """
    head: nn.Linear = model.head
    features = pooled_features(model, x)
    centre = features.mean(dim=0)
    old = [i for i in range(head.out_features) if i not in classes]
    tau = head(features)[:, old].max(dim=1).values.mean() if old else torch.tensor(0.0)
    for c in classes:
        members = features[y == c]
        if len(members) == 0:
            raise ConfigError(f"class {c} has no clips to imprint from")
        d = members.mean(dim=0) - centre
        w = margin * d / (d @ d).clamp(min=1e-12)
        head.weight[c] = w
        if head.bias is not None:
            head.bias[c] = tau - margin / 2 - w @ centre


def lower_classes(head: nn.Linear, classes: list[int], amount: float) -> None:
    """Subtract ``amount`` from the logits of ``classes``: their bias, so the deployed model carries it."""
    if head.bias is None:
        raise ConfigError("new_word_bias needs a classifier head with a bias; this model's head has none")
    with torch.no_grad():
        head.bias[classes] -= amount
