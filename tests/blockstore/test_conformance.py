"""Run the conformance suite against every registered stack (see stacks.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blockstore.backend import Backend
from tests.blockstore import stacks  # noqa: F401  (registers the stacks)
from tests.blockstore.conformance import STACKS, BackendConformance, StackContext


@pytest.fixture(params=sorted(STACKS))
def backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Backend]:
    store = STACKS[request.param](StackContext(tmp_path, request))
    yield store
    store.close()


class TestConformance(BackendConformance):
    """Every test of BackendConformance, once per registered stack."""
