"""The typed Python face of the C++ kernel (``lmustream._kernel``, built from csrc/).

Importing this module never fails: when the extension is missing or broken,
``kernel_available()`` is False, ``kernel_info()["error"]`` says why, and the compute
functions raise a RuntimeError that tells how to build it. torch is not imported here;
tensors are recognised by their ``detach`` method.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import lmustream

try:
    from lmustream import _kernel
except ImportError as e:  # not built, or built for another Python / platform
    _kernel = None
    _IMPORT_ERROR: str | None = f"{type(e).__name__}: {e}"
else:
    _IMPORT_ERROR = None

_BUILD_HINT = "run pip install -e . (needs a C++17 compiler) in the lmustream checkout"


def kernel_available() -> bool:
    """Whether ``lmustream._kernel`` imported."""
    return _kernel is not None


def kernel_info() -> dict[str, Any]:
    """What was loaded: ``loaded``, ``version``, ``simd``, ``compiler``, ``cxx_standard``, ``error``.

    ``error`` is None when the kernel loaded and matches this package's version. A kernel
    left over from another version still loads, with ``error`` saying it is stale.
    """
    if _kernel is None:
        return {"loaded": False, "version": None, "simd": None, "compiler": None,
                "cxx_standard": None, "error": _IMPORT_ERROR}
    info: dict[str, Any] = {"loaded": True, **_kernel.build_info(), "error": None}
    if info["version"] != lmustream.__version__:
        info["error"] = (f"stale build: kernel {info['version']}, package {lmustream.__version__}; "
                         f"{_BUILD_HINT}")
    return info


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.float()  # numpy has no bfloat16; the kernel computes in float32 anyway
        x = x.numpy()
    return np.asarray(x)


def lmu_memory_scan(A: Any, B: Any, u: Any, m0: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Legendre memory update ``m_t = A m_{t-1} + B u_t`` over a block of frames, in float32.

    Args:
        A: ``[M, M]`` discrete state matrix.
        B: ``[M]`` or ``[M, 1]`` input vector.
        u: ``[T]`` or ``[batch, T]``: one scalar input per frame. A 2-D ``u`` is always a
            batch, so pass a single sequence as 1-D.
        m0: state before the first frame, ``[M]`` or ``[batch, M]`` (an ``[M]`` state is
            shared by every sequence of a batch); zeros when None.

    Each argument may be a numpy array, a torch tensor (any device, any real dtype) or
    anything ``np.asarray`` takes, of real numbers.

    Returns:
        ``(out, m_final)`` as float32 numpy arrays: ``out`` ``[T, M]`` (``[batch, T, M]``)
        holds every ``m_t``; ``m_final`` ``[M]`` (``[batch, M]``) is the state after the
        last frame. Passing ``m_final`` as the next call's ``m0`` continues the sequence
        exactly.

    Raises:
        RuntimeError: the C++ kernel is not built.
        ValueError: a shape does not fit, or an input holds NaN or inf (the message names
            the argument).
        TypeError: an input is not an array of real numbers.
    """
    if _kernel is None:
        raise RuntimeError(f"lmustream C++ kernel is not built: {_IMPORT_ERROR}; {_BUILD_HINT}")
    return _kernel.lmu_memory_scan(_as_array(A), _as_array(B), _as_array(u),
                                   None if m0 is None else _as_array(m0))
