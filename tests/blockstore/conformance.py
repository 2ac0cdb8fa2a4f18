"""The one conformance suite every `Backend` stack must pass.

restic's backend test suite and zarr's StoreTests, for our interface: `BackendConformance`
holds the tests and asks only for a `backend` fixture; `tests/blockstore/stacks.py`
registers the stacks it runs against (bottom backends, each layer over memory, full
factory stacks) with `register_stack`, and `test_conformance.py` parametrises over
that registry. Adding a stack is one `register_stack(...)` line.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blockstore.backend import Backend, NotFoundError, TransientError


@dataclass
class StackContext:
    """What a stack builder may use: a private temp dir and other fixtures on demand."""

    tmp_path: Path
    request: pytest.FixtureRequest

    def fixture(self, name: str) -> Any:
        """The value of fixture `name` (e.g. "s3_url"), created only if asked for."""
        return self.request.getfixturevalue(name)


StackBuilder = Callable[[StackContext], Backend]
STACKS: dict[str, StackBuilder] = {}


def register_stack(name: str, builder: StackBuilder) -> StackBuilder:
    """Add `builder` to the stacks the conformance suite and state machine run against."""
    if name in STACKS:
        raise ValueError(f"stack {name!r} registered twice")
    STACKS[name] = builder
    return builder


BLOCK_KEYS = [f"blocks/{i:02x}{'5a' * 15}" for i in range(8)]


def payload(size: int, seed: int = 0) -> bytes:
    """`size` deterministic bytes that are neither random nor trivially compressible."""
    unit = random.Random(seed).randbytes(1021)
    return (unit * (size // len(unit) + 1))[:size]


def listed(backend: Backend, prefix: str = "") -> list[str]:
    """Keys `backend` lists under `prefix`, leaving out objects the stack made itself.

    A full factory stack already holds its `config` object (and a pack layer may keep
    objects of its own); the tests never write keys under those names.
    """
    return [key for key, _ in backend.list(prefix) if key not in STACK_OWN_KEYS]


STACK_OWN_KEYS = frozenset({"config"})


class BackendConformance:
    """The contract of `blockstore.backend.Backend`, checked on `backend`."""

    def test_missing_key(self, backend: Backend) -> None:
        key = BLOCK_KEYS[0]
        with pytest.raises(NotFoundError):
            backend.get(key)
        with pytest.raises(NotFoundError):
            backend.get_range(key, 0, 10)
        assert backend.exists(key) is False
        backend.delete(key)  # deleting a missing key is not an error
        assert listed(backend) == []

    @pytest.mark.parametrize("size", [0, 1, 1000, 65536 + 3])
    def test_put_get(self, backend: Backend, size: int) -> None:
        data = payload(size, seed=size)
        backend.put(BLOCK_KEYS[1], data)
        backend.put("snapshots/s1", data[::-1])
        assert backend.get(BLOCK_KEYS[1]) == data
        assert backend.get("snapshots/s1") == data[::-1]
        assert backend.exists(BLOCK_KEYS[1])
        assert listed(backend) == [BLOCK_KEYS[1], "snapshots/s1"]

    def test_large_object(self, backend: Backend) -> None:
        data = os.urandom(20 << 20)
        backend.put(BLOCK_KEYS[2], data)
        assert backend.get(BLOCK_KEYS[2]) == data
        middle = len(data) // 2
        assert (
            backend.get_range(BLOCK_KEYS[2], middle, 1 << 20) == data[middle : middle + (1 << 20)]
        )
        assert backend.get_range(BLOCK_KEYS[2], len(data) - 5, 100) == data[-5:]

    def test_get_range(self, backend: Backend) -> None:
        data = payload(5000)
        backend.put("packs/00112233445566778899", data)
        for offset, length in [
            (0, 10),
            (100, 1000),
            (4990, 10),
            (4990, 500),
            (0, 5000),
            (0, 10**6),
            (5000, 10),
            (6000, 10),
            (17, 0),
        ]:
            got = backend.get_range("packs/00112233445566778899", offset, length)
            assert got == data[offset : offset + length], (offset, length)

    def test_overwrite(self, backend: Backend) -> None:
        backend.put("lease", b"first owner")
        backend.put("lease", b"second owner, longer")
        assert backend.get("lease") == b"second owner, longer"
        assert listed(backend) == ["lease"]

    def test_get_many(self, backend: Backend) -> None:
        objects = {key: payload(300 * i + 1, seed=i) for i, key in enumerate(BLOCK_KEYS)}
        objects["snapshots/s1"] = b"a control object"
        for key, value in objects.items():
            backend.put(key, value)
        keys = [*reversed(BLOCK_KEYS), "snapshots/s1", BLOCK_KEYS[3], BLOCK_KEYS[3]]
        assert backend.get_many(keys) == [objects[key] for key in keys]
        assert backend.get_many([]) == []
        backend.delete(BLOCK_KEYS[5])
        with pytest.raises(NotFoundError):
            backend.get_many([BLOCK_KEYS[4], BLOCK_KEYS[5]])

    def test_put_if_absent(self, backend: Backend) -> None:
        assert backend.put_if_absent(BLOCK_KEYS[3], b"one") is True
        assert backend.put_if_absent(BLOCK_KEYS[3], b"two") is False
        assert backend.get(BLOCK_KEYS[3]) == b"one"
        backend.delete(BLOCK_KEYS[3])
        assert backend.put_if_absent(BLOCK_KEYS[3], b"three") is True
        assert backend.get(BLOCK_KEYS[3]) == b"three"

    def test_delete(self, backend: Backend) -> None:
        for key in BLOCK_KEYS[:3]:
            backend.put(key, key.encode())
        backend.delete(BLOCK_KEYS[1])
        assert not backend.exists(BLOCK_KEYS[1])
        with pytest.raises(NotFoundError):
            backend.get(BLOCK_KEYS[1])
        assert listed(backend) == [BLOCK_KEYS[0], BLOCK_KEYS[2]]
        assert backend.get(BLOCK_KEYS[2]) == BLOCK_KEYS[2].encode()

    def test_delete_many(self, backend: Backend) -> None:
        keys = [f"trees/{i:04x}aaaaaaaa" for i in range(25)]
        for key in keys:
            backend.put(key, b"t")
        backend.put("settings", b"keep")
        backend.delete_many(iter([*keys[:20], "trees/ffffffffffff"]))
        assert listed(backend) == ["settings", *keys[20:]]
        backend.delete_many([])

    def test_list_order_and_prefixes(self, backend: Backend) -> None:
        keys = sorted(
            [
                "settings",
                "lease",
                "a/b/c",
                "a/bc",
                "a-b",
                "a.b",
                "blocks/0f",
                "blocks/0fab",
                *BLOCK_KEYS,
                "blocks/ff00ff00ff00",
                "trees/0123456789abcdef",
                "snapshots/2024-05-01T10:00:00Z",
                "snapshots/2024-05-01T10:00:01Z",
                "packs/3f/nested",
                "packs/3f00aa00bb",
            ]
        )
        for key in reversed(keys):
            backend.put(key, key.encode())
        assert listed(backend) == keys
        assert all(isinstance(size, int) and size >= 0 for _, size in backend.list())
        for prefix in [
            "blocks/",
            "blocks/0",
            "blocks/0f",
            "a",
            "a/",
            "a/b",
            "packs/3f",
            "snapshots/2024-05-01T10:00:01",
            "nothing",
            "settings",
        ]:
            expected = [key for key in keys if key.startswith(prefix)]
            assert listed(backend, prefix) == expected, prefix

    def test_overwrite_is_atomic(self, backend: Backend) -> None:
        versions = [bytes([65 + i]) * (256 << 10) for i in range(3)]
        backend.put("lease", versions[0])
        done = threading.Event()

        def write() -> None:
            for i in range(30):
                backend.put("lease", versions[i % 3])
            done.set()

        def read() -> int:
            # A transient error is within the contract (the retry layer answers it; moto's
            # server sometimes fails a GET racing an overwrite with a 500); a torn or
            # foreign value never is.
            reads = 0
            while not done.is_set() or reads == 0:
                try:
                    value = backend.get("lease")
                except TransientError:
                    continue
                assert value in versions
                reads += 1
            return reads

        with ThreadPoolExecutor(3) as pool:
            readers = [pool.submit(read) for _ in range(2)]
            pool.submit(write).result()
            assert all(reader.result() > 0 for reader in readers)

    def test_put_if_absent_race(self, backend: Backend) -> None:
        threads = 6
        for key in BLOCK_KEYS[:4]:
            barrier = threading.Barrier(threads)

            def claim(i: int, key: str = key, barrier: threading.Barrier = barrier) -> bool:
                barrier.wait()
                return backend.put_if_absent(key, f"writer {i}".encode())

            with ThreadPoolExecutor(threads) as pool:
                results = list(pool.map(claim, range(threads)))
            assert results.count(True) == 1, results
            assert backend.get(key) == f"writer {results.index(True)}".encode()

    def test_concurrent_mixed_operations(self, backend: Backend) -> None:
        keys = [f"blocks/{i:08x}{i:08x}" for i in range(48)]

        def work(i: int) -> None:
            data = payload(3000 + i, seed=i)
            backend.put(keys[i], data)
            assert backend.get(keys[i]) == data
            assert backend.get_range(keys[i], 10, 20) == data[10:30]
            if i % 3 == 0:
                backend.delete(keys[i])
                assert not backend.exists(keys[i])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(len(keys))))
        expected = [key for i, key in enumerate(keys) if i % 3]
        assert listed(backend, "blocks/") == expected
        for i, key in enumerate(keys):
            if i % 3:
                assert backend.get(key) == payload(3000 + i, seed=i)
