"""Exception types raised by lmustream.

Each derives from ``ValueError`` (bad input) or ``RuntimeError`` so callers that
do not know our types still catch them, and every message names the offending
file, tensor or argument.
"""


class LmuStreamError(Exception):
    """Base class of every error lmustream raises on purpose."""


class AudioError(LmuStreamError, ValueError):
    """An audio file or array cannot be used (missing, corrupt, empty, non-finite, wrong shape)."""


class CheckpointError(LmuStreamError, ValueError):
    """A model file or state dict does not match what the loader expects."""


class ConfigError(LmuStreamError, ValueError):
    """A configuration value is out of range or inconsistent."""


def not_a_model_file(path: str, detail: str) -> CheckpointError:
    """The error for a file that is no lmustream model file: what it looks like instead, when its first
    bytes tell (an ONNX graph, a PyTorch checkpoint, text), else the reader's ``detail``."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        head = b""
    if path.lower().endswith(".onnx"):
        kind = ("an ONNX graph (lmustream export writes those from a model file; --model takes the "
                ".safetensors model file)")
    elif head.startswith(b"PK\x03\x04"):
        kind = ("a PyTorch checkpoint (zip): a training run's checkpoint.pt has model.safetensors beside it; "
                "the LMUFormer authors' checkpoints become model files with `lmustream convert`")
    elif head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        kind = "a text file"
    else:
        kind = detail
    return CheckpointError(f"{path!r} is not an lmustream model file: {kind}")
