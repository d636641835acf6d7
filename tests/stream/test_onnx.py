"""ONNX export of the step form, verified in onnxruntime against the PyTorch step form."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from examples.onnx_stream import OnnxStream
from lmustream.audio.features import FbankConfig, StreamingFbank
from lmustream.models import LMUFormer, LMUFormerConfig, get_config
from lmustream.selftest import randomize_batchnorm
from lmustream.stream.onnx_export import GraphFrontend, export_onnx, spike_vector
from lmustream.stream.step import StepLMUFormer

TOL = 1e-4
MAX_FLIP_RATE = 1e-5


def paper_step(spiking):
    torch.manual_seed(0)
    model = randomize_batchnorm(LMUFormer(get_config("slmuformer" if spiking else "lmuformer")), 4).eval()
    return StepLMUFormer(model)


def labels(n):
    return [f"w{i}" for i in range(n)]


@pytest.mark.parametrize("spiking,batch,chunk", [(False, 1, 1), (False, 8, 10), (True, 1, 10), (True, 8, 1)])
def test_onnx_equals_step_form_over_10000_frames(tmp_path, spiking, batch, chunk):
    step = paper_step(spiking)
    path = str(tmp_path / "m.onnx")
    export_onnx(step, path, labels(35), FbankConfig(), chunk=chunk, spike_output=True)
    ort_stream = OnnxStream(path, batch=batch)
    frames = 10_000
    x = torch.randn(batch, frames, 128, generator=torch.Generator().manual_seed(3))
    state = step.initial_state(batch)
    err, flips, compared = 0.0, 0, 0
    for start in range(0, frames, chunk):
        with step.record_spikes() as log:
            ours, state = step.step(x[:, start:start + chunk], state)
        running, per_frame, valid = ort_stream.push_features(x[:, start:start + chunk].numpy())
        assert np.array_equal(valid, ours.valid.numpy())
        if spiking:  # compare every LIF layer's spikes; a flip moves later outputs by a weight column
            theirs = ort_stream.last_outputs["spikes"]
            mine = torch.stack([spike_vector(log, k) for k in range(chunk)], 1).numpy()
            flips += int((theirs != mine).sum())
            compared += mine.size
        else:
            err = max(err, float(np.abs(per_frame - ours.per_frame.numpy()).max()),
                      float(np.abs(running - ours.running.numpy()).max()))
    if spiking:
        assert flips / compared <= MAX_FLIP_RATE, (flips, compared)
    else:
        assert err <= TOL


def test_graph_is_valid_and_self_describing(tmp_path):
    step = paper_step(False)
    path = str(tmp_path / "m.onnx")
    export_onnx(step, path, labels(35), FbankConfig(), chunk=2)
    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version >= 17
    meta = json.loads({p.key: p.value for p in graph.metadata_props}["lmustream"])
    assert meta["lookahead_frames"] == 5 and meta["chunk"] == 2 and meta["labels"] == labels(35)
    assert meta["posterior"] == "softmax"  # the default; `lmustream export` passes the model's own
    inputs = [i.name for i in graph.graph.input]
    outputs = [o.name for o in graph.graph.output]
    assert inputs[:2] == ["features", "padding"]
    assert {s["name"] for s in meta["state"]} == set(step.state_names)
    for s in meta["state"]:
        assert f"state.{s['name']}" in inputs and f"next.{s['name']}" in outputs
    # dynamic batch
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_graph_frontend_matches_python_frontend():
    config = FbankConfig()
    front = GraphFrontend(config)
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    audio = (0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t) + 0.01 * rng.standard_normal(t.size))
    audio = audio.astype(np.float32)
    ref = StreamingFbank(config, normalized=True).push(audio)
    buffer, pushes, ours = torch.zeros(1, front.HISTORY), torch.zeros(1, dtype=torch.int64), []
    for i in range(0, audio.size, 160):
        frame, ready, buffer, pushes = front(torch.from_numpy(audio[None, i:i + 160]), buffer, pushes)
        if ready:
            ours.append(frame[0].numpy())
    ours = np.stack(ours)[: len(ref)]
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 2e-3 / (2 * config.std)  # 2e-3 in log-mel units, before normalization


def test_audio_in_graph_equals_python_frontend_and_step(tmp_path):
    step = paper_step(False)
    config = FbankConfig()
    path = str(tmp_path / "audio.onnx")
    export_onnx(step, path, labels(35), config, audio_in=True, chunk=4)
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    audio = audio[: (audio.size // 640) * 640]
    frames = torch.from_numpy(StreamingFbank(config, normalized=True).push(audio))[None]
    expected, _, _ = step.run(frames)
    stream = OnnxStream(path)
    got = []
    for i in range(0, audio.size, 640):
        running, _, valid = stream.push_samples(audio[None, i:i + 640])
        got.extend(running[0, valid[0]])
    got = np.stack(got)
    assert got.shape == expected[0].shape
    assert np.abs(got - expected[0].numpy()).max() <= TOL


def test_example_script_runs_without_torch(tmp_path):
    torch.manual_seed(0)
    model = randomize_batchnorm(LMUFormer(LMUFormerConfig(dim=32, memory_size=16, n_classes=3)), 1).eval()
    path = str(tmp_path / "tiny.onnx")
    export_onnx(StepLMUFormer(model), path, ["yes", "no", "up"], FbankConfig(), audio_in=True)
    import soundfile as sf
    sf.write(tmp_path / "clip.wav", (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32),
             16000, subtype="PCM_16")
    script = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
              "runpy.run_path(sys.argv[0], run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", script, "examples/onnx_stream.py", path, str(tmp_path / "clip.wav")],
                         capture_output=True, text=True, check=True)
    assert "final:" in out.stdout
    probabilities = [float(line.split(" p ")[1]) for line in out.stdout.splitlines() if " p " in line]
    assert probabilities and all(0 < p <= 1 for p in probabilities)


def test_example_reads_outputs_with_the_recorded_posterior():
    from examples.onnx_stream import probabilities

    logits = np.array([2.0, 0.0, -1.0])
    assert probabilities(logits, "softmax").sum() == pytest.approx(1.0)
    assert probabilities(logits, "sigmoid") == pytest.approx(1 / (1 + np.exp(-logits)))


def test_bad_chunk():
    with pytest.raises(ValueError, match="chunk"):
        export_onnx(paper_step(False), "/tmp/never.onnx", labels(35), FbankConfig(), chunk=0)
    with pytest.raises(ValueError, match="posterior"):
        export_onnx(paper_step(False), "/tmp/never.onnx", labels(35), FbankConfig(), posterior="tanh")


def test_example_names_a_file_it_cannot_read(tmp_path):
    import soundfile as sf

    from examples.onnx_stream import read_wav_16k

    sf.write(tmp_path / "clip.flac", np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(SystemExit, match="clip.flac: not a PCM WAV file"):
        read_wav_16k(str(tmp_path / "clip.flac"))
    with pytest.raises(SystemExit, match="missing.wav: cannot read"):
        read_wav_16k(str(tmp_path / "missing.wav"))
