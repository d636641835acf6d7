"""ONNX export of the step form, with explicit, named state.

The graph computes ``chunk`` steps per call. Inputs and outputs (B = streams, dynamic):

  features in (default)           audio in (``audio_in=True``)
    features [B, K, n_mels]         samples [B, 160 K] float32 in [-1, 1], 16 kHz
    padding  [B, K] bool            (no padding input: an utterance ends by feeding silence)
    state.<name>  (every state tensor of StepLMUFormer; audio adds state.frontend.buffer and
                   state.frontend.pushes)
  outputs: running [B, K, classes], per_frame [B, K, classes], valid [B, K] bool,
           next.<name> for every state input.

Feed ``next.*`` back as ``state.*``. Initial state: zeros of the shapes in the metadata
(every state tensor starts at zero). The model's ONNX metadata (``metadata_props``) has one
entry ``lmustream`` holding JSON: labels, frontend settings, look-ahead, chunk, the state
tensors with their shapes and dtypes, and the posterior the logits are read with ("sigmoid" per
class or "softmax", as the model was trained).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from lmustream.audio.features import FbankConfig

from lmustream.errors import CheckpointError, ConfigError
from lmustream.ranges import check_flag
from lmustream.stream.step import StepLMUFormer

OPSET = 17
# One copy of the step per frame is unrolled into the graph: 128 frames (a 1.28 s clip) make a 77 MB graph.
MAX_CHUNK = 128


def spike_vector(log: dict[str, list[torch.Tensor]], k: int) -> torch.Tensor:
    """Every LIF layer's spikes of step k of a ``record_spikes`` log, concatenated: [B, S]."""
    return torch.cat([steps[k] for steps in log.values()], dim=1)


class _ChunkStep(nn.Module):
    """K steps of the step form in one call (unrolled; K is small)."""

    def __init__(self, step: StepLMUFormer, chunk: int, spike_output: bool = False):
        super().__init__()
        self.step = step
        self.chunk = chunk
        self.spike_output = spike_output

    def forward(self, features, padding, *state):
        outs = ([], [], [])
        with self.step.record_spikes() if self.spike_output else contextlib.nullcontext({}) as log:
            for k in range(self.chunk):
                running, per_frame, valid, *state = self.step(features[:, k], padding[:, k], *state)
                for acc, value in zip(outs, (running, per_frame, valid)):
                    acc.append(value)
        extra = ()
        if self.spike_output:
            extra = (torch.stack([spike_vector(log, k) for k in range(self.chunk)], 1),)
        return (torch.stack(outs[0], 1), torch.stack(outs[1], 1), torch.stack(outs[2], 1), *extra, *state)


class GraphFrontend(nn.Module):
    """Log-mel of one frame from raw samples, with graph-friendly ops (DFT as a matmul), float64 inside.

    State: ``buffer [B, 320]`` the last 320 samples, ``pushes [B]`` how many 160-sample hops seen.
    Frame j spans samples [160 j, 160 j + 400), so it completes during hop j + 2: the frame is the
    first 400 of the last 480 samples, and the first two hops complete no frame.
    """

    HISTORY = 320

    def __init__(self, config: "FbankConfig"):
        from lmustream.audio.features import mel_filterbank, window_function

        super().__init__()
        if (config.window_length, config.hop_length, config.n_fft) != (400, 160, 512):
            raise ConfigError(f"the audio-in ONNX graph supports the 16 kHz, 25 ms / 10 ms frontend only (400-sample "
                              f"window, 160-sample hop, 512-point FFT), got {config.window_length}, "
                              f"{config.hop_length}, {config.n_fft}")
        self.config = config
        n = np.arange(config.window_length)
        k = np.arange(config.n_fft // 2 + 1)
        angle = 2 * np.pi * np.outer(n, k) / config.n_fft  # (400, 257)
        window = window_function(config).astype(np.float64)
        self.register_buffer("cos", torch.from_numpy(window[:, None] * np.cos(angle)))
        self.register_buffer("sin", torch.from_numpy(window[:, None] * np.sin(angle)))
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(config).T.copy()))  # (257, n_mels)

    def forward(self, hop: torch.Tensor, buffer: torch.Tensor, pushes: torch.Tensor):
        c = self.config
        window = torch.cat([buffer, hop], dim=1)  # (B, 480)
        frame = window[:, :c.window_length].to(torch.float64)  # (B, 400)
        if c.remove_dc_offset:
            frame = frame - frame.mean(dim=1, keepdim=True)
        previous = torch.cat([frame[:, :1], frame[:, :-1]], dim=1)  # x[-1] := x[0] (Kaldi)
        frame = frame - c.preemphasis * previous
        re, im = frame @ self.cos, frame @ self.sin  # (B, 257)
        energy = (re * re + im * im) @ self.mel  # (B, n_mels)
        logmel = torch.log(torch.clamp(energy, min=c.log_floor))
        normalized = ((logmel - c.mean) / (2 * c.std)).to(torch.float32)
        pushes = pushes + 1
        return normalized, pushes >= 3, window[:, -self.HISTORY:], pushes


class _AudioChunkStep(nn.Module):
    def __init__(self, step: StepLMUFormer, frontend: GraphFrontend, chunk: int):
        super().__init__()
        self.step, self.frontend, self.chunk = step, frontend, chunk

    def forward(self, samples, buffer, pushes, *state):
        hop = self.frontend.config.hop_length
        no_pad = torch.zeros(samples.shape[0], dtype=torch.bool, device=samples.device)
        outs = ([], [], [])
        for k in range(self.chunk):
            frame, ready, buffer, pushes = self.frontend(samples[:, k * hop:(k + 1) * hop], buffer, pushes)
            running, per_frame, valid, *new = self.step(frame, no_pad, *state)
            # Until the frontend has its first frame, the model does not move.
            state = [torch.where(ready.view(-1, *[1] * (n.ndim - 1)), n, s) for n, s in zip(new, state)]
            for acc, value in zip(outs, (running, per_frame, valid & ready)):
                acc.append(value)
        return (torch.stack(outs[0], 1), torch.stack(outs[1], 1), torch.stack(outs[2], 1), buffer, pushes, *state)


def export_onnx(step: StepLMUFormer, path: str, labels: list[str], frontend: "FbankConfig",
                audio_in: bool = False, chunk: int = 1, spike_output: bool = False,
                posterior: str = "softmax") -> dict:
    """Write the step graph to ``path``; returns the metadata dict stored in it.

    ``posterior``: how the outputs are to be read, recorded for runtimes that do not know the model
    (``lmustream.stream.detector.posterior_for_loss`` of its training loss).

    ``spike_output`` (spiking models, features in): an extra output ``spikes [B, K, S]`` with every
    LIF layer's spikes, for verifying the graph spike by spike against the PyTorch step form.

    ConfigError, before anything is written, for labels that are not one distinct non-empty string
    per model output, a frontend whose n_mels is not the model's, a chunk that is not an integer
    in [1, MAX_CHUNK], an unknown posterior, or non-bool flags.
    """
    from lmustream.models.artifact import check_frontend, check_labels

    if not isinstance(step, StepLMUFormer):
        raise ConfigError(f"export_onnx needs the step form, StepLMUFormer(model), got {type(step).__name__}")
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ConfigError(f"export_onnx needs a file path for the graph, got {path!r}")
    path = os.fspath(path)
    if isinstance(chunk, (bool, np.bool_)) or not isinstance(chunk, (int, np.integer)) or not 1 <= chunk <= MAX_CHUNK:
        raise ConfigError(f"chunk must be an integer from 1 to {MAX_CHUNK} frames, got {chunk!r}: the graph holds "
                          f"one copy of the step per frame, so its size and export time grow with it")
    chunk = int(chunk)
    if posterior not in ("sigmoid", "softmax"):
        raise ConfigError(f"posterior must be 'sigmoid' or 'softmax', got {posterior!r}")
    audio_in, spike_output = check_flag("audio_in", audio_in), check_flag("spike_output", spike_output)
    # The metadata is all a runtime knows of the graph: labels that do not match its outputs, or a
    # frontend whose frames do not fit its input, would be read without complaint and mislabel every result.
    n_classes = step.config.n_classes
    try:
        check_labels(labels, n_classes)
    except CheckpointError as e:
        raise ConfigError(f"labels must be {n_classes} distinct non-empty strings, one per model output ({e}), "
                          f"got {labels!r}") from None
    try:
        check_frontend(frontend, step.config.n_mels)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    step = step.float().eval()
    names = step.state_names
    state = step.initial_state(2)
    state_specs = [{"name": n, "shape": list(state[n].shape[1:]), "dtype": str(state[n].dtype)[6:]} for n in names]
    if audio_in:
        front = GraphFrontend(frontend)
        module = _AudioChunkStep(step, front, chunk)
        example = (torch.zeros(2, frontend.hop_length * chunk), torch.zeros(2, front.HISTORY),
                   torch.zeros(2, dtype=torch.int64), *state.values())
        inputs = ["samples", "state.frontend.buffer", "state.frontend.pushes"]
        outputs_extra = ["next.frontend.buffer", "next.frontend.pushes"]
        state_specs = [{"name": "frontend.buffer", "shape": [front.HISTORY], "dtype": "float32"},
                       {"name": "frontend.pushes", "shape": [], "dtype": "int64"}] + state_specs
    else:
        spike_output = spike_output and step.config.spiking
        module = _ChunkStep(step, chunk, spike_output)
        example = (torch.zeros(2, chunk, step.config.n_mels), torch.zeros(2, chunk, dtype=torch.bool),
                   *state.values())
        inputs, outputs_extra = ["features", "padding"], ["spikes"] if spike_output else []
    inputs += [f"state.{n}" for n in names]
    outputs = ["running", "per_frame", "valid"] + outputs_extra + [f"next.{n}" for n in names]
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, example, path, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    meta = {"format": "lmustream-step-onnx", "format_version": 1, "labels": list(labels),
            "frontend": frontend.to_dict(), "lookahead_frames": step.lookahead, "chunk": chunk,
            "audio_in": audio_in, "samples_per_step": frontend.hop_length if audio_in else None,
            "config": step.config.to_dict(), "state": state_specs, "posterior": posterior,
            "outputs": {"running": "head on the running mean of features (all_seq)",
                        "per_frame": "head on this frame's features",
                        "valid": "False while the look-ahead fills: outputs then repeat the last valid ones"}}
    import onnx

    graph = onnx.load(path)
    entry = graph.metadata_props.add()
    entry.key, entry.value = "lmustream", json.dumps(meta)
    onnx.checker.check_model(graph)
    onnx.save(graph, path)
    return meta
