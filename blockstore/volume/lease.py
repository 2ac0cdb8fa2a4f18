"""The writer lease: one writing process per store (s3backer's "mounted" flag, renewed).

Theory of operation. The lease is a small plaintext JSON object at key `lease` in the
`raw` stack (no encryption, so any tool can say who holds it): holder id (random per
process), host, pid, since, expires (Unix ns). A writer takes it with `put_if_absent`
(atomic where the backend has conditional writes: S3 If-None-Match, O_EXCL locally),
renews it from a background thread every `ttl / 4`, checks it is still the holder
before every commit (`verify`, one GET), and deletes it on release.

If the lease exists and belongs to someone else:
- expired, or held by a process on this host that no longer exists: it is stale and
  taken over, with a warning;
- live: `LeaseHeldError` "store is locked by HOST pid N since T", unless `force`, which
  takes it over anyway (with a warning: the other writer will find it lost at its next
  renewal or commit and fail instead of committing).

Limits: the takeover and renewal are read-then-put, so two processes taking over one
stale lease in the same instant could both believe they won; the loser finds out at its
next `verify`, before it writes a snapshot. Readers never need the lease.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass

from blockstore.backend import Backend, NotFoundError, StoreError

LEASE_KEY = "lease"
DEFAULT_TTL = 120.0

log = logging.getLogger(__name__)


class LeaseHeldError(StoreError):
    """Another live writer holds the store."""

    errno = errno.EBUSY


class LeaseLostError(StoreError):
    """The lease was held by this process and lost (taken over, or expired unrenewed)."""

    errno = errno.EBUSY


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """The lease object's contents."""

    holder: str
    host: str
    pid: int
    since: int
    expires: int

    @property
    def since_text(self) -> str:
        return dt.datetime.fromtimestamp(self.since / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    def describe(self) -> str:
        return f"{self.host} pid {self.pid} since {self.since_text}"


class Lease:
    """One process's claim on one store (see the module docstring)."""

    def __init__(self, raw: Backend, *, ttl: float = DEFAULT_TTL, host: str | None = None) -> None:
        self._raw = raw
        self._ttl = ttl
        self._host = host or socket.gethostname()
        self._holder = os.urandom(8).hex()
        self._since = 0
        self._held = False
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self, *, force: bool = False) -> None:
        """Take the lease or raise `LeaseHeldError` (see the module docstring)."""
        self._since = time.time_ns()
        for _attempt in range(3):
            if self._raw.put_if_absent(LEASE_KEY, self._body()):
                break
            current = self.read()
            if current is None:
                continue  # released between our two requests: try again
            if current.holder == self._holder:
                break
            stale = self._stale(current)
            if not stale and not force:
                raise LeaseHeldError(f"store is locked by {current.describe()}", key=LEASE_KEY)
            why = "stale" if stale else "live (--force)"
            log.warning("taking over the %s store lease of %s", why, current.describe())
            self._raw.put(LEASE_KEY, self._body())
            break
        else:
            raise LeaseHeldError("could not take the store lease (it keeps changing)")
        with self._lock:
            self._held, self._lost = True, None
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._thread.start()

    def verify(self) -> None:
        """Raise `LeaseLostError` unless this process still holds the lease (one GET)."""
        with self._lock:
            if not self._held:
                raise LeaseLostError("the store lease is not held", key=LEASE_KEY)
            if self._lost:
                raise LeaseLostError(self._lost, key=LEASE_KEY)
        self._renew()
        with self._lock:
            if self._lost:
                raise LeaseLostError(self._lost, key=LEASE_KEY)

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            held, self._held = self._held, False
        if held:
            current = self.read()
            if current is not None and current.holder == self._holder:
                self._raw.delete(LEASE_KEY)

    def read(self) -> LeaseInfo | None:
        """The current lease object, or None if there is none."""
        try:
            data = json.loads(self._raw.get(LEASE_KEY))
            return LeaseInfo(**{name: data[name] for name in LeaseInfo.__slots__})
        except NotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"unreadable store lease object: {exc}", key=LEASE_KEY) from exc

    # -- internals -----------------------------------------------------------------------

    def _body(self) -> bytes:
        info = LeaseInfo(
            self._holder, self._host, os.getpid(), self._since,
            time.time_ns() + int(self._ttl * 1e9),
        )  # fmt: skip
        return json.dumps(asdict(info)).encode()

    def _stale(self, info: LeaseInfo) -> bool:
        if info.expires < time.time_ns():
            return True
        if info.host == self._host:
            try:
                os.kill(info.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def _renew(self) -> None:
        current = self.read()
        if current is None or current.holder != self._holder:
            who = current.describe() if current is not None else "nobody (deleted)"
            with self._lock:
                self._lost = f"the store lease was taken over: now held by {who}"
            return
        self._raw.put(LEASE_KEY, self._body())

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._ttl / 4):
            try:
                self._renew()
            except StoreError as exc:
                log.warning("store lease renewal failed (will retry): %s", exc)
            with self._lock:
                if self._lost:
                    log.error("%s", self._lost)
                    return
