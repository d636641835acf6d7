"""Array inputs as numpy, torch tensors included, without importing torch (the C++ kernel's Python
face stays free of it)."""

from __future__ import annotations

import numpy as np


def as_numpy(x) -> np.ndarray:
    """``np.asarray(x)``, torch tensors included (on any device, requiring grad or not): numpy cannot
    take those itself. Tensors are recognised by their ``detach`` method."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if x.dtype.is_floating_point and x.element_size() < 4:
            x = x.float()  # numpy has no bfloat16
        x = x.numpy()
    return np.asarray(x)
