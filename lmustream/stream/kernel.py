"""The typed Python face of the C++ kernel (``lmustream._kernel``, built from csrc/).

:class:`Kernel` runs a model file on audio frame by frame (see docs/kernel.md);
``lmu_memory_scan`` exposes the Legendre memory update alone; ``kernel_info`` says what was
built and which SIMD path runs.

Importing this module never fails: when the extension is missing or broken,
``kernel_available()`` is False, ``kernel_info()["error"]`` says why, and the compute
functions raise a RuntimeError that tells how to build it. torch is not imported here;
tensors are recognised by their ``detach`` method.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

import lmustream
from lmustream.arrays import as_numpy
from lmustream.errors import AudioError, ConfigError
from lmustream.ranges import check_flag
from lmustream.shipped import resolve_model

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
    return _kernel.lmu_memory_scan(as_numpy(A), as_numpy(B), as_numpy(u),
                                   None if m0 is None else as_numpy(m0))


# -- the streaming engine ----------------------------------------------------------------------

SPIKE_PATHS = ("add-only", "dense")
MAX_FRAME_LANES = 64  # csrc/engine.h kMaxLanes


def _require_kernel() -> None:
    if _kernel is None:
        raise RuntimeError(f"lmustream C++ kernel is not built: {_IMPORT_ERROR}; {_BUILD_HINT}")


def _resolve_model(name_or_path) -> Path:
    if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path):
        raise ConfigError(f"Kernel: model must be a model file path or a shipped model name, got {name_or_path!r}")
    return resolve_model(name_or_path)


class Kernel:
    """A model loaded into the C++ streaming engine: audio in, per-frame logits out, no torch.

    ``Kernel(path_or_shipped_name, int8=False)`` reads the model file itself (safetensors
    tensors + JSON header), folds the batch norms and packs the weights; ``open()`` starts a
    stream. One Kernel serves any number of streams, from any number of threads (one thread
    per stream at a time).

    Args:
        path_or_name: a model file, or the name of a shipped model in ``models/``.
        int8: int8 weights with per-output-channel scales (activations quantized per frame);
            about 4x fewer bytes per frame than float32.
        simd: force a SIMD path ("scalar", "avx2", "avx512", "neon"); default: the best this CPU runs.
        spike_path: spiking models only: "add-only" (sum the weight columns of the inputs that
            spiked) or "dense" (multiply by the 0/1 spikes); both give the same bits.
        frame_lanes: when one push completes several frames, up to this many are stepped
            together: each weight matrix is read once for several frames (blocks of 100 ms or
            more run about 2x (int8) to 4x (float32) faster per frame), while the memory, windows
            and membranes still advance frame by frame, so the outputs are the same bits as
            with 1 (strictly one frame at a time, the least memory: one frame's buffers).
        sparse_inputs: int8 weights on a non-spiking model, on the AVX-512 path: a product whose
            input is mostly zero codes (after a ReLU or a GELU) reads only the weights of the
            nonzero ones; the same bits as the dense product. False: always dense (for comparisons).

    Attributes: ``labels`` (class names in logit order), ``lookahead`` (frames of future audio
    each output waits for), ``sample_rate`` (Hz the samples must have), ``simd`` (the SIMD path
    in use), ``hop_length`` (samples per frame), ``config`` (the model's shape).

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or inconsistent (the message
            names the problem).
        ConfigError: ``path_or_name`` is no path or name, an unknown ``simd`` or ``spike_path``,
            ``frame_lanes`` not an integer in 1..64, or ``int8`` / ``sparse_inputs`` not a bool.
    """

    def __init__(self, path_or_name, int8: bool = False, *, simd: str | None = None,
                 spike_path: str = "add-only", frame_lanes: int = 8, sparse_inputs: bool = True):
        _require_kernel()
        # checked here: pybind would otherwise refuse a value it cannot convert with a TypeError
        # quoting the C++ signature, and treat any truthy object as True
        if spike_path not in SPIKE_PATHS:
            raise ConfigError(f"spike_path must be one of {SPIKE_PATHS}, got {spike_path!r}")
        if isinstance(frame_lanes, (bool, np.bool_)) or not isinstance(frame_lanes, (int, np.integer)) \
                or not 1 <= frame_lanes <= MAX_FRAME_LANES:
            raise ConfigError(f"frame_lanes must be an integer in [1, {MAX_FRAME_LANES}], got {frame_lanes!r}")
        check_flag("int8", int8)
        check_flag("sparse_inputs", sparse_inputs)
        if simd is not None:
            levels = _kernel.simd_levels().split()
            if not isinstance(simd, str) or simd not in (*levels, "auto"):
                raise ConfigError(f"simd {simd!r} is not available here: simd must be 'auto' or one of the paths "
                                  f"this CPU and build run ({', '.join(levels)})")
        self.path = _resolve_model(path_or_name)
        self._engine = _kernel.Engine(str(self.path), bool(int8), simd or "auto", spike_path == "add-only",
                                      int(frame_lanes), bool(sparse_inputs))
        self.labels: list[str] = list(self._engine.labels)
        self.lookahead: int = self._engine.lookahead
        self.sample_rate: int = self._engine.sample_rate
        self.hop_length: int = self._engine.hop_length
        self.simd: str = self._engine.simd
        self.int8: bool = self._engine.int8
        self.frame_lanes: int = self._engine.frame_lanes
        # int8, non-spiking, AVX-512: products skip the inputs whose codes are zero (same results)
        self.sparse_inputs: bool = self._engine.sparse_inputs
        self.config: dict = self._engine.config

    @property
    def spiking(self) -> bool:
        return bool(self.config["spiking"])

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights one frame reads (the Legendre A included)."""
        return self._engine.weight_bytes

    @property
    def macs_per_frame(self) -> int:
        return self._engine.macs_per_frame

    def open(self) -> "KernelStream":
        """A fresh stream (silence before its first sample)."""
        return KernelStream(self, self._engine.open())

    def push_many(self, streams: list["KernelStream"], blocks: list) -> list[np.ndarray]:
        """Advance many streams of this kernel in one call: ``blocks[i]`` (1-D float32 or int16
        samples, any length) goes to ``streams[i]``. Frames of all streams at the same position
        are computed together (each weight read once for the whole batch). Returns each
        stream's per-frame logits ``[n_i, classes]``, as ``push`` would. ``streams`` and ``blocks``
        may be any iterables. Raises AudioError for mismatched counts, a stream of another kernel,
        a stream given twice, or a bad block (as the C++ side does)."""
        try:
            streams, blocks = list(streams), list(blocks)
        except TypeError as e:
            raise AudioError(f"push_many: streams and blocks must be sequences or iterables ({e})") from None
        if len(streams) != len(blocks):
            raise AudioError(f"push_many: {len(streams)} streams but {len(blocks)} sample blocks")
        natives = []
        for i, s in enumerate(streams):
            if not isinstance(s, KernelStream) or s.kernel is not self:
                raise AudioError(f"push_many: streams[{i}] is not a stream opened by this kernel")
            natives.append(s._native)
        return _kernel.push_many(self._engine, natives, [as_numpy(b) for b in blocks])

    def __repr__(self) -> str:
        kind = "spiking " if self.spiking else ""
        weights = "int8" if self.int8 else "float32"
        return (f"Kernel({str(self.path)!r}, {kind}dim {self.config['dim']}, {len(self.labels)} classes, "
                f"{weights} weights, simd={self.simd})")


class KernelStream:
    """One audio stream on a :class:`Kernel` (create with ``kernel.open()``).

    ``push(samples)`` takes 1-D float32 samples in [-1, 1] (other float widths are converted)
    or int16 PCM, of any length, at ``kernel.sample_rate``, and returns the float32 per-frame
    logits ``[n, classes]`` of every frame these samples completed (the step form's
    ``per_frame``; a frame's output waits for ``kernel.lookahead`` frames of future audio).
    ``running`` holds the logits of the running mean since the last reset (the step form's
    ``running``). ``flush()`` ends the utterance (pads like the parallel model and returns the
    remaining frames' logits); the next ``push`` starts a new one. ``reset()`` forgets everything.
    Raises AudioError for non-1-D, non-finite or wrongly typed samples.
    """

    def __init__(self, kernel: Kernel, native):
        self.kernel = kernel
        self._native = native

    def push(self, samples) -> np.ndarray:
        return self._native.push(samples if isinstance(samples, np.ndarray) else as_numpy(samples))

    def push_features(self, features) -> np.ndarray:
        """Log-mel frames ``[n, n_mels]`` (normalized, as StreamingFbank(normalized=True) gives)
        instead of audio: the model alone."""
        return self._native.push_features(features if isinstance(features, np.ndarray) else as_numpy(features))

    def flush(self) -> np.ndarray:
        return self._native.flush()

    def reset(self) -> None:
        self._native.reset()

    @property
    def running(self) -> np.ndarray:
        return self._native.running

    @property
    def frames_emitted(self) -> int:
        """Frames whose logits were returned since the last reset or flush."""
        return self._native.frames_emitted

    def spike_rates(self) -> dict[str, float]:
        """Spiking models: fraction of neuron-frames that spiked, per LIF layer, since the last reset."""
        return {name: spikes / frames if frames else 0.0
                for name, (spikes, frames) in self._native.spike_counts().items()}

    def record_spikes(self, on: bool = True) -> None:
        """Keep every LIF layer's spikes of each frame until :meth:`take_spikes` (for verification)."""
        check_flag("record_spikes on", on)
        self._native.record_spikes(bool(on))

    def take_spikes(self) -> dict[str, np.ndarray]:
        """The recorded spikes: layer name (as the step form names them) -> uint8 ``[frames, size]``."""
        return self._native.take_spikes()
