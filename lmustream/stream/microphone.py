"""Microphone input through sounddevice (PortAudio), at the device's native sample rate.

PortAudio calls :class:`Microphone`'s callback on its own thread with small blocks; the
callback only copies the block into a queue (and counts input overflows: PortAudio's
buffer ran over because blocks were not taken in time), so detection runs on the caller's
thread at its own pace. Nothing here is fatal to a running stream: overflows are counted and
reported, never raised.
"""

from __future__ import annotations

import math
import numbers
import queue
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmustream.audio.io import check_sample_rate
from lmustream.errors import ConfigError, LmuStreamError

DEFAULT_BLOCK_SECONDS = 0.02  # 20 ms blocks: small enough for a live meter and low latency
PORTAUDIO_HINT = ("install PortAudio (Debian/Ubuntu: apt-get install libportaudio2; macOS: brew install "
                  "portaudio), or run scripts/setup.sh")


class MicrophoneError(LmuStreamError, RuntimeError):
    """No usable input device, PortAudio missing, or the device refused to open."""


def import_sounddevice():
    """The sounddevice module, or a MicrophoneError saying what to install."""
    try:
        import sounddevice
    except ImportError as e:  # the Python package itself is missing
        raise MicrophoneError(f"the sounddevice package is not installed ({e}); pip install sounddevice") from e
    except OSError as e:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise MicrophoneError(f"PortAudio is missing ({e}); {PORTAUDIO_HINT}") from e
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    host_api: str
    channels: int
    sample_rate: int
    is_default: bool

    def describe(self) -> str:
        star = "*" if self.is_default else " "
        return f"{star} {self.index:>3}  {self.name}  ({self.host_api}, {self.channels} ch, {self.sample_rate} Hz)"


def input_devices() -> list[InputDevice]:
    """Every device with input channels (the default one marked)."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
    except Exception as e:  # PortAudio failed to initialise
        raise MicrophoneError(f"PortAudio could not list devices: {e}") from e
    default = _default_input_index(sd)
    found = []
    for index, d in enumerate(devices):
        if d["max_input_channels"] > 0:
            found.append(InputDevice(index, d["name"], apis[d["hostapi"]]["name"], int(d["max_input_channels"]),
                                     int(round(d["default_samplerate"])), index == default))
    return found


def _default_input_index(sd) -> int | None:
    try:
        index = sd.default.device[0]
    except Exception:
        return None
    return int(index) if index is not None and int(index) >= 0 else None


def pick_input_device(device: str | int | None) -> InputDevice:
    """The device to record from: an index, a unique part of a name, or None for the default."""
    devices = input_devices()
    if not devices:
        raise MicrophoneError("no audio input device found (no microphone, or PortAudio sees no audio "
                              "server: check that one is running and `lmustream listen --list-devices`)")
    if device is None or device == "":
        default = [d for d in devices if d.is_default]
        return default[0] if default else devices[0]
    text = str(device)
    if text.lstrip("-").isdigit():
        matches = [d for d in devices if d.index == int(text)]
    else:
        matches = [d for d in devices if text.lower() in d.name.lower()]
    if len(matches) != 1:
        names = "\n".join(d.describe() for d in devices)
        what = "no" if not matches else "more than one"
        raise MicrophoneError(f"{what} input device matches {text!r}; input devices:\n{names}")
    return matches[0]


class Microphone:
    """An open input stream: ``read()`` returns float32 mono blocks at ``sample_rate``.

    Use as a context manager. ``overflows`` counts blocks PortAudio reported as overflowed.
    """

    def __init__(self, device: str | int | None = None, block_seconds: float = DEFAULT_BLOCK_SECONDS,
                 sample_rate: int | None = None):
        # before the device is looked for: a bad setting is the caller's mistake, whatever the hardware
        if isinstance(block_seconds, bool) or not isinstance(block_seconds, numbers.Real) \
                or not math.isfinite(block_seconds) or block_seconds <= 0:
            raise ConfigError(f"microphone block length must be a number of seconds > 0, got {block_seconds!r}")
        if sample_rate is not None:
            check_sample_rate(sample_rate, "Microphone")
        self.device = pick_input_device(device)
        self.sample_rate = int(sample_rate or self.device.sample_rate)
        self.block_size = max(1, int(round(self.sample_rate * block_seconds)))
        self.overflows = 0
        self.blocks = 0
        self._queue: queue.Queue = queue.Queue()
        self._stream: Any = None

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread
        if status and status.input_overflow:
            self.overflows += 1
        self._queue.put(indata.mean(axis=1) if indata.shape[1] > 1 else indata[:, 0].copy())

    def __enter__(self) -> "Microphone":
        sd = import_sounddevice()
        try:
            self._stream = sd.InputStream(device=self.device.index, channels=1, samplerate=self.sample_rate,
                                          blocksize=self.block_size, dtype="float32", callback=self._callback)
            self._stream.start()
        except Exception as e:
            raise MicrophoneError(f"cannot open input device {self.device.index} ({self.device.name}) at "
                                  f"{self.sample_rate} Hz: {e}") from e
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._stream = None

    def read(self, timeout: float = 1.0) -> np.ndarray | None:
        """The next block, or None when none arrived within ``timeout`` seconds."""
        try:
            block = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        self.blocks += 1
        return block

    @property
    def backlog(self) -> int:
        """Blocks captured but not read yet (grows when detection is slower than real time)."""
        return self._queue.qsize()

    def drain(self) -> None:
        """Drop the blocks captured so far (e.g. before a recording prompt)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def record(self, seconds: float) -> np.ndarray:
        """The next ``seconds`` of audio (blocks as they arrive), float32 mono."""
        if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not math.isfinite(seconds) \
                or seconds <= 0:
            raise ConfigError(f"recording length must be a number of seconds > 0, got {seconds!r}")
        need = int(round(seconds * self.sample_rate))
        chunks, have = [], 0
        deadline = time.monotonic() + seconds + 5.0
        while have < need:
            block = self.read(timeout=0.5)
            if block is None:
                if time.monotonic() > deadline:
                    raise MicrophoneError(f"no audio arriving from input device {self.device.name!r}")
                continue
            chunks.append(block)
            have += block.size
        return np.concatenate(chunks)[:need]


def level_dbfs(block: np.ndarray) -> float:
    """RMS level of a block in dB relative to full scale (-120 for silence)."""
    if block.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64))))
    return max(-120.0, 20.0 * np.log10(rms + 1e-12))
