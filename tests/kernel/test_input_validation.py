"""The typed Python face of the C++ kernel checks its arguments before C++ sees them: lmustream's
errors, never pybind's TypeError quoting a C++ signature, never a truthy string taken for True."""

import numpy as np
import pytest

from lmustream.errors import AudioError, ConfigError
from lmustream.stream import Kernel
from tests.kernel.helpers import audio

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def kernel(plain):
    return Kernel(plain[1])


@pytest.mark.parametrize("lanes", [2 ** 40, -1, 0, 65, 2.5, True, "8", None])
def test_frame_lanes_out_of_range_or_of_another_type(plain, lanes):
    with pytest.raises(ConfigError, match=r"frame_lanes must be an integer in \[1, 64\]"):
        Kernel(plain[1], frame_lanes=lanes)


def test_numpy_frame_lanes_are_integers(plain):
    assert Kernel(plain[1], frame_lanes=np.int64(4)).frame_lanes == 4


@pytest.mark.parametrize("name", ["int8", "sparse_inputs"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_flags_must_be_bools(plain, name, value):
    with pytest.raises(ConfigError, match=f"{name} must be True or False"):
        Kernel(plain[1], **{name: value})


def test_other_settings(plain):
    with pytest.raises(ConfigError, match="simd .* is not available here"):
        Kernel(plain[1], simd="sse9")
    with pytest.raises(ConfigError, match="simd .* is not available here"):
        Kernel(plain[1], simd=5)
    assert Kernel(plain[1], simd="scalar").simd == "scalar"
    with pytest.raises(ConfigError, match="spike_path"):
        Kernel(plain[1], spike_path="sparse")
    with pytest.raises(ConfigError, match="model must be a model file path"):
        Kernel(None)
    with pytest.raises(ConfigError, match="record_spikes"):
        Kernel(plain[1]).open().record_spikes("no")


def test_push_many_raises_the_error_type_of_the_cpp_side(kernel, plain):
    other = Kernel(plain[1]).open()
    with pytest.raises(AudioError, match=r"streams\[0\] is not a stream opened by this kernel"):
        kernel.push_many([other], [np.zeros(10, np.float32)])
    with pytest.raises(AudioError, match="appears twice"):  # the same problem found in C++: the same type
        s = kernel.open()
        kernel.push_many([s, s], [np.zeros(10, np.float32)] * 2)


def test_push_many_takes_any_iterables(kernel):
    blocks = [audio(0.5, 1), audio(0.5, 2)]
    want = [kernel.open().push(b) for b in blocks]
    streams = [kernel.open(), kernel.open()]
    got = kernel.push_many((s for s in streams), (b for b in blocks))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_tensors_that_require_grad_are_detached(kernel):
    wave = audio(0.5, 3)
    want = kernel.open().push(wave)
    tensor = torch.from_numpy(wave).requires_grad_(True)
    np.testing.assert_array_equal(kernel.open().push(tensor), want)
    np.testing.assert_array_equal(kernel.push_many([kernel.open()], [tensor])[0], want)
    n_mels = kernel.config["n_mels"]
    feats = torch.zeros(4, n_mels, requires_grad=True)
    np.testing.assert_array_equal(kernel.open().push_features(feats),
                                  kernel.open().push_features(np.zeros((4, n_mels), np.float32)))
