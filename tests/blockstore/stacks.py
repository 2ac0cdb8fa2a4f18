"""The stacks the conformance suite and the state machine run against (one line each).

Bottom backends; each layer alone over memory (the fault layer at rate 0); full
factory stacks (compress -> encrypt -> cache -> retry -> limit -> stats -> backend)
over memory, a local directory and S3 on a moto server. To add a stack (e.g. the pack
layer over memory), add one `register_stack(name, builder)` line below.
"""

from __future__ import annotations

import os
import uuid

from blockstore.backend import Backend
from blockstore.backends.localdir import LocalDirBackend
from blockstore.backends.memory import MemoryBackend
from blockstore.factory import create_store, drop_memory_backend, open_backend, open_store
from blockstore.layers.cache import CacheLayer
from blockstore.layers.compress import CompressLayer
from blockstore.layers.encrypt import EncryptLayer
from blockstore.layers.fault import FaultLayer, FaultSpec
from blockstore.layers.limit import LimitLayer
from blockstore.layers.pack import PackLayer
from blockstore.layers.retry import RetryLayer
from blockstore.layers.stats import StatsLayer
from tests.blockstore.conformance import StackContext, register_stack

CACHE_SIZE = 256 << 20


def factory_stack(ctx: StackContext, url: str) -> Backend:
    """The full `open_store` stack of a new encrypted, compressed store at `url`."""
    key_file = str(ctx.tmp_path / "store.key")
    create_store(url, encrypt=True, key_file=key_file, volume={"test": True})
    stack = open_store(url, key_file=key_file, state_dir=ctx.tmp_path / "state",
                       cache_size=CACHE_SIZE)
    return stack.backend


def memory_factory_stack(ctx: StackContext) -> Backend:
    name = f"conformance-{uuid.uuid4().hex}"
    ctx.request.addfinalizer(lambda: drop_memory_backend(name))
    return factory_stack(ctx, f"memory://{name}")


register_stack("memory", lambda ctx: MemoryBackend())
register_stack("localdir", lambda ctx: LocalDirBackend(ctx.tmp_path / "store"))
register_stack("s3", lambda ctx: open_backend(ctx.fixture("s3_url"), list_page_size=7))
register_stack("compress", lambda ctx: CompressLayer(MemoryBackend()))
register_stack("encrypt", lambda ctx: EncryptLayer(MemoryBackend(), os.urandom(32)))
register_stack("cache", lambda ctx: CacheLayer(MemoryBackend(), ctx.tmp_path / "c", CACHE_SIZE))
register_stack("retry", lambda ctx: RetryLayer(MemoryBackend()))
register_stack("limit", lambda ctx: LimitLayer(MemoryBackend(), 2))
register_stack("stats", lambda ctx: StatsLayer(MemoryBackend()))
register_stack("fault", lambda ctx: FaultLayer(MemoryBackend(), FaultSpec(seed=1)))
register_stack("pack", lambda ctx: PackLayer(MemoryBackend(), ctx.tmp_path, pack_size=1 << 16))
register_stack("factory-memory", memory_factory_stack)
register_stack("factory-localdir", lambda ctx: factory_stack(ctx, str(ctx.tmp_path / "store")))
register_stack("factory-s3", lambda ctx: factory_stack(ctx, ctx.fixture("s3_url")))
