"""Fault-injection layer: seeded random failures and latency, plus deterministic faults.

For tests and the fault tier. Before each request of a selected kind (`ops`: get,
put, exists, delete, list; `get` covers `get_range`, `put` covers `put_if_absent`,
`delete` covers `delete_many`) the layer draws from its own seeded RNG and may sleep
(`latency` probability, `delay` seconds), then raise TransientError, a permanent
StoreError or StoreFullError with the given probabilities. `lost_response` makes a
write land and *then* raise TransientError, the ambiguous failure of a dropped reply.

Deterministic faults: `fail_nth_put=N` fails only the Nth put (1-based, counting
every put attempt, retries included) with `nth_error` ("transient", "permanent",
"full"); `fail_after_bytes=N` makes every put fail with StoreFullError once N bytes
have been written through the layer (a disk or quota filling up).

`FaultSpec.parse("seed=7,transient=0.1,ops=put+get,fail_nth_put=3")` builds a spec from
text, so servers started by tests can take one from an environment variable.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

from blockstore.backend import Backend, Layer, StoreError, StoreFullError, TransientError

ALL_OPS = frozenset({"get", "put", "exists", "delete", "list"})
_ERRORS: dict[str, type[StoreError]] = {
    "transient": TransientError,
    "permanent": StoreError,
    "full": StoreFullError,
}


@dataclass(frozen=True)
class FaultSpec:
    """What to inject (see the module docstring); all rates are probabilities 0..1."""

    seed: int = 0
    transient: float = 0.0
    permanent: float = 0.0
    full: float = 0.0
    latency: float = 0.0
    delay: float = 0.05
    lost_response: float = 0.0
    ops: frozenset[str] = ALL_OPS
    fail_nth_put: int | None = None
    nth_error: str = "transient"
    fail_after_bytes: int | None = None

    def __post_init__(self) -> None:
        if not self.ops <= ALL_OPS:
            raise ValueError(f"unknown fault ops: {sorted(self.ops - ALL_OPS)}")
        if self.nth_error not in _ERRORS:
            raise ValueError(f"nth_error must be one of {sorted(_ERRORS)}")

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Build a spec from ``name=value`` pairs separated by commas; ops joined by '+'."""
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name not in types:
                raise ValueError(f"bad fault setting {item!r}")
            if name == "ops":
                values[name] = frozenset(value.split("+"))
            elif name == "nth_error":
                values[name] = value
            elif types[name] == "float":
                values[name] = float(value)
            else:
                values[name] = int(value)
        return cls(**values)  # type: ignore[arg-type]


class FaultLayer(Layer):
    """Inject the faults of `spec` into requests to `inner`."""

    def __init__(self, inner: Backend, spec: FaultSpec) -> None:
        super().__init__(inner)
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self._lock = threading.Lock()
        self._puts = 0
        self._bytes_written = 0

    def _inject(self, op: str, key: str | None) -> bool:
        """Maybe sleep or raise before `op`; return whether to lose the reply after it."""
        spec = self.spec
        if op not in spec.ops:
            return False
        with self._lock:
            slow, draw, lose = self._rng.random(), self._rng.random(), self._rng.random()
        if slow < spec.latency:
            time.sleep(spec.delay)
        threshold = 0.0
        for name, rate in (("transient", spec.transient), ("permanent", spec.permanent),
                           ("full", spec.full)):
            threshold += rate
            if draw < threshold:
                raise _ERRORS[name](f"{op} {key}: injected {name} fault", key=key)
        return lose < spec.lost_response

    def _before_put(self, key: str, data: bytes) -> bool:
        spec = self.spec
        with self._lock:
            self._puts += 1
            nth = self._puts
            over = spec.fail_after_bytes is not None and (
                self._bytes_written + len(data) > spec.fail_after_bytes
            )
            if not over:
                self._bytes_written += len(data)
        if over:
            raise StoreFullError(f"put {key}: injected full store after "
                                 f"{spec.fail_after_bytes} bytes", key=key)
        if nth == spec.fail_nth_put:
            error = _ERRORS[spec.nth_error]
            raise error(f"put {key}: injected {spec.nth_error} fault on put #{nth}", key=key)
        return self._inject("put", key)

    @staticmethod
    def _lost(op: str, key: str) -> TransientError:
        return TransientError(f"{op} {key}: injected lost response", key=key)

    def get(self, key: str) -> bytes:
        self._inject("get", key)
        return self.inner.get(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self._inject("get", key)
        return self.inner.get_range(key, offset, length)

    def put(self, key: str, data: bytes) -> None:
        lose = self._before_put(key, data)
        self.inner.put(key, data)
        if lose:
            raise self._lost("put", key)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        lose = self._before_put(key, data)
        stored = self.inner.put_if_absent(key, data)
        if lose:
            raise self._lost("put", key)
        return stored

    def exists(self, key: str) -> bool:
        self._inject("exists", key)
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        lose = self._inject("delete", key)
        self.inner.delete(key)
        if lose:
            raise self._lost("delete", key)

    def delete_many(self, keys: Iterable[str]) -> None:
        self._inject("delete", None)
        self.inner.delete_many(keys)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        self._inject("list", prefix)
        yield from self.inner.list(prefix)
