"""Raw PCM blocks from a pipe (lmustream.audio.pcm)."""

import io

import numpy as np
import pytest

from lmustream.audio.pcm import PCMTrailingBytesWarning, pcm_blocks
from lmustream.errors import AudioError


class Trickle(io.RawIOBase):
    """A pipe that delivers its bytes a few at a time, as a live source does."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = data, step

    def readable(self):
        return True

    def read1(self, n=-1):
        out, self.data = self.data[:min(n, self.step)], self.data[min(n, self.step):]
        return out

    read = read1


@pytest.mark.parametrize("fmt,dtype,scale", [("s16le", "<i2", 32768.0), ("s32le", "<i4", 2147483648.0),
                                             ("f32le", "<f4", 1.0)])
def test_formats_decode_to_full_scale_floats(fmt, dtype, scale):
    values = np.array([[0, 1], [-1, 2], [3, -4]], dtype=np.float64) * (scale / 8 if scale != 1.0 else 0.125)
    raw = values.astype(dtype).tobytes()
    blocks = list(pcm_blocks(io.BytesIO(raw), fmt, channels=2))
    got = np.concatenate(blocks)
    assert got.dtype == np.float32 and got.shape == (3, 2)
    np.testing.assert_allclose(got, values / scale, rtol=0, atol=1e-7)


def test_blocks_are_handed_on_as_they_arrive_and_frames_are_never_split():
    samples = np.arange(-500, 500, dtype="<i2")
    raw = samples.tobytes()
    blocks = list(pcm_blocks(Trickle(raw, step=7), "s16le", channels=1, block_frames=3200))
    assert len(blocks) > 100  # not held back until 3200 frames (6400 bytes) had come
    np.testing.assert_array_equal(np.concatenate(blocks)[:, 0], samples / 32768.0)


def test_a_stream_ending_inside_a_frame_warns_and_keeps_the_whole_frames():
    raw = np.arange(6, dtype="<i2").tobytes() + b"\x01"
    with pytest.warns(PCMTrailingBytesWarning, match="last 1 byte"):
        got = np.concatenate(list(pcm_blocks(io.BytesIO(raw), "s16le", channels=2)))
    assert got.shape == (3, 2)


def test_bad_settings_are_clear_errors():
    with pytest.raises(AudioError, match="format must be one of"):
        list(pcm_blocks(io.BytesIO(b""), "mp3"))
    for channels in (0, 65, 1.5, True):
        with pytest.raises(AudioError, match="channels must be an integer"):
            list(pcm_blocks(io.BytesIO(b""), "s16le", channels))
