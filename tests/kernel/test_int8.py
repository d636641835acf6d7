"""int8 weights (per-output-channel scales, activations quantized per frame, exact int32 sums).

Accuracy on real validation data is measured per shipped model by
benchmarks/kernel_int8_accuracy.py; here: the int8 kernel tracks the float32 one closely on a
random-weight model and reads about 4x fewer weight bytes.
"""

import numpy as np

from lmustream.stream import Kernel
from tests.kernel.helpers import audio


def test_int8_tracks_float32(plain):
    _, path = plain
    f32, i8 = Kernel(path), Kernel(path, int8=True)
    assert i8.int8 and not f32.int8
    assert i8.weight_bytes < 0.4 * f32.weight_bytes
    wave = audio(8.0, 12)
    a, b = f32.open(), i8.open()
    want = np.concatenate([a.push(wave), a.flush()])
    got = np.concatenate([b.push(wave), b.flush()])
    spread = np.abs(want).max()
    assert np.abs(got - want).max() < 0.03 * spread
    assert (got.argmax(1) == want.argmax(1)).mean() > 0.97
    assert np.abs(b.running - a.running).max() < 0.01 * spread


def test_int8_simd_paths_agree(plain):
    from lmustream import _kernel

    _, path = plain
    wave = audio(2.0, 13)
    outs = []
    for simd in _kernel.simd_levels().split():
        s = Kernel(path, int8=True, simd=simd).open()
        outs.append(np.concatenate([s.push(wave), s.flush()]))
    for out in outs[1:]:
        assert np.abs(out - outs[0]).max() < 1e-4


def test_int8_no_drift_over_a_long_stream(plain):
    """The float16 Legendre matrix of the int8 mode: its rounding must not build up in the memory.
    Three minutes of audio in one utterance: the int8 - float32 gap at the end is no larger than
    near the start."""
    _, path = plain
    wave = audio(180.0, 14)
    want = Kernel(path).open().push(wave)
    got = Kernel(path, int8=True).open().push(wave)
    gap = np.abs(got - want).max(axis=1)
    fifth = len(gap) // 5
    early, late = gap[fifth:2 * fifth], gap[-fifth:]
    assert np.percentile(late, 99) <= 1.5 * np.percentile(early, 99) + 1e-3
    assert late.max() < 0.03 * np.abs(want).max()


def test_sparse_int8_products_give_the_dense_bits():
    """A trained model on speech: most int8 products see mostly zero codes (ReLU and GELU outputs),
    and on AVX-512 read only the nonzero inputs' weights. The outputs are the dense products' bits."""
    from pathlib import Path

    import pytest

    from lmustream.audio.io import load_audio

    sparse = Kernel("sc12-lmuformer", int8=True, frame_lanes=1)
    if not sparse.sparse_inputs:
        pytest.skip(f"no sparse int8 product on the {sparse.simd} path")
    dense = Kernel("sc12-lmuformer", int8=True, frame_lanes=1, sparse_inputs=False)
    assert not dense.sparse_inputs
    wave = load_audio(Path(__file__).resolve().parents[2] / "examples" / "keywords.flac")
    outputs = []
    for kernel in (sparse, dense):
        stream = kernel.open()
        outputs.append(np.concatenate([stream.push(wave[i:i + 160]) for i in range(0, len(wave), 160)]
                                      + [stream.flush()]))
    assert outputs[0].shape[0] > 1000
    assert np.array_equal(outputs[0], outputs[1])


def test_int8_embedding_fold_tracks_float32_on_a_trained_model():
    """int8, non-spiking: each embedding batch norm's shift moves into the next convolution's bias
    (the window holds scale * ReLU, mostly zeros). On the shipped model and real speech the int8
    logits stay close to float32, from the stream's first frame (the padding before it) on."""
    from pathlib import Path

    from lmustream.audio.io import load_audio

    wave = load_audio(Path(__file__).resolve().parents[2] / "examples" / "keywords.flac")
    f32, i8 = Kernel("sc12-lmuformer").open(), Kernel("sc12-lmuformer", int8=True).open()
    want = np.concatenate([f32.push(wave), f32.flush()])
    got = np.concatenate([i8.push(wave), i8.flush()])
    spread = np.abs(want).max()
    assert np.sqrt(np.mean((got - want) ** 2)) < 0.004 * spread
    assert np.abs(got[:20] - want[:20]).max() < 0.004 * spread  # the start: windows filled with -shift
    assert (got.argmax(1) == want.argmax(1)).mean() > 0.97
