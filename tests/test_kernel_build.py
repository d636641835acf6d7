"""Smoke test of the C++ kernel: it was built, reports its build, and computes the memory update.

A real Legendre memory is used because its A is stable: a random A would overflow over
hundreds of frames and hide errors in inf.
"""

import subprocess
import sys

import numpy as np
import pytest

import lmustream
from lmustream import _kernel
from lmustream.stream import kernel_available, kernel_info, lmu_memory_scan

ORDER, THETA = 256, 128.0
REL_TOL = 1e-5


def _expm(a: np.ndarray) -> np.ndarray:
    try:
        from scipy.linalg import expm
    except ImportError:  # scipy is not a dependency of lmustream; torch is
        import torch

        return torch.linalg.matrix_exp(torch.from_numpy(a)).numpy()
    return expm(a)


def legendre_memory(order: int = ORDER, theta: float = THETA) -> tuple[np.ndarray, np.ndarray]:
    """Discrete (A, B) of the Legendre delay system, zero-order hold with dt = 1, float64."""
    i = np.arange(order)
    R = (2 * i + 1) / theta
    ii, jj = np.meshgrid(i, i, indexing="ij")
    A_c = R[:, None] * np.where(ii < jj, -1.0, (-1.0) ** (ii - jj + 1))
    B_c = R * (-1.0) ** i
    # expm([[A_c, B_c], [0, 0]]) = [[A, B], [0, 1]]
    augmented = np.zeros((order + 1, order + 1))
    augmented[:order, :order] = A_c
    augmented[:order, order] = B_c
    discrete = _expm(augmented)
    return discrete[:order, :order], discrete[:order, order]


def reference_scan(A, B, u, m0=None) -> np.ndarray:
    """The recurrence in float64, for one sequence: [T, M]."""
    m = np.zeros(len(B)) if m0 is None else np.asarray(m0, np.float64)
    out = np.empty((len(u), len(B)))
    for t, u_t in enumerate(u):
        m = A @ m + B * u_t
        out[t] = m
    return out


def rel_err(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def memory():
    A, B = legendre_memory()
    # The kernel sees float32; the reference gets the same rounded values in float64, so
    # the comparison measures the kernel's arithmetic, not the rounding of A and B.
    A32, B32 = A.astype(np.float32), B.astype(np.float32)
    return A32, B32, A32.astype(np.float64), B32.astype(np.float64)


def test_extension_loads_and_reports_its_build():
    assert kernel_available()
    assert _kernel.__version__ == lmustream.__version__
    info = _kernel.build_info()
    assert info["version"] == lmustream.__version__
    assert info["simd"] in {"avx512", "avx2", "neon", "scalar"}  # the path chosen at run time
    assert info["simd"] == info["simd_levels"].split()[0]
    assert info["compiled_simd"] in {"avx512f", "avx2+fma", "avx2", "avx", "sse2", "neon", "scalar"}
    assert info["compiler"] and info["cxx_standard"].startswith("C++")
    assert info["sparse_int8"] == (info["simd"] == "avx512")  # the one path with i8_sparse
    face = kernel_info()
    assert face["loaded"] and face["error"] is None and face["simd"] == info["simd"]


def test_scan_matches_float64_recurrence(memory, rng):
    A32, B32, A64, B64 = memory
    u = np.maximum(rng.standard_normal(500), 0).astype(np.float32)
    out, m_final = lmu_memory_scan(A32, B32, u)
    assert out.shape == (500, ORDER) and out.dtype == np.float32
    assert rel_err(out, reference_scan(A64, B64, u)) < REL_TOL
    np.testing.assert_array_equal(m_final, out[-1])


def test_batch_matches_per_sequence(memory, rng):
    A32, B32, A64, B64 = memory
    u = rng.standard_normal((3, 500)).astype(np.float32)
    m0 = (0.1 * rng.standard_normal((3, ORDER))).astype(np.float32)
    out, m_final = lmu_memory_scan(A32, B32, u, m0)
    assert out.shape == (3, 500, ORDER) and m_final.shape == (3, ORDER)
    for b in range(3):
        assert rel_err(out[b], reference_scan(A64, B64, u[b], m0[b])) < REL_TOL
        single, _ = lmu_memory_scan(A32, B32, u[b], m0[b])
        np.testing.assert_array_equal(out[b], single)
    np.testing.assert_array_equal(m_final, out[:, -1])


def test_chained_calls_equal_one_call(memory, rng):
    A32, B32, _, _ = memory
    u = rng.standard_normal((2, 300)).astype(np.float32)
    whole, m_whole = lmu_memory_scan(A32, B32, u)
    first, m_mid = lmu_memory_scan(A32, B32, u[:, :120])
    second, m_end = lmu_memory_scan(A32, B32, u[:, 120:], m_mid)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), whole)
    np.testing.assert_array_equal(m_end, m_whole)
    empty, m_same = lmu_memory_scan(A32, B32, u[:, :0], m_mid)  # zero frames: state passes through
    assert empty.shape == (2, 0, ORDER)
    np.testing.assert_array_equal(m_same, m_mid)


def test_accepts_torch_and_other_dtypes(memory):
    torch = pytest.importorskip("torch")
    A32, B32, _, _ = memory
    u = np.linspace(-1, 1, 50)
    want, _ = lmu_memory_scan(A32, B32, u.astype(np.float32))
    got, _ = lmu_memory_scan(torch.from_numpy(A32.astype(np.float64)), torch.from_numpy(B32)[:, None],
                             torch.tensor(u, requires_grad=True))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case, name", [
    ("A not square", "A"), ("B mismatched", "B"), ("NaN in u", "u"), ("3-D u", "u"),
    ("inf in A", "A"), ("m0 mismatched", "m0"),
])
def test_bad_inputs_name_the_argument(memory, case, name):
    A32, B32, _, _ = memory
    u = np.ones(10, np.float32)
    args = {
        "A not square": (A32[:, :-1], B32, u),
        "B mismatched": (A32, B32[:-1], u),
        "NaN in u": (A32, B32, np.where(np.arange(10) == 7, np.nan, u)),
        "3-D u": (A32, B32, u.reshape(1, 2, 5)),
        "inf in A": (A32 * np.where(np.eye(ORDER) > 0, np.inf, 1).astype(np.float32), B32, u),
        "m0 mismatched": (A32, B32, u, np.zeros(ORDER + 1, np.float32)),
    }[case]
    for scan in (lmu_memory_scan, _kernel.lmu_memory_scan):
        with pytest.raises(ValueError, match=f"argument '{name}'"):
            scan(*args)


def test_non_real_dtype_is_a_type_error(memory):
    A32, B32, _, _ = memory
    with pytest.raises(TypeError, match="argument 'u'"):
        lmu_memory_scan(A32, B32, np.ones(4, np.complex64))


def test_missing_extension_is_reported_not_raised():
    # A fresh interpreter where importing the extension fails, as in an unbuilt checkout.
    code = (
        "import sys; sys.modules['lmustream._kernel'] = None\n"
        "from lmustream.stream import kernel_available, kernel_info, lmu_memory_scan\n"
        "info = kernel_info()\n"
        "assert not kernel_available() and not info['loaded'] and '_kernel' in info['error']\n"
        "try:\n"
        "    lmu_memory_scan([[1.0]], [1.0], [1.0])\n"
        "except RuntimeError as e:\n"
        "    assert 'not built' in str(e) and 'pip install -e .' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no RuntimeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
