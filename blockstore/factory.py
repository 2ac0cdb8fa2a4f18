"""The one place that turns a store URL and options into a layer stack.

Stack, top to bottom (restic's wrapBackend, s3backer's s3backer_create_store):

    [read-only] -> compress -> encrypt -> pack -> pack cache ->
        [read-only] -> retry -> limit -> stats -> [fault] -> backend

or, without a pack layer, a cache of whole objects in its place:

    [read-only] -> compress -> encrypt -> cache -> [read-only] -> retry -> ...

Each block or tree object is compressed, then encrypted, on its own (so it can be
read alone from inside a pack with a range GET); the caches keep the stored form on
local disk (whole packs, written through as they are uploaded, or whole objects);
retries, the concurrency limit, the request counters and injected faults all see real
backend requests. `raw` is the
stack from retry down, for plaintext control objects (config, lease).

`create_store` writes a new store's config object; `open_store` reads it, unlocks the
keys and builds the stack. `memory://NAME` backends are process-wide, so separate
`open_store` calls in one process see the same objects.
"""

from __future__ import annotations

import errno
import inspect
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blockstore.backend import Backend, StoreError
from blockstore.backends.memory import MemoryBackend
from blockstore.config import (
    CompressionConfig,
    StoreConfig,
    new_store_id,
    read_config,
    store_exists,
    write_new_config,
)
from blockstore.keys import (
    StoreKeys,
    create_key_file,
    load_key_file,
    new_encryption,
    resolve_passphrase,
    unlock,
)
from blockstore.layers.cache import CacheLayer
from blockstore.layers.compress import DEFAULT_LEVEL, CompressLayer
from blockstore.layers.encrypt import EncryptLayer
from blockstore.layers.fault import FaultLayer, FaultSpec
from blockstore.layers.limit import LimitLayer
from blockstore.layers.packcache import PackCacheLayer
from blockstore.layers.readonly import ReadOnlyLayer
from blockstore.layers.retry import RetryLayer, RetryPolicy
from blockstore.layers.stats import StatsLayer
from blockstore.urls import parse_store_url

__all__ = [
    "FaultSpec",
    "PackFactory",
    "RetryPolicy",
    "StoreConfig",
    "StoreKeys",
    "StoreStack",
    "create_store",
    "drop_memory_backend",
    "open_backend",
    "open_store",
]

PackFactory = Callable[[Backend, StoreConfig, "Path | None"], Backend]
"""Given the stack below it, the config and the local state dir, return the pack layer."""

_memory_backends: dict[str, MemoryBackend] = {}
_memory_lock = threading.Lock()


@dataclass
class StoreStack:
    """An open store: its config, keys and layer stack (see the module docstring)."""

    url: str
    config: StoreConfig
    keys: StoreKeys
    backend: Backend  # top of the stack
    raw: Backend  # retry -> limit -> stats -> [fault] -> backend: control objects
    stats: StatsLayer  # request counters just above the bottom backend
    state_dir: Path | None = None  # cache and pack index; None: no local state
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        """Flush and close the whole stack (idempotent)."""
        if not self._closed:
            self._closed = True
            self.backend.close()

    def __enter__(self) -> StoreStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_backend(url: str, **backend_options: Any) -> Backend:
    """Return just the bottom backend `url` names, built with `backend_options`."""
    parsed = parse_store_url(url)
    if parsed.scheme == "file":
        from blockstore.backends.localdir import LocalDirBackend

        return _build(LocalDirBackend, url, parsed.location, **backend_options)
    if parsed.scheme == "s3":
        from blockstore.backends.s3 import S3Backend

        return _build(S3Backend, url, parsed.location, parsed.prefix, **backend_options)
    if backend_options:
        raise StoreError(f"{url}: memory stores take no options ({sorted(backend_options)})")
    with _memory_lock:
        return _memory_backends.setdefault(parsed.location, MemoryBackend())


def drop_memory_backend(name: str) -> None:
    """Forget the process-wide memory store `name` (tests use this to free memory)."""
    with _memory_lock:
        _memory_backends.pop(name, None)


def create_store(
    url: str,
    *,
    encrypt: bool = False,
    passphrase: bytes | None = None,
    key_file: str | None = None,
    compression_level: int = DEFAULT_LEVEL,
    volume: Mapping[str, object] | None = None,
    **backend_options: Any,
) -> StoreConfig:
    """Create a new store at `url` and return its config.

    With `encrypt`, the master key is wrapped under `key_file` (created, mode 0600,
    with a fresh key when it does not exist) or else under a passphrase (argument,
    RSYNCD_PY_PASSPHRASE, or a terminal prompt asked twice). `compression_level` is
    zstd's (default 1: see `DEFAULT_LEVEL`); 0 turns compression off. Raises
    StoreError "store already exists at URL" (EEXIST).
    """
    if not encrypt and (passphrase is not None or key_file is not None):
        raise ValueError("a passphrase or key file was given for an unencrypted store")
    requests, _ = _request_stack(open_backend(url, **backend_options), None, None)
    try:
        if store_exists(requests):
            raise StoreError(f"store already exists at {url}", key="config", errno=errno.EEXIST)
        store_id = new_store_id()
        encryption = None
        if encrypt and key_file is not None:
            key = load_key_file(key_file) if os.path.exists(key_file) else create_key_file(key_file)
            encryption, _ = new_encryption(store_id, key_file_key=key)
        elif encrypt:
            secret = resolve_passphrase(passphrase, url=url, confirm=True)
            encryption, _ = new_encryption(store_id, passphrase=secret)
        compression = (
            CompressionConfig("zstd", compression_level) if compression_level
            else CompressionConfig("none", 0)
        )
        config = StoreConfig.new(
            compression=compression, encryption=encryption, volume=volume, store_id=store_id
        )
        write_new_config(requests, config, url)
        return config
    finally:
        requests.close()


def open_store(
    url: str,
    *,
    passphrase: bytes | None = None,
    key_file: str | None = None,
    state_dir: str | Path | None = None,
    cache_size: int = 2 << 30,
    pack_layer: PackFactory | None = None,
    fault: FaultSpec | None = None,
    read_only: bool = False,
    retry: RetryPolicy | None = None,
    **backend_options: Any,
) -> StoreStack:
    """Open the store at `url` and build its stack (see the module docstring).

    `state_dir` defaults to ``$XDG_CACHE_HOME/rsyncd-py/<store id>`` (or
    ``~/.cache/...``) for directory and S3 stores and to none for memory stores; with
    no usable state dir there is no cache. `cache_size` 0 turns the cache off.
    `read_only` refuses every write with EROFS (the cache still fills: it is local).
    """
    if read_only and parse_store_url(url).scheme == "file":
        backend_options.setdefault("read_only", True)
    requests, stats = _request_stack(open_backend(url, **backend_options), fault, retry)
    node: Backend = requests  # the top built so far: closing it closes everything below
    try:
        config = read_config(requests, url)
        keys = unlock(config, url, passphrase=passphrase, key_file=key_file)
        if config.compression.algorithm not in ("zstd", "none"):
            raise StoreError(f"{url}: unsupported compression {config.compression.algorithm!r}")
        raw: Backend = ReadOnlyLayer(requests) if read_only else requests
        state = _state_dir(url, config, state_dir)
        node = raw
        cache_dir = state if cache_size > 0 else None
        if pack_layer is not None:
            if cache_dir is not None:  # whole packs below the pack layer: a file per pack
                node = PackCacheLayer(node, cache_dir / "packcache", cache_size)
            node = pack_layer(node, config, state)
        elif cache_dir is not None:  # no packs: each object on its own
            node = CacheLayer(node, cache_dir / "cache", cache_size)
        if keys.data_key is not None:
            node = EncryptLayer(node, keys.data_key)
        if config.compression.algorithm == "zstd":
            checksums = config.format_version >= 2  # format 1 objects carry none
            node = CompressLayer(node, config.compression.level, checksums=checksums)
        if read_only:
            node = ReadOnlyLayer(node)
    except BaseException:
        node.close()
        raise
    return StoreStack(url, config, keys, node, raw, stats, state)


def _request_stack(
    bottom: Backend, fault: FaultSpec | None, retry: RetryPolicy | None
) -> tuple[RetryLayer, StatsLayer]:
    """Build retry -> limit -> stats -> [fault] -> `bottom`."""
    node: Backend = FaultLayer(bottom, fault) if fault is not None else bottom
    stats = StatsLayer(node)
    limit = LimitLayer(stats, bottom.properties.connections)
    return RetryLayer(limit, retry), stats


def _state_dir(url: str, config: StoreConfig, explicit: str | Path | None) -> Path | None:
    """The local state directory to use (created, mode 0700), or None if unusable."""
    if explicit is not None:
        path = Path(explicit)
    elif parse_store_url(url).scheme == "memory":
        return None
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        path = Path(base) / "rsyncd-py" / config.store_id
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        if explicit is not None:
            raise StoreError(f"cannot use state dir {path}: {exc.strerror}",
                             errno=exc.errno) from exc
        return None
    return path


def _build(cls: type[Backend], url: str, *args: object, **options: Any) -> Backend:
    """Instantiate a backend class, turning unknown options into a clear error."""
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as exc:
        raise StoreError(f"{url}: bad backend options {sorted(options)}: {exc}") from exc
    return cls(*args, **options)
