"""Key material of an encrypted store: master key, its wrapping, and derived sub-keys.

A store has one random 32-byte master key, created at `init` and never stored in
the clear. The config object holds it wrapped (AES-256-GCM, random nonce, the store
id as associated data) under a key-encryption key (KEK) that comes either from a
passphrase through scrypt (parameters and salt recorded in the config) or from a key
file of 32 random bytes through HKDF. Changing the passphrase therefore only rewraps
32 bytes, and a leaked config reveals nothing without the passphrase or key file.

HKDF-SHA256 splits the master key into independent sub-keys: `data_key` encrypts
objects and `id_key` keys block ids (so ids reveal nothing about content), plus a key
check value recorded in the config that confirms an unwrapped key before use.

Passphrase sources, in order: the explicit argument, `RSYNCD_PY_PASSPHRASE`, then an
interactive prompt, only when stdin is a terminal; otherwise a clear error.
"""

from __future__ import annotations

import base64
import binascii
import errno
import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from blockstore.backend import StoreError
from blockstore.config import EncryptionConfig, KdfConfig, StoreConfig

KEY_SIZE = 32
PASSPHRASE_ENV = "RSYNCD_PY_PASSPHRASE"
# scrypt at n=2**15, r=8 costs 32 MiB and about 0.1 s here: cheap for one open, and
# about 2**15 times the work of a plain hash per guess for an attacker.
SCRYPT_PARAMS = {"n": 2**15, "r": 8, "p": 1}
_NONCE_SIZE = 12


class WrongKeyError(StoreError):
    """The passphrase or key file does not unlock this store."""

    errno = errno.EACCES


class MissingKeyError(StoreError):
    """The store is encrypted and no usable passphrase or key file was given."""

    errno = errno.EACCES


@dataclass(frozen=True)
class StoreKeys:
    """The sub-keys a store stack needs; both None for an unencrypted store."""

    data_key: bytes | None  # object encryption (AES-256-GCM)
    id_key: bytes | None  # keyed block ids; None -> plain (unkeyed) ids

    @classmethod
    def from_master(cls, master: bytes) -> StoreKeys:
        """Derive the sub-keys from a store's master key."""
        return cls(data_key=_hkdf(master, b"rsyncd-py data key v1"),
                   id_key=_hkdf(master, b"rsyncd-py block id key v1"))


NO_KEYS = StoreKeys(data_key=None, id_key=None)


def new_encryption(
    store_id: str, *, passphrase: bytes | None = None, key_file_key: bytes | None = None
) -> tuple[EncryptionConfig, bytes]:
    """Make a fresh master key wrapped under a passphrase or key-file key.

    Exactly one of `passphrase` and `key_file_key` is given. Returns the config
    section to record and the master key.
    """
    master = os.urandom(KEY_SIZE)
    salt = os.urandom(16)
    if passphrase is not None:
        kdf = KdfConfig(name="scrypt", salt=salt, params=dict(SCRYPT_PARAMS))
        kek = _kek_from_passphrase(kdf, passphrase)
    elif key_file_key is not None:
        kdf = KdfConfig(name="keyfile", salt=salt)
        kek = _kek_from_key_file(kdf, key_file_key)
    else:
        raise ValueError("new_encryption needs a passphrase or a key file key")
    nonce = os.urandom(_NONCE_SIZE)
    wrapped = nonce + AESGCM(kek).encrypt(nonce, master, _wrap_aad(store_id))
    return EncryptionConfig(kdf=kdf, wrapped_key=wrapped, key_check=_key_check(master)), master


def unlock(
    config: StoreConfig, url: str, *, passphrase: bytes | None = None, key_file: str | None = None
) -> StoreKeys:
    """Return the sub-keys of the store at `url`, unwrapping its master key if encrypted.

    Raises MissingKeyError when the needed secret was not given and WrongKeyError when
    the given one does not fit.
    """
    enc = config.encryption
    if enc is None:
        return NO_KEYS
    if enc.cipher != "aes-256-gcm":
        raise StoreError(f"{url}: unsupported cipher {enc.cipher!r}")
    if enc.kdf.name == "keyfile":
        if key_file is None:
            raise MissingKeyError(f"store {url} is encrypted with a key file: pass --key-file")
        kek = _kek_from_key_file(enc.kdf, load_key_file(key_file))
    elif enc.kdf.name == "scrypt":
        if key_file is not None and passphrase is None and PASSPHRASE_ENV not in os.environ:
            raise MissingKeyError(
                f"store {url} is protected by a passphrase, not a key file "
                f"(pass it via {PASSPHRASE_ENV} or the prompt)"
            )
        kek = _kek_from_passphrase(enc.kdf, resolve_passphrase(passphrase, url=url))
    else:
        raise StoreError(f"{url}: unsupported key derivation {enc.kdf.name!r}")
    nonce, sealed = enc.wrapped_key[:_NONCE_SIZE], enc.wrapped_key[_NONCE_SIZE:]
    try:
        master = AESGCM(kek).decrypt(nonce, sealed, _wrap_aad(config.store_id))
    except InvalidTag:
        raise WrongKeyError(f"wrong passphrase or key file for store {url}") from None
    if _key_check(master) != enc.key_check:
        raise WrongKeyError(f"wrong passphrase or key file for store {url}")
    return StoreKeys.from_master(master)


def resolve_passphrase(explicit: bytes | None, *, url: str, confirm: bool = False) -> bytes:
    """Return the passphrase from the argument, the environment, or a terminal prompt."""
    if explicit is not None:
        passphrase = explicit
    elif PASSPHRASE_ENV in os.environ:
        passphrase = os.environ[PASSPHRASE_ENV].encode()
    elif sys.stdin is not None and sys.stdin.isatty():
        passphrase = getpass.getpass(f"Passphrase for {url}: ").encode()
        if confirm and getpass.getpass("Repeat passphrase: ").encode() != passphrase:
            raise MissingKeyError("passphrases do not match")
    else:
        raise MissingKeyError(
            f"store {url} needs a passphrase: set {PASSPHRASE_ENV}, pass --key-file, "
            "or run from a terminal"
        )
    if not passphrase:
        raise MissingKeyError(f"empty passphrase for store {url}")
    return passphrase


def load_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a key file: exactly 32 raw bytes, or base64 text of 32 bytes."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise MissingKeyError(f"cannot read key file {path}: {exc.strerror}") from exc
    if len(data) == KEY_SIZE:
        return data
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise MissingKeyError(
            f"key file {path} must hold {KEY_SIZE} raw bytes or their base64 text"
        )
    return key


def create_key_file(path: str | os.PathLike[str]) -> bytes:
    """Create `path` (mode 0600, never overwriting) holding a new random key as base64."""
    key = os.urandom(KEY_SIZE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create key file {path}: {exc.strerror}", errno=exc.errno) from exc
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(key) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return key


def _kek_from_passphrase(kdf: KdfConfig, passphrase: bytes) -> bytes:
    params = kdf.params
    return Scrypt(
        salt=kdf.salt, length=KEY_SIZE, n=params["n"], r=params["r"], p=params["p"]
    ).derive(passphrase)


def _kek_from_key_file(kdf: KdfConfig, key: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=kdf.salt, info=b"rsyncd-py kek v1"
    ).derive(key)


def _hkdf(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(master)


def _key_check(master: bytes) -> bytes:
    return _hkdf(master, b"rsyncd-py key check v1")[:16]


def _wrap_aad(store_id: str) -> bytes:
    return b"rsyncd-py master key v1:" + store_id.encode()
