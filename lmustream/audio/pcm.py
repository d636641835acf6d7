"""Raw PCM from a pipe: ``arecord ... -t raw | lmustream stream -``.

A pipe has no header to say its rate, sample format or channel count, and no end known in
advance, so the caller states the first three and blocks are handed on as soon as they arrive
(a live source must not wait for a full block to be detected).
"""

from __future__ import annotations

import warnings
from typing import BinaryIO, Iterator

import numpy as np

from lmustream.errors import AudioError

# name -> (little-endian dtype, the value of full scale)
PCM_FORMATS = {"s16le": (np.dtype("<i2"), 32768.0), "s32le": (np.dtype("<i4"), 2147483648.0),
               "f32le": (np.dtype("<f4"), 1.0)}
MAX_PCM_CHANNELS = 64


class PCMTrailingBytesWarning(UserWarning):
    """The stream ended inside a sample frame; the incomplete frame was left out."""


def check_pcm_format(name: str) -> tuple[np.dtype, float]:
    if name not in PCM_FORMATS:
        raise AudioError(f"raw PCM format must be one of {', '.join(PCM_FORMATS)}, got {name!r}")
    return PCM_FORMATS[name]


def pcm_blocks(stream: BinaryIO, sample_format: str = "s16le", channels: int = 1,
               block_frames: int = 1600) -> Iterator[np.ndarray]:
    """float32 ``[frames, channels]`` blocks in [-1, 1] from raw interleaved PCM, as they arrive.

    Reads at most ``block_frames`` frames at a time but does not wait to fill them (``read1``), so a live
    source is processed with the latency of its own writes. A stream that ends inside a sample frame
    warns (:class:`PCMTrailingBytesWarning`) and drops that incomplete frame.
    """
    dtype, full_scale = check_pcm_format(sample_format)
    if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= MAX_PCM_CHANNELS:
        raise AudioError(f"raw PCM channels must be an integer in [1, {MAX_PCM_CHANNELS}], got {channels!r}")
    frame_bytes = dtype.itemsize * channels
    read = getattr(stream, "read1", stream.read)
    pending = b""
    while True:
        chunk = read(max(block_frames, 1) * frame_bytes)
        if not chunk:
            break
        pending += chunk
        usable = len(pending) - len(pending) % frame_bytes
        if usable:
            data, pending = pending[:usable], pending[usable:]
            x = np.frombuffer(data, dtype).reshape(-1, channels).astype(np.float32)
            if full_scale != 1.0:
                x /= full_scale
            yield x
    if pending:
        warnings.warn(f"raw PCM input ended inside a sample frame: its last {len(pending)} byte(s) "
                      f"(of {frame_bytes} per frame) were left out", PCMTrailingBytesWarning, stacklevel=2)
