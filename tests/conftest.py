"""Shared fixtures: where the read-only shared data lives, and a seeded RNG."""

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$LMUSTREAM_SHARED`` or ``<repo>/../shared`` (absent in a user's clone: tests skip)."""
    return Path(os.environ.get("LMUSTREAM_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared():
    return shared_dir()


def require_shared(*parts: str) -> Path:
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} not present")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
