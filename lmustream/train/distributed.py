"""Batch norm whose training statistics span every DDP process.

torch's SyncBatchNorm runs on GPUs only; this one uses a differentiable all-reduce of the
per-channel sums, so it works on the gloo (CPU) backend too, and a run on N processes computes
the same statistics as one process seeing the whole global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class CrossProcessBatchNorm1d(nn.BatchNorm1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        C = x.shape[1]
        dims = [0, 2] if x.ndim == 3 else [0]
        count = x.new_tensor([x.numel() / C])
        totals = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))  # sums over processes
        n = totals[-1]
        mean = totals[:C] / n
        var = totals[C:2 * C] / n - mean * mean  # biased, as batch norm normalizes with
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
            self.num_batches_tracked += 1
        shape = (1, C, 1) if x.ndim == 3 else (1, C)
        return (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps) * self.weight.view(shape) \
            + self.bias.view(shape)


def share_batch_statistics(model: nn.Module) -> nn.Module:
    """Swap every BatchNorm1d of ``model`` (in place) for :class:`CrossProcessBatchNorm1d`, keeping its state."""
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm1d:
            shared = CrossProcessBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                             child.track_running_stats).to(child.weight.device, child.weight.dtype)
            shared.load_state_dict(child.state_dict())
            setattr(model, name, shared)
        else:
            share_batch_statistics(child)
    return model
