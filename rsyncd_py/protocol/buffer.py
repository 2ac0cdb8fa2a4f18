"""The receive buffer every sans-IO reader works on (h11's ReceiveBuffer idea).

Theory of operation: bytes arrive in pieces of any size (`extend`). Readers are plain
functions `reader(buf) -> value | None`. A reader first checks that a whole item is
available (`peek` / `have`) and only then consumes it (`take` / `skip`); when the item
is incomplete it returns None *having consumed nothing*, so the caller can feed more
bytes and call the same reader again. That rule is what lets every decoder accept its
input one byte at a time.

Consumed bytes are dropped lazily: `_start` advances and the underlying bytearray is
compacted only when the dead prefix is large, so reading many small items is O(n).
"""

from __future__ import annotations

_COMPACT_AT = 1 << 16


class ReceiveBuffer:
    """A growable byte buffer with transactional, all-or-nothing reads."""

    __slots__ = ("_data", "_start")

    def __init__(self, data: bytes = b"") -> None:
        self._data = bytearray(data)
        self._start = 0

    def __len__(self) -> int:
        return len(self._data) - self._start

    def extend(self, data: bytes | bytearray | memoryview) -> None:
        """Append newly received bytes."""
        if self._start >= _COMPACT_AT and self._start * 2 >= len(self._data):
            del self._data[: self._start]
            self._start = 0
        self._data += data

    def have(self, n: int) -> bool:
        """Return whether at least `n` unread bytes are available."""
        return len(self._data) - self._start >= n

    def peek(self, n: int, offset: int = 0) -> bytes | None:
        """Return the `n` bytes at `offset` past the read position without consuming them.

        Returns None when fewer than `offset + n` bytes are available.
        """
        begin = self._start + offset
        if len(self._data) - begin < n:
            return None
        return bytes(self._data[begin : begin + n])

    def peek_byte(self, offset: int = 0) -> int | None:
        """Return the byte at `offset` past the read position, or None if absent."""
        index = self._start + offset
        if index >= len(self._data):
            return None
        return self._data[index]

    def take(self, n: int) -> bytes | None:
        """Consume and return exactly `n` bytes, or return None and consume nothing."""
        data = self.peek(n)
        if data is not None:
            self._start += n
        return data

    def skip(self, n: int) -> None:
        """Consume `n` bytes that a reader has already examined with `peek`."""
        if not self.have(n):
            raise ValueError(f"skip({n}) past the end of the buffer ({len(self)} bytes)")
        self._start += n

    def take_all(self) -> bytes:
        """Consume and return everything unread."""
        data = bytes(self._data[self._start :])
        self._data.clear()
        self._start = 0
        return data
