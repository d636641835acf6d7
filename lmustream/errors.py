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
