"""A hypothesis state machine drives a backend stack and a dict model side by side.

Runs over the memory backend and over a full factory stack on a local directory
(compress -> encrypt -> cache -> retry -> limit -> stats -> localdir), which may also
be closed and reopened mid-run (the cache and config must survive a restart).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from blockstore.backend import Backend, NotFoundError
from blockstore.backends.memory import MemoryBackend
from blockstore.factory import StoreStack, create_store, open_store
from tests.blockstore.conformance import STACK_OWN_KEYS

KEYS = [
    "lease", "settings", "a-b", "a/bc", "a/b/c", "blocks/00", "blocks/00aa11bb22cc",
    "blocks/00aa11bb22cd", "blocks/0f1e2d3c", "trees/abcdef0123", "trees/abcdef01234",
    "snapshots/2024-01-01T00:00:00Z", "snapshots/x",
]
PREFIXES = ["", "blocks/", "blocks/00", "blocks/00aa11bb22c", "trees/", "snapshots/2024",
            "a", "a/", "a/b", "zzz"]
keys = st.sampled_from(KEYS)
values = st.binary(max_size=3000) | st.sampled_from([b"", b"\0" * 4000, b"abc" * 900])
SETTINGS = settings(max_examples=100, stateful_step_count=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class BackendMachine(RuleBasedStateMachine):
    """Every operation of the Backend interface, checked against a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, bytes] = {}
        self.backend = self.open()

    def open(self) -> Backend:
        return MemoryBackend()

    @rule(key=keys, data=values)
    def put(self, key: str, data: bytes) -> None:
        self.backend.put(key, data)
        self.model[key] = data

    @rule(key=keys, data=values)
    def put_if_absent(self, key: str, data: bytes) -> None:
        expected = key not in self.model
        assert self.backend.put_if_absent(key, data) is expected
        if expected:
            self.model[key] = data

    @rule(key=keys)
    def get(self, key: str) -> None:
        if key in self.model:
            assert self.backend.get(key) == self.model[key]
        else:
            with pytest.raises(NotFoundError):
                self.backend.get(key)

    @rule(key=keys, offset=st.integers(0, 4100), length=st.integers(0, 4100))
    def get_range(self, key: str, offset: int, length: int) -> None:
        if key in self.model:
            expected = self.model[key][offset : offset + length]
            assert self.backend.get_range(key, offset, length) == expected
        else:
            with pytest.raises(NotFoundError):
                self.backend.get_range(key, offset, length)

    @rule(key=keys)
    def exists(self, key: str) -> None:
        assert self.backend.exists(key) is (key in self.model)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        self.backend.delete(key)
        self.model.pop(key, None)

    @rule(batch=st.lists(keys, max_size=5))
    def delete_many(self, batch: list[str]) -> None:
        self.backend.delete_many(batch)
        for key in batch:
            self.model.pop(key, None)

    @rule(prefix=st.sampled_from(PREFIXES))
    def list(self, prefix: str) -> None:
        listed = [key for key, _ in self.backend.list(prefix) if key not in STACK_OWN_KEYS]
        assert listed == sorted(key for key in self.model if key.startswith(prefix))

    @invariant()
    def listing_matches(self) -> None:
        listed = [key for key, _ in self.backend.list() if key not in STACK_OWN_KEYS]
        assert listed == sorted(self.model)

    def teardown(self) -> None:
        self.backend.close()


class FactoryStackMachine(BackendMachine):
    """The same, through a full encrypted factory stack on a local directory."""

    def open(self) -> Backend:
        self.workdir = Path(tempfile.mkdtemp(prefix="stateful-"))
        self.url = str(self.workdir / f"store-{uuid.uuid4().hex[:8]}")
        self.key_file = str(self.workdir / "key")
        create_store(self.url, encrypt=True, key_file=self.key_file, durable=False)
        self.stack = self._open_stack()
        return self.stack.backend

    def _open_stack(self) -> StoreStack:
        return open_store(self.url, key_file=self.key_file, state_dir=self.workdir / "state",
                          cache_size=64 << 10, durable=False)

    @rule()
    def reopen(self) -> None:
        self.stack.close()
        self.stack = self._open_stack()
        self.backend = self.stack.backend

    def teardown(self) -> None:
        self.stack.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


TestMemoryBackend = BackendMachine.TestCase
TestMemoryBackend.settings = SETTINGS
TestFactoryStack = FactoryStackMachine.TestCase
TestFactoryStack.settings = SETTINGS
