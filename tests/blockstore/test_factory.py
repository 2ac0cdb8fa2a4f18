"""The factory: URLs, store creation and opening, stack order, read-only stores."""

from __future__ import annotations

import errno
import json
import os
import uuid

import pytest

from blockstore.backend import NotFoundError, ReadOnlyError, StoreError
from blockstore.backends.localdir import LocalDirBackend
from blockstore.config import CONFIG_KEY
from blockstore.factory import (
    create_store,
    drop_memory_backend,
    open_backend,
    open_store,
)
from blockstore.layers.cache import CacheLayer
from blockstore.layers.compress import CompressLayer
from blockstore.layers.encrypt import EncryptLayer
from blockstore.layers.limit import LimitLayer
from blockstore.layers.packcache import PackCacheLayer
from blockstore.layers.retry import RetryLayer
from blockstore.layers.stats import StatsLayer


@pytest.mark.parametrize("url", ["relative/path", "store", "ftp://host/x", "memory://",
                                 "file://relative", "s3:///prefix", "memory://a/b"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError) as info:
        open_backend(url)
    assert info.value.errno == errno.EINVAL
    assert "s3://bucket/prefix" in str(info.value)  # the message lists the accepted forms


def test_url_forms(tmp_path) -> None:
    assert isinstance(open_backend(str(tmp_path)), LocalDirBackend)
    assert isinstance(open_backend(f"file://{tmp_path}"), LocalDirBackend)
    with pytest.raises(StoreError, match="bad backend options"):
        open_backend(str(tmp_path), bucket_size=3)


def test_memory_stores_are_shared_by_name() -> None:
    name = f"shared-{uuid.uuid4().hex}"
    try:
        create_store(f"memory://{name}")
        with open_store(f"memory://{name}") as first:
            first.backend.put("blocks/0a", b"seen by the second open")
        with open_store(f"memory://{name}") as second:
            assert second.backend.get("blocks/0a") == b"seen by the second open"
    finally:
        drop_memory_backend(name)


def test_create_twice_and_open_missing(tmp_path) -> None:
    url = str(tmp_path / "store")
    with pytest.raises(NotFoundError, match=f"no store at {url}"):
        open_store(url)
    create_store(url)
    with pytest.raises(StoreError, match=f"store already exists at {url}") as info:
        create_store(url, encrypt=True, passphrase=b"pw")
    assert info.value.errno == errno.EEXIST


def test_stack_order(tmp_path) -> None:
    url = str(tmp_path / "store")
    create_store(url, encrypt=True, key_file=str(tmp_path / "k"))
    with open_store(url, key_file=str(tmp_path / "k"), state_dir=tmp_path / "s") as stack:
        chain, node = [], stack.backend
        while hasattr(node, "inner"):
            chain.append(type(node))
            node = node.inner
        assert chain == [CompressLayer, EncryptLayer, CacheLayer, RetryLayer, LimitLayer,
                         StatsLayer]
        assert isinstance(node, LocalDirBackend)
        assert isinstance(stack.raw, RetryLayer)
        assert stack.config.compression.level == 1


def test_pack_layer_goes_above_the_pack_cache_and_retry(tmp_path) -> None:
    seen = {}

    def pack_factory(below, config, state_dir):
        seen.update(below=below, config=config, state_dir=state_dir)
        return below  # a stand-in: the real pack layer wraps `below`

    url = str(tmp_path / "store")
    create_store(url, volume={"pack_size": 16 << 20})
    with open_store(url, state_dir=tmp_path / "s", pack_layer=pack_factory) as stack:
        assert isinstance(seen["below"], PackCacheLayer)  # whole packs, no object cache
        assert seen["below"].inner is stack.raw
        assert seen["config"].volume == {"pack_size": 16 << 20}
        assert seen["state_dir"] == tmp_path / "s"
    with open_store(
        url, state_dir=tmp_path / "s", pack_layer=pack_factory, cache_size=0
    ) as stack:
        assert seen["below"] is stack.raw


def test_no_compression_and_default_state_dir(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    url = str(tmp_path / "store")
    config = create_store(url, compression_level=0)
    with open_store(url) as stack:
        assert not isinstance(stack.backend, CompressLayer)
        assert stack.state_dir == tmp_path / "xdg" / "rsyncd-py" / config.store_id
        stack.backend.put("blocks/0b", b"plain")
    assert open_backend(url).get("blocks/0b") == b"plain"


def test_read_only_store_refuses_writes(tmp_path) -> None:
    url = str(tmp_path / "store")
    create_store(url)
    with open_store(url, state_dir=tmp_path / "s") as stack:
        stack.backend.put("blocks/0c", b"committed")
    with open_store(url, state_dir=tmp_path / "s", read_only=True) as stack:
        assert stack.backend.get("blocks/0c") == b"committed"
        for write in (lambda: stack.backend.put("blocks/0d", b"x"),
                      lambda: stack.backend.put_if_absent("blocks/0d", b"x"),
                      lambda: stack.backend.delete("blocks/0c"),
                      lambda: stack.raw.put("lease", b"x"),
                      lambda: stack.raw.delete_many(["blocks/0c"])):
            with pytest.raises(ReadOnlyError) as info:
                write()
            assert info.value.errno == errno.EROFS
    assert [key for key, _ in open_backend(url).list()] == ["blocks/0c", "config"]


def test_damaged_or_foreign_config(tmp_path) -> None:
    url = str(tmp_path / "store")
    backend = open_backend(url)
    backend.put(CONFIG_KEY, b"{not json")
    with pytest.raises(StoreError, match="damaged config object"):
        open_store(url)
    backend.put(CONFIG_KEY, json.dumps({"hello": 1}).encode())
    with pytest.raises(StoreError, match="not an rsyncd-py store"):
        open_store(url)
    create_store(str(tmp_path / "other"))
    document = json.loads(open_backend(str(tmp_path / "other")).get(CONFIG_KEY))
    document["format_version"] = 99
    backend.put(CONFIG_KEY, json.dumps(document).encode())
    with pytest.raises(StoreError, match="format version 99 is not supported"):
        open_store(url)


def test_cache_serves_reads_after_a_write(tmp_path) -> None:
    url = str(tmp_path / "store")
    create_store(url, encrypt=True, key_file=str(tmp_path / "k"))
    data = os.urandom(100_000)
    with open_store(url, key_file=str(tmp_path / "k"), state_dir=tmp_path / "s") as stack:
        stack.backend.put("blocks/0e0e", data)
        before = stack.stats.snapshot()
        assert stack.backend.get("blocks/0e0e") == data
        assert stack.backend.get_range("blocks/0e0e", 10, 10) == data[10:20]
        assert stack.backend.exists("blocks/0e0e")
        assert (stack.stats.snapshot() - before).requests == 0
    with open_store(url, key_file=str(tmp_path / "k"), state_dir=tmp_path / "s") as stack:
        before = stack.stats.snapshot()
        assert stack.backend.get("blocks/0e0e") == data  # the cache survived the restart
        assert (stack.stats.snapshot() - before).gets == 0
