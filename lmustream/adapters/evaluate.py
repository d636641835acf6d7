"""Measurements of a fine-tuned model: clip accuracy, and false alarms per hour on a negative stream.

False alarms: recordings that contain none of the keywords (e.g. spoken sentences) go through
the keyword detector (:class:`lmustream.stream.detector.Detector`: per-frame logits averaged
over 1 s, softmax, smoothing, per-keyword threshold, refractory period); every event of a
watched keyword is a false alarm. The per-frame logits come from the parallel model on the
whole recording, which equals the step form frame by frame (see ``lmustream.stream.verify``)
and is much faster offline. Alarms / hours of audio = FA/h.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lmustream.adapters.data import ClipSet
from lmustream.errors import ConfigError


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Logits ``[n, classes]`` of clips ``x [n, frames, n_mels]`` (model in eval mode)."""
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]) if len(x) else torch.empty(0)


def accuracy(model: torch.nn.Module, clips: ClipSet, labels: list[str]) -> float:
    """Top-1 accuracy of ``model`` (classes ``labels``) on ``clips``."""
    target = clips.targets(labels)
    return float((predict(model, clips.x).argmax(1) == target).float().mean())


@dataclass
class FalseAlarms:
    alarms: int
    hours: float
    threshold: float
    per_keyword: dict[str, int] = field(default_factory=dict)

    @property
    def per_hour(self) -> float:
        return self.alarms / self.hours if self.hours > 0 else float("nan")


@torch.no_grad()
def frame_logits(artifact, samples: np.ndarray) -> np.ndarray:
    """Per-frame logits ``[frames, classes]`` of 16 kHz ``samples`` (what a stream emits, flushed)."""
    from lmustream.audio.features import fbank, normalize

    x = normalize(fbank(torch.from_numpy(np.ascontiguousarray(samples, np.float32)), artifact.frontend),
                  artifact.frontend)
    if x.shape[0] == 0:
        return np.zeros((0, len(artifact.labels)), np.float32)
    return artifact.model.eval()(x[None].float(), mode="frames")[0].numpy()


def false_alarms(artifact, files: list[str | Path], keywords: list[str], threshold: float = 0.9) -> FalseAlarms:
    """Detector events of ``keywords`` on ``files`` (which hold none of them), per hour of audio."""
    from lmustream.audio.io import load_audio
    from lmustream.stream.detector import Detector
    from lmustream.stream.torch_stream import TorchKernel

    unknown = sorted(set(keywords) - set(artifact.labels))
    if unknown:
        raise ConfigError(f"keywords {unknown} are not classes of the model")
    if not files:
        raise ConfigError("false alarms: no negative recordings given")
    detector = Detector(TorchKernel(artifact), keywords=keywords, threshold=threshold)
    rate = artifact.frontend.sample_rate
    result = FalseAlarms(0, 0.0, threshold, {k: 0 for k in keywords})
    for path in files:
        samples = load_audio(path, rate)
        detector.reset()
        for event in detector.process_logits(frame_logits(artifact, samples)):
            result.alarms += 1
            result.per_keyword[event.keyword] += 1
        result.hours += len(samples) / rate / 3600
    return result
