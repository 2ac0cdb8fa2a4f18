"""Store URLs: which bottom backend a URL names, and where.

Accepted forms: ``/abs/path`` and ``file:///abs/path`` (a local directory),
``memory://NAME`` (a process-wide in-memory store, for tests) and
``s3://bucket/prefix`` (a bucket, optionally under a key prefix). Relative paths are
refused rather than resolved against whatever the current directory happens to be.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from blockstore.backend import StoreError

_FORMS = "/abs/path, file:///abs/path, memory://NAME or s3://bucket/prefix"


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A parsed store URL: `scheme` is "file", "memory" or "s3".

    For "file", `location` is the normalised absolute path; for "memory" the store
    name; for "s3" the bucket, with `prefix` the key prefix ('' for the whole bucket,
    never with leading or trailing '/').
    """

    scheme: str
    location: str
    prefix: str = ""


def parse_store_url(url: str) -> StoreUrl:
    """Parse `url`; StoreError(EINVAL) with the accepted forms if it is not one."""
    if url.startswith("/"):
        return StoreUrl("file", os.path.normpath(url))
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _invalid(url, "store URL must be absolute")
    if scheme == "file":
        if not rest.startswith("/"):
            raise _invalid(url, "file URL must name an absolute path (file:///abs/path)")
        return StoreUrl("file", os.path.normpath(rest))
    if scheme == "memory":
        if not rest or "/" in rest:
            raise _invalid(url, "memory URL needs a name (memory://NAME)")
        return StoreUrl("memory", rest)
    if scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise _invalid(url, "s3 URL needs a bucket (s3://bucket/prefix)")
        return StoreUrl("s3", bucket, prefix.strip("/"))
    raise _invalid(url, f"unsupported store URL scheme {scheme!r}")


def _invalid(url: str, why: str) -> StoreError:
    return StoreError(f"{why}: {url!r} (use {_FORMS})", errno=errno.EINVAL)
