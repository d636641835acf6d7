"""The Legendre memory: state space, impulse response, and FFT path == recurrent path."""

import numpy as np
import pytest
import torch

from lmustream.models import LegendreMemory, impulse_response, lmu_state_space
from lmustream.models.lmu import LMUConfig, legendre_delay_system


def test_continuous_system_matches_definition():
    A_c, B_c = legendre_delay_system(4, 2.0)
    R = np.array([(2 * i + 1) / 2.0 for i in range(4)])
    for i in range(4):
        assert B_c[i] == pytest.approx(R[i] * (-1) ** i)
        for j in range(4):
            expect = R[i] * (-1.0 if i < j else (-1.0) ** (i - j + 1))
            assert A_c[i, j] == pytest.approx(expect)


def test_zoh_discretisation_matches_scipy():
    scipy_signal = pytest.importorskip("scipy.signal")
    A_c, B_c = legendre_delay_system(16, 10.0)
    A_ref, B_ref, *_ = scipy_signal.cont2discrete(
        (A_c.numpy(), B_c.numpy()[:, None], np.ones((1, 16)), np.zeros((1,))), dt=1.0, method="zoh")
    A, B = lmu_state_space(16, 10.0)
    np.testing.assert_allclose(A.numpy(), A_ref, atol=1e-12)
    np.testing.assert_allclose(B.numpy(), B_ref[:, 0], atol=1e-12)


def test_memory_is_stable():
    A, _ = lmu_state_space(256, 128.0)
    assert torch.linalg.eigvals(A).abs().max() < 1.0


@pytest.mark.parametrize("length", [1, 2, 7, 128, 300])
def test_impulse_response_is_powers_of_A(length):
    A, B = lmu_state_space(8, 16.0)
    H = impulse_response(A, B, length)
    expect, v = [], B.clone()
    for _ in range(length):
        expect.append(v)
        v = A @ v
    torch.testing.assert_close(H, torch.stack(expect, dim=1), rtol=0, atol=1e-12)


def test_a_delay_system_delays():
    """The memory of a delay system can reconstruct u(t - theta): the Legendre decoder at r=1."""
    order, theta = 32, 40.0
    mem = LegendreMemory(order, theta).double()
    t = torch.arange(400, dtype=torch.float64)
    u = torch.sin(2 * np.pi * t / 200)[None]  # slow sine: well within the memory's bandwidth
    m = mem(u)[0]  # (M, N)
    # A linear readout of m_t must reproduce u(t - theta): fit it by least squares.
    C = torch.linalg.lstsq(m[:, 100:].T, u[0, 100 - int(theta):400 - int(theta)][:, None]).solution
    recon = (m[:, 100:].T @ C)[:, 0]
    assert (recon - u[0, 60:360]).abs().max() < 1e-3


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-9)])
@pytest.mark.parametrize("length", [1, 50, 128, 333])
def test_fft_path_equals_recurrent_path(dtype, tol, length):
    mem = LegendreMemory(256, 128.0).to(dtype)
    u = torch.relu(torch.randn(3, length, dtype=dtype, generator=torch.Generator().manual_seed(0)))
    m_fft = mem(u)
    m_rec = mem.recurrent(u)
    assert m_fft.shape == (3, 256, length)
    assert (m_fft - m_rec).abs().max() <= tol * m_rec.abs().max()


def test_constants_stay_float64_whatever_the_model_dtype():
    mem = LegendreMemory(16, 8.0).float()
    assert mem.A.dtype == torch.float64 and mem.B.dtype == torch.float64
    mem.double().float()
    assert mem.A.dtype == torch.float64


def test_step_carries_state_across_calls():
    mem = LegendreMemory(16, 8.0).double()
    u = torch.randn(2, 20, dtype=torch.float64)
    whole = mem.recurrent(u)
    state = mem.initial_state(2)
    first = []
    for t in range(12):
        m, state = mem.step(u[:, t], state)
        first.append(m)
    rest = mem.recurrent(u[:, 12:], state)
    torch.testing.assert_close(torch.cat([torch.stack(first, -1), rest], -1), whole)


def test_bad_config():
    with pytest.raises(ValueError, match="theta"):
        LMUConfig(theta=0)
    with pytest.raises(ValueError, match="memory_size"):
        LMUConfig(memory_size=0)


def test_cpp_kernel_equals_python_memory():
    """The C++ extension's block update equals LegendreMemory's recurrence (float32)."""
    from lmustream.stream.kernel import kernel_available, lmu_memory_scan
    if not kernel_available():
        pytest.fail("the C++ kernel is not built: run pip install -e .")
    mem = LegendreMemory(256, 128.0)
    u = torch.relu(torch.randn(2, 300, generator=torch.Generator().manual_seed(0)))
    ours = mem.float().recurrent(u).transpose(1, 2).numpy()  # (B, T, M)
    out, final = lmu_memory_scan(mem.A.float().numpy(), mem.B.float().numpy(), u.numpy())
    assert np.abs(out - ours).max() <= 1e-5 * np.abs(ours).max()
    np.testing.assert_array_equal(final, out[:, -1])
