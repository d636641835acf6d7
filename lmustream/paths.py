"""Where files will be written, checked before the work that produces them (without importing torch:
the command line checks its output options while it parses them)."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def check_folder_writable(folder: str | os.PathLike, named: str | os.PathLike | None = None) -> Path:
    """``folder`` if files can be written in it: it exists as a folder, or the folders missing on the way
    can be made. Otherwise an OSError naming ``named`` (default ``folder``) and the fault: a file where a
    folder must be, or no permission in the nearest folder that exists."""
    folder = Path(folder)
    named = str(folder if named is None else named)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{str(existing)!r} is a file, not a folder", named)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot write in {str(existing)!r}", named)
    return folder


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` if a file can be written there (its missing folders made on writing); otherwise an OSError
    naming ``path`` and the fault: a folder at that name, a file where a folder must be, no permission.
    Callers run it before their work, so that the work is not lost to a path that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; name the file to write in it", str(path))
    check_folder_writable(path.parent, named=path)
    return path
