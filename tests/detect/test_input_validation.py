"""Bad input to the detector and its backend selection: lmustream's own errors, said at once,
never a silent wrong result (audit sections 1.1, 1.6, 1.7, 1.13, 1.14 and 3)."""

import json
import struct

import numpy as np
import pytest

from lmustream.errors import AudioError, CheckpointError, ConfigError
from lmustream.stream import backend as backend_module
from lmustream.stream.backend import open_kernel
from lmustream.stream.detector import CALIBRATION_KEYS, Detector, DetectorConfig, load_thresholds
from lmustream.stream.torch_stream import TorchKernel
from tests.detect.fakes import LABELS, EnergyKernel, silence, tiny_artifact, tiny_model_file, tone


def rewrite_header(src, dst, edit):
    """A copy of model file ``src`` whose lmustream header went through ``edit``."""
    raw = open(src, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    outer = json.loads(raw[8:8 + n])
    meta = json.loads(outer["__metadata__"]["lmustream"])
    edit(meta)
    outer["__metadata__"]["lmustream"] = json.dumps(meta)
    body = json.dumps(outer).encode()
    open(dst, "wb").write(struct.pack("<Q", len(body)) + body + raw[8 + n:])
    return dst


def stereo(seconds=0.1, dtype=np.float32):
    x = tone(seconds, 500)
    return np.stack([x, x], axis=1).astype(dtype)


# -- 1. backend "auto": a file the kernel refuses is not run on PyTorch -------------------------------

class RefusesTheFile:
    """A C++ kernel stand-in that refuses every file as invalid, as the real one reports it."""

    def __init__(self, path, int8=False):
        raise CheckpointError(f"{path!r}: header 'labels' must be a list of strings")


class PredatesTheFormat:
    def __init__(self, path, int8=False):
        raise CheckpointError(f"{path!r}: uses model format version 2, newer than this kernel supports (1)")


def test_auto_raises_the_kernels_verdict_on_an_invalid_file(tmp_path, monkeypatch):
    path = tiny_model_file(tmp_path / "m.safetensors")
    monkeypatch.setattr(backend_module, "_cpp_kernel_class", lambda: (RefusesTheFile, None))
    for backend in ("auto", "kernel"):
        with pytest.raises(CheckpointError, match="must be a list of strings"):
            open_kernel(path, backend)
    with pytest.raises(CheckpointError, match="must be a list of strings"):
        Detector(str(path))
    assert open_kernel(path, "torch").backend == "torch"  # asked for by name: no kernel involved


def test_auto_still_falls_back_when_the_kernel_cannot_run_the_model(tmp_path, monkeypatch):
    path = tiny_model_file(tmp_path / "m.safetensors")
    monkeypatch.setattr(backend_module, "_cpp_kernel_class", lambda: (PredatesTheFormat, None))
    kernel = open_kernel(path)
    assert kernel.backend == "torch" and "newer than this kernel supports" in kernel.backend_note


def test_auto_refuses_a_corrupt_file_on_the_real_kernel(tmp_path):
    pytest.importorskip("lmustream._kernel")
    good = tiny_model_file(tmp_path / "m.safetensors")
    bad = rewrite_header(good, tmp_path / "labels.safetensors", lambda m: m.update(labels="abcd"))
    with pytest.raises(CheckpointError, match="labels"):
        Detector(str(bad))  # used to run on PyTorch with the labels "a", "b", "c", "d"
    assert Detector(str(good)).backend == "kernel"


def test_model_and_int8_are_checked_first():
    with pytest.raises(ConfigError, match="model must be .* got NoneType"):
        Detector(None)
    with pytest.raises(ConfigError, match="model must be"):
        open_kernel(42)
    with pytest.raises(ConfigError, match="int8 must be True or False"):
        open_kernel(tiny_artifact(), "torch", int8="no")


# -- 2. Detector.push: the dtype rules of mono apply to every channel layout ---------------------------

@pytest.mark.parametrize("block, match", [
    ((stereo() * 2 ** 31).astype(np.int32), "unsupported sample dtype int32"),
    (np.ones((1600, 2), bool), "unsupported sample dtype bool"),
    (np.full((1600, 2), 255, np.uint8), "unsupported sample dtype uint8"),
    (np.zeros((1600, 2), object), "unsupported sample dtype object"),
    (np.zeros((1600, 0), np.float32), r"\(1600, 0\) has no channels"),
    (np.stack([tone(0.0025, 500)] * 2, axis=0), r"\(2, 40\) is ambiguous.*Detector\(channels=\.\.\.\)"),
    (np.array([[0.0, np.nan], [0.0, 0.0]] * 100, np.float32), "non-finite"),
])
def test_multichannel_blocks_follow_the_mono_rules(block, match):
    det = Detector(EnergyKernel())
    with pytest.raises(AudioError, match=match):
        det.push(block)
    assert det.samples_in == 0


def test_multichannel_int16_is_scaled_like_mono():
    pcm = (stereo(1.0) * 32767).astype(np.int16)
    a, b = Detector(EnergyKernel()), Detector(EnergyKernel())
    a.push(pcm)
    b.push(pcm[:, 0])
    np.testing.assert_allclose(a.last_posteriors, b.last_posteriors, atol=1e-6)


def test_the_channel_layout_once_known_reads_short_blocks():
    det = Detector(EnergyKernel(), channels=2)
    with pytest.raises(AudioError, match=r"expected \[samples, 2\].*got shape \(2, 40\).*transpose"):
        det.push(np.zeros((2, 40), np.float32))
    det.push(np.zeros((1, 2), np.float32))  # one stereo sample: the layout was stated
    learned = Detector(EnergyKernel())
    learned.push(stereo(0.1))  # 1600 samples of 2 channels: shows the stream's layout
    learned.push(np.zeros((2, 2), np.float32))
    with pytest.raises(AudioError, match=r"expected \[samples, 2\].*earlier blocks"):
        learned.push(np.zeros((100, 3), np.float32))
    with pytest.raises(ConfigError, match="channels must be an integer"):
        Detector(EnergyKernel(), channels=0)


def test_a_push_rate_that_contradicts_the_detector_is_an_error():
    det = Detector(EnergyKernel(), sample_rate=8000)
    with pytest.raises(AudioError, match="at 16000 Hz, but the detector was made for sample_rate=8000"):
        det.push(silence(0.1), sample_rate=16000)
    det.push(silence(0.1, 8000), sample_rate=8000)
    free = Detector(EnergyKernel())  # no rate stated: the first push's sets the stream's
    free.push(silence(0.1, 8000), 8000)
    with pytest.raises(AudioError, match="sample rate changed"):
        free.push(silence(0.1), 16000)


def test_sample_rates_out_of_range_are_refused_before_soxr():
    with pytest.raises(AudioError, match="ratio of 16000, above the 1024"):
        Detector(EnergyKernel(), sample_rate=1)
    with pytest.raises(AudioError, match="ratio"):
        Detector(EnergyKernel()).push(silence(0.1), 1)
    with pytest.raises(AudioError, match="at most 768000"):
        Detector(EnergyKernel(), sample_rate=10 ** 12)


# -- 3. process_logits: the model's shape, finite values ------------------------------------------------

@pytest.mark.parametrize("logits", [
    np.zeros((12, 3), np.float32),  # 36 values: used to be read as 9 frames of 4 classes
    np.zeros((4, 30), np.float32),  # transposed [classes, frames]
    np.zeros(4, np.float32),
    np.zeros((1, 2, 4), np.float32),
])
def test_logits_of_another_shape_are_refused(logits):
    det = Detector(EnergyKernel())
    with pytest.raises(AudioError, match=r"expected logits \[frames, 4\]"):
        det.process_logits(logits)
    assert det.frames == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_name_the_frame_and_change_nothing(bad):
    det = Detector(EnergyKernel(), threshold=0.5, window=0.3, smoothing=0.05)
    det.process_logits(np.zeros((3, 4), np.float32))
    block = np.zeros((5, 4), np.float32)
    block[2, 0] = bad
    with pytest.raises(AudioError, match=r"non-finite logit .* at frame 5 \(row 2 of this block\)"):
        det.process_logits(block)
    assert det.frames == 3
    with pytest.raises(AudioError, match="real numbers"):
        det.process_logits(np.array([["a"] * 4]))
    assert det.process_logits(np.zeros((0, 4), np.float32)) == []
    assert det.process_logits([]) == []  # a stream with nothing to say


# -- 6. DetectorConfig ------------------------------------------------------------------------------------

def test_from_dict_refuses_unknown_keys_and_reads_calibration_files():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['windw'\]; known: .*window"):
        DetectorConfig.from_dict({"windw": 5.0})
    calibration = {"thresholds": {"yes": 0.9}, "window": 0.8, **{k: 1.0 for k in CALIBRATION_KEYS}}
    assert DetectorConfig.from_dict(calibration).window == 0.8


def test_a_calibration_file_brings_the_settings_its_thresholds_were_measured_with(tmp_path):
    calibration = {"thresholds": {"yes": 0.9, "no": 0.8}, "window": 0.5, "smoothing": 0.05, "posterior": "softmax",
                   "target_fa_per_hour": 1.0, "negative_hours": 2.0}
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(calibration))
    d = Detector(EnergyKernel(), threshold=str(path))
    assert (d.config.window, d.config.smoothing) == (0.5, 0.05)
    assert d.thresholds == {"yes": 0.9, "no": 0.8}
    d = Detector(EnergyKernel(), threshold=str(path), window=0.3)  # an explicit setting still wins
    assert (d.config.window, d.config.smoothing) == (0.3, 0.05)
    # thresholds alone join the settings the detector would otherwise have
    path.write_text(json.dumps({"thresholds": {"yes": 0.7}}))
    d = Detector(EnergyKernel(), threshold=str(path))
    assert d.config.window == DetectorConfig().window and d.thresholds["yes"] == 0.7
    path.write_text(json.dumps({"thresholds": {"yes": 0.7}, "windw": 0.5, "smoothing": 0.1}))
    with pytest.raises(ConfigError, match=r"cal.json.*unknown key\(s\) \['windw'\]"):
        Detector(EnergyKernel(), threshold=str(path))


def test_sidecar_with_a_typo_is_refused(tmp_path):
    path = tiny_model_file(tmp_path / "m.safetensors")
    (tmp_path / "m.detector.json").write_text(json.dumps({"windw": 0.5}))
    with pytest.raises(ConfigError, match="windw"):
        Detector(str(path), backend="torch")


@pytest.mark.parametrize("name", ["window", "smoothing", "hold", "isolation", "trailing_pause", "refractory"])
def test_huge_durations_are_refused_at_construction(name):
    with pytest.raises(ConfigError, match=f"detector {name} must be at most"):
        DetectorConfig(**{name: 1e300, **({"refractory": 3600.0} if name == "hold" else {})})
    with pytest.raises(ConfigError, match=f"detector {name}"):
        Detector(EnergyKernel(), **{name: 1e300})


def test_numpy_scalars_are_numbers():
    config = DetectorConfig(threshold=np.float32(0.5), window=np.float64(0.5), thresholds={"yes": np.float32(0.7)})
    assert config.threshold == 0.5 and type(config.threshold) is float
    assert config.thresholds == {"yes": pytest.approx(0.7)} and config.window == 0.5
    assert Detector(EnergyKernel(), threshold=np.float32(0.25)).thresholds == {"yes": 0.25, "no": 0.25}
    with pytest.raises(ConfigError, match="threshold of 'yes' must be a number in \\[0, 1\\], got 'abc'"):
        Detector(EnergyKernel(), threshold={"yes": "abc"})
    with pytest.raises(ConfigError, match="threshold"):
        load_thresholds({"yes": True})
    with pytest.raises(ConfigError, match="must be a number"):
        DetectorConfig(threshold=np.True_)


# -- 7. duplicate keywords, callbacks --------------------------------------------------------------------

def test_a_keyword_named_twice_is_reported_once(rng):
    x = np.concatenate([silence(1.0), tone(0.4, 500), silence(2.0)])
    once = Detector(EnergyKernel(), keywords=["yes"], one_per_word=False, threshold=0.5, window=0.3, smoothing=0.05)
    twice = Detector(EnergyKernel(), keywords=["yes", "yes"], one_per_word=False, threshold=0.5, window=0.3,
                     smoothing=0.05)
    assert twice.keywords == ["yes"]
    events = [e.keyword for e in twice.detect([x])]
    assert events == [e.keyword for e in once.detect([x])] == ["yes"]


def test_callbacks_must_be_callable():
    with pytest.raises(ConfigError, match="on_event must be callable, got int"):
        Detector(EnergyKernel(), on_event=5)
    with pytest.raises(ConfigError, match="callback must be callable"):
        Detector(EnergyKernel()).add_callback("print")


def test_the_torch_backend_takes_tensors_that_require_grad():
    torch = pytest.importorskip("torch")
    det = Detector(TorchKernel(tiny_artifact()), keywords=[LABELS[0]])
    det.push(torch.zeros(1600, requires_grad=True))
    det.push(torch.zeros(1600, 2, requires_grad=True))
    assert det.samples_in == 3200
