"""Fixtures for the FUSE tier (the mount machinery itself is in tests/fuse/mounts.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuse.mounts import Mounter


@pytest.fixture
def mounter(tmp_path: Path) -> Iterator[Mounter]:
    mounts = Mounter(tmp_path)
    try:
        yield mounts
    finally:
        mounts.cleanup()
