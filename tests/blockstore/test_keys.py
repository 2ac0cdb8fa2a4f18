"""Key material: passphrases, key files, wrong keys, and what the config reveals."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import stat
import sys

import pytest

from blockstore.config import CONFIG_KEY
from blockstore.factory import StoreKeys, create_store, open_backend, open_store
from blockstore.keys import PASSPHRASE_ENV, MissingKeyError, WrongKeyError


@pytest.fixture
def url(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture(autouse=True)
def no_ambient_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal: never prompt


def test_unencrypted_store_has_no_keys(url: str, tmp_path) -> None:
    create_store(url)
    with open_store(url, state_dir=tmp_path / "state") as stack:
        assert stack.keys == StoreKeys(data_key=None, id_key=None)
        assert stack.config.encryption is None


def test_passphrase_unlocks_and_wrong_passphrase_is_refused(url: str, tmp_path) -> None:
    create_store(url, encrypt=True, passphrase=b"correct horse battery staple")
    with open_store(url, passphrase=b"correct horse battery staple", cache_size=0) as stack:
        stack.backend.put("blocks/00ff", b"data")
        keys = stack.keys
    assert keys.data_key is not None and len(keys.data_key) == 32
    assert keys.id_key is not None and len(keys.id_key) == 32
    assert keys.data_key != keys.id_key
    with open_store(url, passphrase=b"correct horse battery staple", cache_size=0) as stack:
        assert stack.keys == keys  # sub-keys are stable across opens
        assert stack.backend.get("blocks/00ff") == b"data"
    message = f"wrong passphrase or key file for store {re.escape(url)}"
    with pytest.raises(WrongKeyError, match=message):
        open_store(url, passphrase=b"correct horse battery stapler")


def test_passphrase_from_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "from the environment")
    create_store(url, encrypt=True)
    with open_store(url, cache_size=0) as stack:
        assert stack.keys.data_key is not None
    monkeypatch.setenv(PASSPHRASE_ENV, "something else")
    with pytest.raises(WrongKeyError):
        open_store(url)


def test_missing_passphrase_without_terminal_is_a_clear_error(url: str) -> None:
    with pytest.raises(MissingKeyError, match="needs a passphrase"):
        create_store(url, encrypt=True)
    create_store(url, encrypt=True, passphrase=b"pw")
    with pytest.raises(MissingKeyError, match=f"store {re.escape(url)} needs a passphrase"):
        open_store(url)


def test_key_file_is_created_private_and_unlocks(url: str, tmp_path) -> None:
    key_file = tmp_path / "store.key"
    create_store(url, encrypt=True, key_file=str(key_file))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_bytes().strip(), validate=True)) == 32
    with open_store(url, key_file=str(key_file), cache_size=0) as stack:
        stack.backend.put("trees/0abc", b"tree")
        assert stack.backend.get("trees/0abc") == b"tree"


def test_existing_raw_key_file_is_used(url: str, tmp_path) -> None:
    key_file = tmp_path / "raw.key"
    key_file.write_bytes(os.urandom(32))
    before = key_file.read_bytes()
    create_store(url, encrypt=True, key_file=str(key_file))
    assert key_file.read_bytes() == before
    open_store(url, key_file=str(key_file), cache_size=0).close()


def test_wrong_or_missing_key_file(url: str, tmp_path) -> None:
    create_store(url, encrypt=True, key_file=str(tmp_path / "right.key"))
    (tmp_path / "wrong.key").write_bytes(base64.b64encode(os.urandom(32)))
    with pytest.raises(WrongKeyError, match="wrong passphrase or key file"):
        open_store(url, key_file=str(tmp_path / "wrong.key"))
    with pytest.raises(MissingKeyError, match="--key-file"):
        open_store(url, passphrase=b"not a key file")
    with pytest.raises(MissingKeyError, match="cannot read key file"):
        open_store(url, key_file=str(tmp_path / "absent.key"))
    (tmp_path / "short.key").write_bytes(b"too short")
    with pytest.raises(MissingKeyError, match="must hold 32 raw bytes"):
        open_store(url, key_file=str(tmp_path / "short.key"))


def test_config_holds_only_the_wrapped_key(url: str, tmp_path) -> None:
    create_store(url, encrypt=True, passphrase=b"pw", volume={"chunk_size": 65536})
    document = json.loads(open_backend(url).get(CONFIG_KEY))
    encryption = document["encryption"]
    assert encryption["kdf"]["name"] == "scrypt"
    assert {"n", "r", "p", "salt"} <= set(encryption["kdf"])
    assert set(encryption) == {"cipher", "kdf", "wrapped_key", "key_check"}
    assert document["volume"] == {"chunk_size": 65536}
    with open_store(url, passphrase=b"pw", cache_size=0) as stack:
        assert stack.keys.data_key is not None
        assert base64.b64encode(stack.keys.data_key).decode() not in json.dumps(document)


def test_wrapped_key_is_bound_to_its_store(tmp_path) -> None:
    first, second = str(tmp_path / "one"), str(tmp_path / "two")
    create_store(first, encrypt=True, passphrase=b"same")
    create_store(second, encrypt=True, passphrase=b"same")
    one = json.loads(open_backend(first).get(CONFIG_KEY))
    two = json.loads(open_backend(second).get(CONFIG_KEY))
    two["encryption"] = one["encryption"]  # graft store one's wrapped key onto store two
    open_backend(second).put(CONFIG_KEY, json.dumps(two).encode())
    with pytest.raises(WrongKeyError):
        open_store(second, passphrase=b"same")
