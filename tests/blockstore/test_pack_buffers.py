"""The pack layer's reused pack buffers: packs are filled in a few buffers used again
and again, and nothing read or stored ever sees a buffer's next pack.

A pack's objects are copied into a buffer as they come; after its upload the buffer
holds the next pack. So: an uploaded pack must be the inner backend's own copy, a read
of an object not yet uploaded must copy it while its pack is still in the buffer, an
object that does not fit closes the pack (or gets a buffer of its own), and an idle
layer keeps no buffers.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from blockstore.backend import Backend, Layer, StoreError
from blockstore.backends.memory import MemoryBackend
from blockstore.layers.pack import PackLayer
from blockstore.layers.pack_format import PACK_PREFIX, read_trailer


def key(n: int) -> str:
    return f"blocks/{hashlib.sha256(str(n).encode()).hexdigest()}"


def data(n: int, size: int = 1000) -> bytes:
    return (b"%d." % n * size)[:size]


class RecordingPuts(Layer):
    """Keeps the object each pack was handed down in (alive, so that two distinct ones
    never share an id); can hold puts."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.buffers: list[object] = []
        self.release = threading.Event()
        self.release.set()

    def put(self, key: str, data: bytes) -> None:
        self.buffers.append(data)
        self.release.wait()
        super().put(key, data)


def pack_counts(backend: Backend) -> list[int]:
    return sorted(
        len(read_trailer(backend, k[len(PACK_PREFIX) :], size)[1])
        for k, size in backend.list(PACK_PREFIX)
    )


def test_packs_reuse_a_few_buffers_and_every_pack_keeps_its_own_bytes(tmp_path: Path) -> None:
    inner = RecordingPuts(MemoryBackend())
    layer = PackLayer(inner, tmp_path, pack_size=10_000, uploaders=1, queue_depth=1)
    for n in range(200):  # 20 packs of 10 objects
        layer.put(key(n), data(n))
    layer.flush()
    assert len(inner.buffers) == 20
    assert len({id(b) for b in inner.buffers}) <= 3  # the filling pack, two in flight
    fresh = PackLayer(inner.inner, tmp_path / "fresh")  # the bucket alone
    assert all(fresh.get(key(n)) == data(n) for n in range(200))
    fresh.close()
    layer.close()


def test_a_read_of_a_pending_object_is_a_copy_that_outlives_its_buffer(
    tmp_path: Path,
) -> None:
    inner = RecordingPuts(MemoryBackend())
    inner.release.clear()  # pack 0 stays in its buffer, uploading
    layer = PackLayer(inner, tmp_path, pack_size=10_000, uploaders=1, queue_depth=1)
    for n in range(10):
        layer.put(key(n), data(n))
    early = layer.get(key(3))
    part = layer.get_range(key(4), 10, 20)
    assert (early, part) == (data(3), data(4)[10:30])
    inner.release.set()
    for n in range(10, 60):  # pack 0's buffer now holds later packs
        layer.put(key(n), data(n))
    layer.flush()
    assert (early, part) == (data(3), data(4)[10:30])
    assert all(layer.get(key(n)) == data(n) for n in range(60))
    layer.close()


def test_concurrent_readers_never_see_a_buffer_s_next_pack(tmp_path: Path) -> None:
    layer = PackLayer(MemoryBackend(), tmp_path, pack_size=8_000, uploaders=2)
    written = threading.Event()
    wrong: list[int] = []

    def reader(first: int) -> None:
        n = first
        while not written.is_set() or n < 400:
            if layer.exists(key(n % 400)) and layer.get(key(n % 400)) != data(n % 400):
                wrong.append(n % 400)
            n += 7

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for thread in readers:
        thread.start()
    for n in range(400):
        layer.put(key(n), data(n))
    written.set()
    for thread in readers:
        thread.join()
    layer.flush()
    assert wrong == []
    assert all(layer.get(key(n)) == data(n) for n in range(400))
    layer.close()


def test_an_object_that_does_not_fit_closes_the_pack_or_gets_a_buffer_of_its_own(
    tmp_path: Path,
) -> None:
    inner = MemoryBackend()
    layer = PackLayer(inner, tmp_path, pack_size=1000)
    large = data(1, 4000)  # larger than a pack buffer (1,500 bytes)
    layer.put(key(0), data(0, 500))
    layer.put(key(1), large)  # closes pack 0 (half full) and travels alone
    layer.put(key(2), data(2, 500))
    assert layer.get(key(1)) == large
    layer.flush()
    assert pack_counts(inner) == [1, 1, 1]
    assert layer.get(key(1)) == large and layer.get(key(2)) == data(2, 500)
    layer.close()


def test_a_failed_upload_loses_nothing_and_an_idle_layer_holds_no_buffers(
    tmp_path: Path,
) -> None:
    class FailingOnce(Layer):
        failed = False

        def put(self, key: str, data: bytes) -> None:
            view = memoryview(data)  # held by the traceback: that buffer cannot grow back
            if not self.failed:
                self.failed = True
                raise StoreError(f"put {key}: injected ({len(view)} bytes)", key=key)
            super().put(key, data)

    inner = FailingOnce(MemoryBackend())
    layer = PackLayer(inner, tmp_path, pack_size=10_000, uploaders=1)
    for n in range(30):
        layer.put(key(n), data(n))
    with pytest.raises(StoreError, match="injected"):
        layer.flush()
    assert not layer._spare
    for n in range(10):  # the failed pack's objects are stored again
        if not layer.exists(key(n)):
            layer.put(key(n), data(n))
    layer.flush()
    assert all(layer.get(key(n)) == data(n) for n in range(30))
    layer.close()
