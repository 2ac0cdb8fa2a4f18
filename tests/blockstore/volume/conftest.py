"""Fixtures for the volume tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.blockstore.volume.helpers import StoreHarness


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreHarness]:
    harness = StoreHarness(tmp_path)
    yield harness
    harness.close_all()
