"""Read-only layer: refuses every write with EROFS (`open_store(..., read_only=True)`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from blockstore.backend import Layer, ReadOnlyError


class ReadOnlyLayer(Layer):
    """Pass reads through; raise ReadOnlyError for put, put_if_absent and deletes."""

    def get_many(self, keys: Sequence[str]) -> list[bytes]:
        return self.inner.get_many(keys)

    @staticmethod
    def _refuse(action: str, key: str | None) -> ReadOnlyError:
        return ReadOnlyError(f"{action} {key or 'keys'}: store is open read-only", key=key)

    def put(self, key: str, data: bytes) -> None:
        raise self._refuse("put", key)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        raise self._refuse("put", key)

    def delete(self, key: str) -> None:
        raise self._refuse("delete", key)

    def delete_many(self, keys: Iterable[str]) -> None:
        raise self._refuse("delete", None)
