"""Shared by the adapter tests."""

import torch


def perturb(model, seed=1, scale=0.2, head=False):
    """Move every trainable tensor away from its initial value, so that the adapter paths are not zero (and
    with ``head``, a grown head's new rows too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and (head or not name.startswith("head")):
                p.add_(scale * torch.randn(p.shape, generator=g))
    return model
