"""Retry layer: repeat requests that failed with TransientError, with backoff.

The only layer that retries (botocore's own retries are off), so one policy decides
how hard the stack tries. Delays grow exponentially with full jitter (AWS's
"exponential backoff and jitter": sleep uniform(0, min(cap, base * 2**n))), which
spreads retries of many threads apart. A request is given up after `max_attempts`
tries or when the next sleep would pass `max_elapsed` seconds since the first try;
then the last TransientError propagates, its message saying how long we tried.
Permanent errors (anything not TransientError) propagate at once.

Caveat for callers: a `put_if_absent` whose first attempt reached the backend but
whose reply was lost is retried and then reports False for an object this process
wrote; callers for whom that matters (the lease) read the object back and compare.
`list` resumes after the last key it yielded, so a retried listing repeats nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from blockstore.backend import Backend, Layer, TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry: attempts, first and largest delay, total time budget (s)."""

    max_attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 10.0
    max_elapsed: float = 120.0


class RetryLayer(Layer):
    """Retry TransientError under `policy` (see the module docstring)."""

    def __init__(
        self,
        inner: Backend,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(inner)
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _backoff(self, exc: TransientError, what: str, attempt: int, started: float) -> None:
        """Sleep before attempt `attempt + 1`, or re-raise `exc` if the budget is spent."""
        policy = self.policy
        elapsed = time.monotonic() - started
        delay = self._rng.uniform(0, min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)))
        if attempt >= policy.max_attempts or elapsed + delay > policy.max_elapsed:
            raise TransientError(
                f"{exc} (gave up after {attempt} attempts in {elapsed:.1f}s)", key=exc.key
            ) from exc
        log.warning("%s: %s; retry %d/%d in %.2fs", what, exc, attempt, policy.max_attempts, delay)
        self._sleep(delay)

    def _call(self, what: str, fn: Callable[..., T], *args: object) -> T:
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return fn(*args)
            except TransientError as exc:
                self._backoff(exc, what, attempt, started)
                attempt += 1

    def get(self, key: str) -> bytes:
        return self._call(f"get {key}", self.inner.get, key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self._call(f"get {key}", self.inner.get_range, key, offset, length)

    def put(self, key: str, data: bytes) -> None:
        self._call(f"put {key}", self.inner.put, key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._call(f"put {key}", self.inner.put_if_absent, key, data)

    def exists(self, key: str) -> bool:
        return self._call(f"exists {key}", self.inner.exists, key)

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.inner.delete, key)

    def delete_many(self, keys: Iterable[str]) -> None:
        batch = list(keys)  # a retry must see the same keys again
        self._call(f"delete {len(batch)} keys", self.inner.delete_many, batch)

    def flush(self) -> None:
        self._call("flush", self.inner.flush)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        started = time.monotonic()
        attempt = 1
        last: str | None = None
        while True:
            try:
                for key, size in self.inner.list(prefix):
                    if last is not None and key <= last:
                        continue  # already yielded before the retry
                    yield key, size
                    last, attempt = key, 1
                return
            except TransientError as exc:
                self._backoff(exc, f"list {prefix!r}", attempt, started)
                attempt += 1
