"""Stand-ins for a kernel whose per-frame logits are known exactly, and a small random model."""

import numpy as np
import torch

from lmustream.audio.features import FbankConfig
from lmustream.models import LMUFormer, LMUFormerConfig
from lmustream.models.artifact import ModelArtifact, save_model

LABELS = ["yes", "no", "_unknown_", "_silence_"]
HOP, WIN = 160, 400


class EnergyKernel:
    """Per frame (25 ms every 10 ms at 16 kHz), when the frame is loud: logit 8 for "yes" if it
    holds a 500 Hz tone, else logit 8 for "no" (any other loud sound); quiet frames: logit 8 for
    ``_silence_``.
    ``lookahead`` frames of delay, as the real models' patch embedding."""

    labels = LABELS
    sample_rate = 16000
    frontend = None

    def __init__(self, lookahead: int = 5):
        self.lookahead = lookahead

    def open(self):
        return EnergyStream(self)


class EnergyStream:
    def __init__(self, kernel):
        self.kernel = kernel
        self.reset()

    def reset(self):
        self._pending = np.zeros(0, np.float32)
        self._rows = []  # computed frames waiting for their look-ahead

    def _frames(self, x):
        signal = np.concatenate([self._pending, np.asarray(x, np.float32)])
        n = 0 if signal.size < WIN else 1 + (signal.size - WIN) // HOP
        rows = []
        for i in range(n):
            frame = signal[i * HOP:i * HOP + WIN]
            spectrum = np.abs(np.fft.rfft(frame * np.hanning(WIN), 1600))  # 10 Hz bins
            row = np.zeros(len(LABELS), np.float32)
            if np.sqrt(np.mean(frame ** 2)) > 0.01:
                row[0 if spectrum[50] > 0.5 * spectrum.max() else 1] = 8.0
            else:
                row[3] = 8.0
            rows.append(row)
        self._pending = signal[n * HOP:]
        return rows

    def push(self, x):
        self._rows += self._frames(x)
        ready = max(0, len(self._rows) - self.kernel.lookahead)
        out, self._rows = self._rows[:ready], self._rows[ready:]
        return np.array(out, np.float32).reshape(-1, len(LABELS))

    def flush(self):
        out = np.array(self._rows, np.float32).reshape(-1, len(LABELS))
        self.reset()
        return out


def tone(seconds, freq, rate=16000, amplitude=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds, rate=16000):
    return np.zeros(int(seconds * rate), np.float32)


def tiny_artifact(labels=LABELS, seed=0) -> ModelArtifact:
    """Random weights; the head scaled up so that posteriors swing between 0 and 1 with the input."""
    torch.manual_seed(seed)
    config = LMUFormerConfig(dim=16, memory_size=8, mlp_ratio=2, embed_convs=2, n_classes=len(labels), n_mels=20)
    model = LMUFormer(config).eval()
    with torch.no_grad():
        model.head.weight *= 20.0
    return ModelArtifact(model, list(labels), FbankConfig(n_mels=20))


def tiny_model_file(path, labels=LABELS, seed=0, extra=None):
    """:func:`tiny_artifact` saved as a model file."""
    artifact = tiny_artifact(labels, seed)
    if extra:
        artifact.extra = extra
    save_model(path, artifact)
    return path


def forbid_audio_devices(monkeypatch):
    """Fail the test if anything looks for or opens an audio device: a bad option must be refused first."""
    from lmustream.stream import microphone

    def touched(*args, **kwargs):
        raise AssertionError("an audio device was looked for before the options were checked")

    monkeypatch.setattr(microphone, "input_devices", touched)
    monkeypatch.setattr(microphone, "Microphone", touched)


class FakeMicrophone:
    """A stand-in for :class:`lmustream.stream.microphone.Microphone` that delivers ``signal`` (then
    zeros) in blocks at ``sample_rate``; ``opened`` says whether the "device" was entered."""

    def __init__(self, signal, sample_rate=16000, block_seconds=0.02):
        from types import SimpleNamespace

        self.device = SimpleNamespace(name="fake", index=0)
        self.signal, self.sample_rate = np.asarray(signal, np.float32), sample_rate
        self.block_size = max(1, int(round(sample_rate * block_seconds)))
        self.overflows, self.backlog, self.opened, self._at = 0, 0, False, 0

    def __enter__(self):
        self.opened = True
        return self

    def __exit__(self, *exc):
        pass

    def read(self, timeout=1.0):
        block = self.signal[self._at:self._at + self.block_size]
        self._at += self.block_size
        return block if block.size else np.zeros(self.block_size, np.float32)


class LogitsKernel:
    """A kernel that replays ``rows`` (per-frame logits, no look-ahead): a frame's row once its
    25 ms of audio have been pushed, whatever the audio."""

    labels = LABELS
    sample_rate = 16000
    frontend = None
    lookahead = 0

    def __init__(self, rows):
        self.rows = np.asarray(rows, np.float32)

    def open(self):
        return LogitsStream(self.rows)


class LogitsStream:
    def __init__(self, rows):
        self.rows = rows
        self.reset()

    def reset(self):
        self.samples, self.given = 0, 0

    def push(self, x):
        self.samples += len(x)
        ready = 0 if self.samples < WIN else min(1 + (self.samples - WIN) // HOP, len(self.rows))
        out, self.given = self.rows[self.given:ready], max(self.given, ready)
        return out

    def flush(self):
        self.reset()
        return self.rows[:0]
