"""A merged adapter deploys like any model: model file, step form, ONNX graph, streaming backend."""

import copy

import numpy as np
import pytest
import torch

from examples.onnx_stream import OnnxStream
from lmustream.adapters import AFLoRAConfig, add_adapter, grow_head, merge
from lmustream.audio.features import FbankConfig
from lmustream.models import LMUFormer, get_config
from lmustream.models.artifact import ModelArtifact, load_model, save_model
from lmustream.selftest import randomize_batchnorm
from tests.adapters.helpers import perturb
from lmustream.stream.onnx_export import export_onnx
from lmustream.stream.step import StepLMUFormer

LABELS = ["a", "b", "c", "d", "new1", "new2"]


def adapted_model():
    """A tiny model taught two classes with an AFLoRA adapter whose path is far from zero."""
    torch.manual_seed(0)
    model = randomize_batchnorm(LMUFormer(get_config("lmuformer-tiny", n_classes=4)), 0).eval()
    grow_head(model, 6)
    return perturb(add_adapter(model, AFLoRAConfig(rank=4)), seed=2, head=True)


def test_merged_model_file_step_form_and_onnx_equal_the_adapted_model(tmp_path):
    adapted = adapted_model()
    x = torch.randn(2, 60, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want_mean = adapted(x)
        want_running = adapted(x, mode="all_seq").transpose(0, 1)  # (B, N, K)
        want_frames = adapted(x, mode="frames")
    merged = merge(copy.deepcopy(adapted)).eval()

    path = tmp_path / "merged.safetensors"
    save_model(path, ModelArtifact(merged, LABELS))
    loaded = load_model(path)
    assert loaded.labels == LABELS and loaded.model.config.n_classes == 6
    with torch.no_grad():
        assert (loaded.model(x) - want_mean).abs().max() <= 1e-5

    step = StepLMUFormer(loaded.model)
    running, per_frame, _ = step.run(x, flush=True)
    assert (running - want_running).abs().max() <= 1e-4
    assert (per_frame - want_frames).abs().max() <= 1e-4

    onnx_path = str(tmp_path / "merged.onnx")
    export_onnx(step, onnx_path, LABELS, FbankConfig(), chunk=4)
    stream = OnnxStream(onnx_path, batch=2)
    rows = []
    features = torch.cat([x, torch.zeros(2, step.lookahead, 128)], 1).numpy()
    padding = np.zeros(features.shape[:2], bool)
    padding[:, x.shape[1]:] = True
    usable = features.shape[1] - features.shape[1] % 4
    for start in range(0, usable, 4):
        _, frame_out, valid = stream.push_features(features[:, start:start + 4], padding[:, start:start + 4])
        rows += [frame_out[:, k] for k in range(4) if valid[0, k]]
    got = np.stack(rows, 1)
    assert np.abs(got - want_frames[:, :got.shape[1]].numpy()).max() <= 1e-4


@pytest.mark.parametrize("backend", ["kernel", "torch"])
def test_merged_model_runs_in_the_streaming_backends(tmp_path, backend):
    """The C++ kernel and the PyTorch step form run the merged file and equal the adapted model."""
    from lmustream.audio.features import fbank, normalize
    from lmustream.stream.backend import open_kernel

    if backend == "kernel":
        pytest.importorskip("lmustream._kernel", reason="the C++ kernel is not built")

    adapted = adapted_model()
    merged = merge(copy.deepcopy(adapted)).eval()
    path = tmp_path / "merged.safetensors"
    save_model(path, ModelArtifact(merged, LABELS))
    samples = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    kernel = open_kernel(str(path), backend)
    if backend == "kernel":
        assert type(kernel).__name__ == "Kernel", type(kernel)
    stream = kernel.open()
    got = np.concatenate([stream.push(samples), stream.flush()])
    with torch.no_grad():
        features = normalize(fbank(torch.from_numpy(samples)), FbankConfig())[None].float()
        want = adapted(features, mode="frames")[0].numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4
