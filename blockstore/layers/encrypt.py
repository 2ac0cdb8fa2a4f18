"""Encryption layer: AES-256-GCM per object, authenticated against its own key.

Stored form: ``version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)``.
A fresh random 96-bit nonce per object (2**-32 collision bound reached only after
about 2**32 objects under one key, far beyond any store). The associated data is the
version byte plus the object's key, so an object copied or swapped to another key,
or an edited header, fails authentication. Any failure to authenticate, including a
truncated object, raises IntegrityError naming the key; a missing object stays a
NotFoundError from below and is never turned into zeros. `AESGCM` is stateless per
call and safe to share between threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from blockstore.backend import Backend, IntegrityError, Layer

FORMAT_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE


class EncryptLayer(Layer):
    """Encrypt on put and authenticate+decrypt on get with a 32-byte `data_key`."""

    def __init__(self, inner: Backend, data_key: bytes) -> None:
        super().__init__(inner)
        if len(data_key) != 32:
            raise ValueError("EncryptLayer needs a 32-byte key (AES-256)")
        self._aead = AESGCM(data_key)

    @staticmethod
    def _associated_data(version: int, key: str) -> bytes:
        return bytes((version,)) + key.encode()

    def seal(self, key: str, data: bytes) -> bytes:
        """Return the stored (encrypted) form of `data` for `key`."""
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, data, self._associated_data(FORMAT_VERSION, key))
        return b"".join((bytes((FORMAT_VERSION,)), nonce, sealed))

    def open(self, key: str, stored: bytes) -> bytes:
        """Authenticate and decrypt `stored`; IntegrityError naming `key` on any failure."""
        if len(stored) < OVERHEAD:
            raise IntegrityError(
                f"{key}: truncated encrypted object ({len(stored)} bytes)", key=key
            )
        version = stored[0]
        if version != FORMAT_VERSION:
            raise IntegrityError(f"{key}: unknown encryption format {version}", key=key)
        view = memoryview(stored)
        try:
            return self._aead.decrypt(
                view[1 : 1 + NONCE_SIZE], view[1 + NONCE_SIZE :],
                self._associated_data(version, key),
            )
        except InvalidTag:
            raise IntegrityError(
                f"{key}: authentication failed (object corrupt, truncated, tampered with "
                "or stored under another key)", key=key,
            ) from None

    def get(self, key: str) -> bytes:
        return self.open(key, self.inner.get(key))

    def get_many(self, keys: Sequence[str]) -> list[bytes]:
        stored = self.inner.get_many(keys)
        return [self.open(key, data) for key, data in zip(keys, stored, strict=True)]

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, self.seal(key, data))

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.inner.put_many([(key, self.seal(key, data)) for key, data in items])

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.inner.put_if_absent(key, self.seal(key, data))
