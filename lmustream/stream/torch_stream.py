"""The streaming kernel's API on PyTorch: the step form behind the numpy streaming frontend.

Same face as the C++ kernel (``lmustream.stream.kernel.Kernel``), for machines where it is
not built::

    kernel = TorchKernel("sc12-lmuformer")    # a model file, a shipped model's name, or a ModelArtifact
    stream = kernel.open()
    logits = stream.push(samples)              # 16 kHz float32 or int16 -> float32 [n, classes]
    logits = stream.flush()                    # end of the audio: the look-ahead's last frames
    stream.reset()                             # a new, unrelated stream

``push`` returns the per-frame logits (the step form's ``per_frame`` output) of every frame
the samples complete, in order: row j of all the pushes and the flush together is frame j of
the audio, i.e. the 25 ms window starting at sample 160 j. A frame is complete once the audio
``lookahead`` frames after it has arrived (the patch embedding's centred kernels).

:meth:`TorchKernel.logits_of` runs many long signals at once as a batch of streams, for
offline evaluation (``lmustream eval-stream``, ``lmustream calibrate``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lmustream.audio.features import StreamingFbank
from lmustream.audio.io import validate_samples
from lmustream.errors import AudioError
from lmustream.models.artifact import ModelArtifact, load_model
from lmustream.models.registry import resolve_model
from lmustream.stream.step import StepLMUFormer


class TorchKernel:
    """A loaded model (step form, batch norms folded) from which streams are opened.

    Args:
      model: model file path, shipped model name, or a :class:`ModelArtifact`.
      threads: torch intra-op threads to use (None leaves torch's setting alone).
    """

    backend = "torch"

    def __init__(self, model: str | Path | ModelArtifact, threads: int | None = None):
        artifact = model if isinstance(model, ModelArtifact) else load_model(resolve_model(model))
        self.path = None if isinstance(model, ModelArtifact) else resolve_model(model)
        self.artifact = artifact
        self.labels: list[str] = list(artifact.labels)
        self.frontend = artifact.frontend
        self.sample_rate = artifact.frontend.sample_rate
        self.step_form = StepLMUFormer(artifact.model.float().eval())
        self.lookahead: int = int(self.step_form.lookahead)
        if threads is not None:
            torch.set_num_threads(int(threads))

    def open(self) -> "TorchStream":
        """A fresh stream (its own frontend and model state)."""
        return TorchStream(self)

    def logits_of(self, signals: list[np.ndarray], progress=None) -> list[np.ndarray]:
        """Per-frame logits ``[frames, classes]`` of each 16 kHz signal, all run as one batch of
        streams (each from a fresh state, flushed at its end); equal to pushing each signal
        through its own stream. ``progress`` (a tqdm-like object) is advanced by frames stepped."""
        fbank = StreamingFbank(self.frontend, normalized=True)
        features = []
        for signal in signals:
            fbank.reset()
            features.append(fbank.push(validate_samples(signal, "logits_of signal")))
        n_frames = [f.shape[0] for f in features]
        longest = max(n_frames, default=0)
        batch = len(signals)
        if batch == 0:
            return []
        # Streams shorter than the longest are fed padding frames after their end: the step
        # form treats those exactly as flush() does, so each stream's outputs stay its own.
        frames = np.zeros((batch, longest + self.lookahead, self.frontend.n_mels), np.float32)
        padding = np.ones((batch, longest + self.lookahead), bool)
        for b, f in enumerate(features):
            frames[b, : f.shape[0]] = f
            padding[b, : f.shape[0]] = False
        out = [np.zeros((n, len(self.labels)), np.float32) for n in n_frames]
        filled = [0] * batch
        state = self.step_form.initial_state(batch)
        chunk = 64
        with torch.no_grad():
            for start in range(0, frames.shape[1], chunk):
                x = torch.from_numpy(frames[:, start:start + chunk])
                pad = torch.from_numpy(padding[:, start:start + chunk])
                result, state = self.step_form.step(x, state, pad)
                per_frame = result.per_frame.float().numpy()
                valid = result.valid.numpy()
                for b in range(batch):
                    rows = per_frame[b][valid[b]]
                    take = min(len(rows), n_frames[b] - filled[b])
                    out[b][filled[b]:filled[b] + take] = rows[:take]
                    filled[b] += take
                if progress is not None:
                    progress.update(x.shape[1] * batch)
        return out


class TorchStream:
    """One audio stream through a :class:`TorchKernel`: state carried across ``push`` calls."""

    def __init__(self, kernel: TorchKernel):
        self.kernel = kernel
        self._fbank = StreamingFbank(kernel.frontend, normalized=True)
        self._n_classes = len(kernel.labels)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next push starts a new stream."""
        self._fbank.reset()
        self._state = self.kernel.step_form.initial_state(1)
        self.frames_out = 0

    def push(self, samples) -> np.ndarray:
        """16 kHz mono samples (float in [-1, 1] or int16, any length) -> float32 ``[n, classes]``
        per-frame logits of the frames they complete."""
        x = validate_samples(samples, "stream.push samples")
        frames = self._fbank.push(x)
        return self._step(frames, padding=False)

    def flush(self) -> np.ndarray:
        """End of the audio: the logits of the last ``lookahead`` frames (the model's right
        padding, as the parallel model pads a clip). Push after flush starts a new stream."""
        pad = np.zeros((self.kernel.lookahead, self.kernel.frontend.n_mels), np.float32)
        out = self._step(pad, padding=True)
        self.reset()
        return out

    def _step(self, frames: np.ndarray, padding: bool) -> np.ndarray:
        if frames.shape[0] == 0:
            return np.zeros((0, self._n_classes), np.float32)
        if not np.isfinite(frames).all():
            raise AudioError("stream.push: the frontend produced non-finite features")
        x = torch.from_numpy(np.ascontiguousarray(frames))[None]
        pad = torch.full((1, frames.shape[0]), padding, dtype=torch.bool)
        result, self._state = self.kernel.step_form.step(x, self._state, pad)
        rows = result.per_frame[0][result.valid[0]].float().numpy()
        self.frames_out += rows.shape[0]
        return np.ascontiguousarray(rows, dtype=np.float32)
