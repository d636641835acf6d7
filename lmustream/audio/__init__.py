"""Audio I/O, resampling and the Kaldi-compatible log-mel frontend (importable without torch)."""

from lmustream.audio.features import (
    FLOAT32_EPS,
    WINDOWS,
    FbankConfig,
    StreamingFbank,
    fbank,
    mel_filterbank,
    normalize,
    window_function,
)
from lmustream.audio.io import (
    DEFAULT_SAMPLE_RATE,
    AudioTruncatedWarning,
    load_audio,
    read_audio,
    resample,
    validate_samples,
    write_audio,
)

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "FLOAT32_EPS",
    "WINDOWS",
    "AudioTruncatedWarning",
    "FbankConfig",
    "StreamingFbank",
    "fbank",
    "load_audio",
    "mel_filterbank",
    "normalize",
    "read_audio",
    "resample",
    "validate_samples",
    "window_function",
    "write_audio",
]
