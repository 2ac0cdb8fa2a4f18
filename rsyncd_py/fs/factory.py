"""Pick the `FsProvider` a server process serves from its command-line options.

`--root DIR` serves a plain local directory (the baseline rsync behaviour, used by tests
and benchmarks); otherwise `--store URL` (or `RSYNCD_PY_STORE`) serves the block store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rsyncd_py.fs.base import FsProvider


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How to open the block store (URL plus key material and local cache location)."""

    url: str
    key_file: str | None = None
    cache_dir: str | None = None


def open_provider(*, root: str | None = None, store: StoreOptions | None = None) -> FsProvider:
    """Return the provider for a local directory `root` or for the block `store`."""
    if root is not None:
        from rsyncd_py.fs.local import LocalProvider

        return LocalProvider(os.fsencode(root))
    if store is None:
        url = os.environ.get("RSYNCD_PY_STORE")
        if not url:
            raise ValueError("no store: pass --store URL, set RSYNCD_PY_STORE, or use --root DIR")
        store = StoreOptions(url=url)
    from rsyncd_py.fs.store import StoreProvider

    return StoreProvider.open(store)
