"""The PyTorch fallback has the kernel's API and equals the parallel model; backend selection."""

import json
import types

import numpy as np
import pytest
import torch

from lmustream.audio import StreamingFbank
from lmustream.errors import CheckpointError, ConfigError
from lmustream.models.artifact import read_header
from lmustream.stream import backend as backend_module
from lmustream.stream.backend import model_detector_defaults, open_kernel, read_model_header
from lmustream.stream.detector import Detector
from lmustream.stream.torch_stream import TorchKernel
from tests.detect.fakes import LABELS, tiny_artifact, tiny_model_file


def parallel_frame_logits(artifact, audio):
    features = StreamingFbank(artifact.frontend, normalized=True).push(audio)
    with torch.no_grad():
        return artifact.model.float()(torch.from_numpy(features)[None], mode="frames")[0].numpy()


def test_stream_in_any_chunks_equals_the_parallel_model(rng):
    artifact = tiny_artifact()
    audio = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    expected = parallel_frame_logits(artifact, audio)
    kernel = TorchKernel(artifact)
    assert kernel.labels == LABELS and kernel.lookahead == 3
    stream = kernel.open()
    parts, i = [], 0
    while i < audio.size:
        k = int(rng.integers(1, 4000))
        parts.append(stream.push(audio[i:i + k]))
        i += k
    parts.append(stream.flush())
    got = np.concatenate(parts)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # int16 input, and the stream starts afresh after flush
    int16 = np.round(audio * 32767).astype(np.int16)
    again = np.concatenate([stream.push(int16), stream.flush()])
    np.testing.assert_allclose(again, parallel_frame_logits(artifact, int16.astype(np.float32) / 32768), atol=1e-4)


def test_batched_logits_equal_separate_streams(rng):
    kernel = TorchKernel(tiny_artifact())
    signals = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 20000, 399, 16000)]
    batched = kernel.logits_of(signals)
    for signal, got in zip(signals, batched):
        stream = kernel.open()
        one = np.concatenate([stream.push(signal), stream.flush()])
        assert got.shape == one.shape
        np.testing.assert_allclose(got, one, atol=1e-5)


def test_auto_falls_back_to_torch_and_says_why(tmp_path, monkeypatch):
    path = tiny_model_file(tmp_path / "m.safetensors")
    monkeypatch.setattr(backend_module, "_cpp_kernel_class", lambda: (None, "not built here"))
    kernel = open_kernel(path)
    assert kernel.backend == "torch" and "not built here" in kernel.backend_note
    with pytest.raises(ConfigError, match="not built here"):
        open_kernel(path, "kernel")
    with pytest.raises(ConfigError, match="backend must be"):
        open_kernel(path, "gpu")


def test_auto_uses_a_working_cpp_kernel(tmp_path, monkeypatch):
    path = tiny_model_file(tmp_path / "m.safetensors")

    class FakeKernel:
        def __init__(self, p, int8=False):
            self.path, self.labels, self.lookahead = p, LABELS, 3

        def open(self):
            return TorchKernel(p_artifact).open()

    p_artifact = tiny_artifact()
    monkeypatch.setattr(backend_module, "_cpp_kernel_class", lambda: (FakeKernel, None))
    kernel = open_kernel(path)
    assert isinstance(kernel, FakeKernel) and kernel.backend == "kernel"
    det = Detector(str(path))
    assert det.backend == "kernel"

    class Refuses(FakeKernel):
        def __init__(self, p, int8=False):
            raise RuntimeError("spiking models not supported")

    monkeypatch.setattr(backend_module, "_cpp_kernel_class", lambda: (Refuses, None))
    kernel = open_kernel(path)
    assert kernel.backend == "torch" and "spiking models not supported" in kernel.backend_note


def test_int8_runs_the_cpp_kernel_or_says_why(tmp_path, monkeypatch):
    path = tiny_model_file(tmp_path / "m.safetensors")
    with pytest.raises(ConfigError, match="int8 weights run on the C\\+\\+ kernel only"):
        open_kernel(path, "torch", int8=True)
    with pytest.raises(ConfigError, match="ModelArtifact"):
        open_kernel(tiny_artifact(), int8=True)
    monkeypatch.setattr(backend_module, "_cpp_kernel_class", lambda: (None, "not built here"))
    with pytest.raises(ConfigError, match="int8 weights need the C\\+\\+ kernel, but not built here"):
        open_kernel(path, "auto", int8=True)  # no silent fallback to float32 PyTorch
    with pytest.raises(ConfigError, match="not built here"):
        Detector(str(path), int8=True)


def test_int8_kernel_detects_the_example_keywords():
    pytest.importorskip("lmustream._kernel")
    import soundfile as sf

    from tests.conftest import REPO

    truth = json.loads((REPO / "examples" / "keywords.json").read_text())
    x, rate = sf.read(REPO / "examples" / "keywords.flac", dtype="float32")
    det = Detector("sc12-lmuformer", int8=True)
    assert det.kernel.int8 and "int8" in det.backend_note
    events = list(det.detect(x[i:i + 320] for i in range(0, x.size, 320)))
    assert [e.keyword for e in events] == [k["keyword"] for k in truth["keywords"]]
    for e, k in zip(events, truth["keywords"]):
        assert k["start"] - 0.15 <= e.start <= k["end"] <= e.detected_at + 0.5, (e, k)


def test_cpp_kernel_probe_reports_a_missing_class(monkeypatch):
    fake = types.ModuleType("lmustream.stream.kernel")
    fake.kernel_available = lambda: True
    monkeypatch.setitem(__import__("sys").modules, "lmustream.stream.kernel", fake)
    monkeypatch.setattr("lmustream.stream.kernel", fake, raising=False)
    cls, why = backend_module._cpp_kernel_class()
    assert cls is None and "no streaming Kernel" in why


def test_header_without_torch_equals_the_loader(tmp_path):
    path = tiny_model_file(tmp_path / "m.safetensors", extra={"detector": {"threshold": 0.8, "window": 0.9}})
    assert read_model_header(path) == read_header(path)
    assert model_detector_defaults(path) == {"threshold": 0.8, "window": 0.9}
    det = Detector(str(path), backend="torch")
    assert det.config.threshold == 0.8 and det.config.window == 0.9
    det = Detector(str(path), threshold=0.6, backend="torch")
    assert det.config.threshold == 0.6
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="not an lmustream model"):
        read_model_header(bad)
    bad.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(CheckpointError, match="does not fit"):
        read_model_header(bad)


def test_sidecar_calibration_is_the_default(tmp_path):
    path = tiny_model_file(tmp_path / "kws.safetensors")
    assert model_detector_defaults(path) == {}
    (tmp_path / "kws.detector.json").write_text(json.dumps({"thresholds": {"yes": 0.97}, "refractory": 2.0}))
    det = Detector(str(path), backend="torch")
    assert det.thresholds["yes"] == 0.97 and det.thresholds["no"] == 0.5 and det.config.refractory == 2.0
    (tmp_path / "kws.detector.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        model_detector_defaults(path)
