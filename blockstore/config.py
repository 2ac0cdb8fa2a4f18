"""The store's config object: one plaintext JSON object at key `config`, written once.

It says how to read everything else in the store: the format version, the store id
(which also names the local state directory), the compression settings, the
encryption settings (KDF, wrapped master key, key check value; never a usable key),
and a free-form `volume` dict owned by the volume (chunk sizes, pack size, ...).

It is created with `put_if_absent`, so two `init`s racing on one URL cannot both
succeed, and it is never rewritten: settings that change over a store's life belong in
objects the volume versions itself.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from blockstore.backend import Backend, NotFoundError, StoreError

CONFIG_KEY = "config"
# 2: every object carries a checksum (layers/compress.py); 3: ids are BLAKE3
# (volume/blockid.py). docs/STORE.md has the table.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
_MAGIC = "rsyncd-py block store"


@dataclass(frozen=True, slots=True)
class CompressionConfig:
    """How objects are compressed: `algorithm` is "zstd" or "none"."""

    algorithm: str = "zstd"
    level: int = 1


@dataclass(frozen=True, slots=True)
class KdfConfig:
    """How the key-encryption key is obtained.

    `name` is "scrypt" (from a passphrase; `params` holds n, r, p) or "keyfile" (from
    32 bytes in a key file, through HKDF). `salt` is random per store.
    """

    name: str
    salt: bytes
    params: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EncryptionConfig:
    """Encryption settings: the master key exists only wrapped under the KEK."""

    kdf: KdfConfig
    wrapped_key: bytes  # nonce || AES-256-GCM(KEK, master key)
    key_check: bytes  # HKDF(master, "key check"): confirms an unwrapped key
    cipher: str = "aes-256-gcm"


@dataclass(frozen=True)
class StoreConfig:
    """The parsed `config` object (see the module docstring)."""

    store_id: str
    created: str
    compression: CompressionConfig
    encryption: EncryptionConfig | None
    volume: dict[str, Any]
    format_version: int = FORMAT_VERSION

    @classmethod
    def new(
        cls,
        *,
        compression: CompressionConfig,
        encryption: EncryptionConfig | None,
        volume: Mapping[str, object] | None,
        store_id: str | None = None,
    ) -> StoreConfig:
        """A config for a store being created now (a fresh random store id by default)."""
        return cls(
            store_id=store_id or new_store_id(),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            compression=compression,
            encryption=encryption,
            volume=dict(volume or {}),
        )

    def to_json(self) -> bytes:
        """Serialise to the stored form (sorted keys, binary fields base64)."""
        document: dict[str, Any] = {
            "magic": _MAGIC,
            "format_version": self.format_version,
            "store_id": self.store_id,
            "created": self.created,
            "compression": {
                "algorithm": self.compression.algorithm,
                "level": self.compression.level,
            },
            "encryption": None,
            "volume": self.volume,
        }
        if self.encryption is not None:
            enc = self.encryption
            document["encryption"] = {
                "cipher": enc.cipher,
                "kdf": {"name": enc.kdf.name, "salt": _b64(enc.kdf.salt), **enc.kdf.params},
                "wrapped_key": _b64(enc.wrapped_key),
                "key_check": _b64(enc.key_check),
            }
        return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, url: str) -> StoreConfig:
        """Parse a stored config; a StoreError names `url` if it is not one we can read."""
        try:
            document = json.loads(data)
            if not isinstance(document, dict) or document.get("magic") != _MAGIC:
                raise StoreError(f"{url}: not an rsyncd-py store (bad config object)")
            version = document["format_version"]
            if version not in READABLE_VERSIONS:
                raise StoreError(
                    f"{url}: store format version {version} is not supported "
                    f"(this program reads versions {', '.join(map(str, READABLE_VERSIONS))})"
                )
            comp = document["compression"]
            enc = document["encryption"]
            encryption = None
            if enc is not None:
                kdf = dict(enc["kdf"])
                name, salt = kdf.pop("name"), _unb64(kdf.pop("salt"))
                encryption = EncryptionConfig(
                    kdf=KdfConfig(name=name, salt=salt, params={k: int(v) for k, v in kdf.items()}),
                    wrapped_key=_unb64(enc["wrapped_key"]),
                    key_check=_unb64(enc["key_check"]),
                    cipher=enc["cipher"],
                )
            return cls(
                store_id=str(document["store_id"]),
                created=str(document["created"]),
                compression=CompressionConfig(str(comp["algorithm"]), int(comp["level"])),
                encryption=encryption,
                volume=dict(document["volume"]),
                format_version=version,
            )
        except StoreError:
            raise
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise StoreError(f"{url}: damaged config object: {exc!r}") from exc


def new_store_id() -> str:
    """A random store id: 128 bits as hex."""
    return secrets.token_hex(16)


def read_config(backend: Backend, url: str) -> StoreConfig:
    """Read and parse the config of the store at `url` (NotFoundError: no store there)."""
    try:
        data = backend.get(CONFIG_KEY)
    except NotFoundError:
        raise NotFoundError(
            f"no store at {url} (create one with `rsyncd-py init --store {url}`)", key=CONFIG_KEY
        ) from None
    return StoreConfig.from_json(data, url)


def write_new_config(backend: Backend, config: StoreConfig, url: str) -> None:
    """Store `config` as the config of a new store; fail if one already exists."""
    if not backend.put_if_absent(CONFIG_KEY, config.to_json()):
        raise StoreError(f"store already exists at {url}", key=CONFIG_KEY, errno=errno.EEXIST)


def store_exists(backend: Backend) -> bool:
    """Whether a config object (and so a store) exists in `backend`."""
    return backend.exists(CONFIG_KEY)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
