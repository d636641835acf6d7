"""On-disk cache of per-clip features: one ``.npy`` per clip, keyed by everything that shapes it.

Layout: ``<cache_dir>/<key[:2]>/<key>.npy``, float32 ``[frames, n_mels]`` (64 KiB at
128 x 128). The key is sha256 of a JSON record of the frontend config, the frame count,
the source file's absolute path, size and mtime, and for silence clips the noise offset
and gain, plus :data:`CACHE_FORMAT_VERSION`: editing a file or changing the frontend
yields a new key, so stale entries are never read (they are only left behind; delete the
folder to reclaim space). Writes go to a temporary file in the same folder and are moved
into place with ``os.replace``, so concurrent DataLoader workers and interrupted runs
never leave a half-written entry under a valid name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from lmustream.data.clips import Clip

# Bump when the computation behind an entry changes (padding policy, normalization, ...).
CACHE_FORMAT_VERSION = 1
CACHE_ENV = "LMUSTREAM_CACHE_DIR"
DEFAULT_CACHE_SUBDIR = Path("lmustream") / "features"
FANOUT_CHARS = 2  # first hex digits of the key name a subfolder: 256 folders, none huge


def default_cache_dir() -> Path:
    """``$LMUSTREAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/lmustream/features``, else ``~/.cache/lmustream/features``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / DEFAULT_CACHE_SUBDIR


class FeatureCache:
    """Load and atomically store feature arrays under ``root`` by :meth:`key`."""

    def __init__(self, root) -> None:
        self.root = Path(root).expanduser()
        self._warned = False

    def key(self, clip: Clip, frontend: dict, frames: int) -> str | None:
        """The entry name of ``clip``'s features, or None when its file cannot be stat'ed."""
        source = clip.source
        try:
            stat = os.stat(source)
        except OSError:
            return None
        record = {
            "version": CACHE_FORMAT_VERSION,
            "frontend": frontend,
            "frames": int(frames),
            "path": os.path.abspath(source),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "noise_offset": None if clip.noise is None else int(clip.noise[1]),
            "gain": float(clip.gain),
        }
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        """Where the entry ``key`` lives."""
        return self.root / key[:FANOUT_CHARS] / f"{key}.npy"

    def load(self, key: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The stored float32 array of ``shape``, or None if absent or unusable (then recomputed)."""
        try:
            array = np.load(self.path(key), allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            return None  # damaged on disk: recompute and overwrite
        if array.shape != tuple(shape) or array.dtype != np.float32:
            return None
        return array

    def save(self, key: str, array: np.ndarray) -> bool:
        """Store ``array`` atomically; on an OS error warn once and return False (training goes on)."""
        target = self.path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{key[:8]}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, array, allow_pickle=False)
                os.replace(temp, target)
            except BaseException:
                os.unlink(temp)
                raise
        except OSError as e:
            if not self._warned:
                warnings.warn(f"feature cache {str(self.root)!r} is not writable ({e}); features will be "
                              "recomputed whenever they are needed", RuntimeWarning, stacklevel=3)
                self._warned = True
            return False
        return True
