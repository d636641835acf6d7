"""Measured equality of the step form and the parallel model (used by tests and benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmustream.errors import ConfigError
from lmustream.models.lmuformer import LMUFormer
from lmustream.stream.step import StepLMUFormer


@dataclass
class Equivalence:
    frames: int  # frames compared per stream
    max_abs_running: float  # vs parallel all_seq
    max_abs_per_frame: float  # vs parallel per-frame logits
    max_abs_output: float  # max |parallel output|, for relative figures
    spike_flips: int = 0  # spiking models: spikes that differ, all LIF layers
    spikes_compared: int = 0  # neuron-frames compared

    @property
    def flip_rate(self) -> float:
        return self.spike_flips / max(self.spikes_compared, 1)


def _check_pair(model: LMUFormer, step: StepLMUFormer, who: str) -> None:
    """ConfigError unless ``step`` is the step form of a model of ``model``'s config: two different
    models would be compared without complaint, and their difference reported as the step form's error."""
    if not isinstance(model, LMUFormer):
        raise ConfigError(f"{who} needs the parallel LMUFormer first, got {type(model).__name__}")
    if not isinstance(step, StepLMUFormer):
        raise ConfigError(f"{who} needs a StepLMUFormer second, got {type(step).__name__}")
    if step.config != model.config:
        raise ConfigError(f"{who}: the step form was built from another model config ({step.config}) "
                          f"than the parallel model's ({model.config})")


def _parallel_lif_name(step_name: str) -> str:
    """The parallel model's module name of the LIF layer the step form logs as ``step_name``."""
    if step_name == "head":
        return "head_lif"
    if step_name.startswith("embed"):
        return f"embed.lifs.{step_name[5:]}"
    block, layer = step_name[5:].split(".")
    return {"in": f"blocks.{block}.lmu.input_lif", "u": f"blocks.{block}.lmu.lif_u",
            "m": f"blocks.{block}.lmu.lif_m", "h": f"blocks.{block}.lmu.lif_h",
            "fc1": f"blocks.{block}.ffn.fc1_lif", "fc2": f"blocks.{block}.ffn.fc2_lif"}[layer]


def _step_lif_delay(step: StepLMUFormer, step_name: str) -> int:
    if step_name.startswith("embed"):
        return step.pad * (int(step_name[5:]) + 1)
    return step.lookahead


def compare_stream(model: LMUFormer, step: StepLMUFormer, x: torch.Tensor) -> Equivalence:
    """One continuous stream ``x [B, N, n_mels]``: the step form (then flush) vs the parallel model on all N."""
    from lmustream.conformance import lif_outputs

    _check_pair(model, step, "compare_stream")
    with torch.no_grad():
        ref_running = model(x, mode="all_seq").transpose(0, 1)  # (B, N, K)
        ref_frames = model(x, mode="frames")
    with step.record_spikes() as log:
        running, per_frame, _ = step.run(x, flush=True)
    result = Equivalence(x.shape[1], _maxabs(running, ref_running), _maxabs(per_frame, ref_frames),
                         float(ref_running.abs().max()))
    if model.config.spiking:
        ref_spikes = lif_outputs(model, x)
        for name, steps in log.items():
            d = _step_lif_delay(step, name)
            ours = torch.stack(steps[d:d + x.shape[1]], dim=-1)  # (B, C, N)
            ref = ref_spikes[_parallel_lif_name(name)]
            result.spike_flips += int((ours != ref).sum())
            result.spikes_compared += ref.numel()
    return result


def compare_utterances(model: LMUFormer, step: StepLMUFormer, utterances: torch.Tensor) -> Equivalence:
    """Utterances ``[U, N, n_mels]`` stepped back to back through one stream, flushed and reset
    between them, vs the parallel model on each utterance (spikes compared too, if spiking)."""
    from lmustream.conformance import lif_outputs

    _check_pair(model, step, "compare_utterances")
    with torch.no_grad():
        ref_running = model(utterances, mode="all_seq").transpose(0, 1)  # (U, N, K)
        ref_frames = model(utterances, mode="frames")
    ref_spikes = lif_outputs(model, utterances) if model.config.spiking else {}
    state = step.initial_state(1, utterances.device)
    result = Equivalence(utterances.shape[0] * utterances.shape[1], 0.0, 0.0, float(ref_running.abs().max()))
    N = utterances.shape[1]
    for u in range(utterances.shape[0]):
        with step.record_spikes() as log:
            running, per_frame, state = step.run(utterances[u:u + 1], state, flush=True)
        result.max_abs_running = max(result.max_abs_running, _maxabs(running[0], ref_running[u]))
        result.max_abs_per_frame = max(result.max_abs_per_frame, _maxabs(per_frame[0], ref_frames[u]))
        for name, steps in log.items():
            d = _step_lif_delay(step, name)
            ours = torch.stack(steps[d:d + N], dim=-1)[0]  # (C, N)
            ref = ref_spikes[_parallel_lif_name(name)][u]
            result.spike_flips += int((ours != ref).sum())
            result.spikes_compared += ref.numel()
        state = step.reset(state)
    return result


def _maxabs(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch: step {list(a.shape)} vs parallel {list(b.shape)}")
    return float((a.double() - b.double()).abs().max())
