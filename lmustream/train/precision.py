"""Mixed precision: bfloat16 autocast on CUDA, and (when asked) on CPUs that compute bfloat16 in hardware.

On a CPU without native bfloat16 (no AVX512-BF16 or AMX on x86, no BF16 on Arm) oneDNN emulates it,
which is slower than float32, so autocast stays off there whatever is asked.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 products in hardware (oneDNN's own test)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without the test
        return False


def uses_bfloat16(device: torch.device, amp: bool, cpu: bool = False) -> bool:
    """Whether the forward pass runs under bfloat16 autocast: on CUDA with ``amp``; on a CPU with ``cpu``
    and native bfloat16."""
    if device.type == "cuda":
        return amp
    return cpu and device.type == "cpu" and native_bfloat16()


def autocast(device: torch.device, amp: bool, cpu: bool = False):
    """The forward pass's context: bfloat16 autocast where :func:`uses_bfloat16`, else nothing."""
    if uses_bfloat16(device, amp, cpu):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
