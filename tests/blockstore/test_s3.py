"""The S3 backend against a moto server and a scripted HTTP server, over real HTTP."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from blockstore.backend import NotFoundError, StoreError, StoreFullError, TransientError
from blockstore.backends import s3 as s3_module
from blockstore.factory import create_store, open_backend, open_store
from blockstore.layers.retry import RetryLayer, RetryPolicy
from blockstore.layers.stats import StatsLayer
from tests.helpers.moto_server import MotoS3

REPO = Path(__file__).resolve().parents[2]


def no_sleep(delay: float) -> None:
    """Retries in these tests need no real back-off."""


def test_missing_bucket_fails_at_once_with_s3s_text(s3_url: str) -> None:
    url = "s3://no-such-bucket-here/store"
    stats = StatsLayer(open_backend(url))
    layer = RetryLayer(stats, sleep=no_sleep)
    with pytest.raises(StoreError, match="NoSuchBucket") as info:
        layer.get("config")
    assert not isinstance(info.value, (TransientError, NotFoundError))
    assert stats.snapshot().gets == 1  # permanent: not retried
    with pytest.raises(StoreError, match="NoSuchBucket"):
        open_store(url)
    with pytest.raises(StoreError, match="NoSuchBucket"):
        create_store(url)


def test_prefixes_are_separate_stores(s3_url: str) -> None:
    near = open_backend(s3_url)
    far = open_backend(s3_url + "x")
    near.put("blocks/0a", b"near")
    far.put("blocks/0a", b"far")
    assert [key for key, _ in near.list()] == ["blocks/0a"]
    assert near.get("blocks/0a") == b"near"
    far.delete("blocks/0a")
    assert near.exists("blocks/0a")


def test_put_options_reach_the_bucket(s3_url: str, moto_s3: MotoS3) -> None:
    backend = open_backend(s3_url, storage_class="STANDARD_IA", sse="AES256", path_style=True)
    backend.put("blocks/0b", b"stored with options")
    assert backend.put_if_absent("blocks/0c", b"also with options")
    for key in ("blocks/0b", "blocks/0c"):
        head = moto_s3.client().head_object(Bucket=moto_s3.bucket,
                                            Key=s3_url.split("/", 3)[3] + "/" + key)
        assert head["StorageClass"] == "STANDARD_IA"
        assert head["ServerSideEncryption"] == "AES256"


def test_conditional_put_can_be_turned_off(s3_url: str) -> None:
    backend = open_backend(s3_url, conditional_put=False)
    assert backend.properties.conditional_put is False
    assert open_backend(s3_url).properties.conditional_put is True
    assert backend.put_if_absent("lease", b"first") is True
    assert backend.put_if_absent("lease", b"second") is False
    assert backend.get("lease") == b"first"


def test_delete_many_sends_batches(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 4)
    backend = open_backend(s3_url, list_page_size=3)
    keys = [f"packs/{i:04x}" for i in range(11)]
    for key in keys:
        backend.put(key, b"p")
    backend.delete_many(key for key in keys if key != "packs/0005")
    assert [key for key, _ in backend.list("packs/")] == ["packs/0005"]


def test_encrypted_bucket_holds_no_plaintext(s3_url: str, moto_s3: MotoS3, tmp_path) -> None:
    marker = b"PLAINTEXT-MARKER-93ab"
    create_store(s3_url, encrypt=True, key_file=str(tmp_path / "k"), compression_level=0)
    with open_store(s3_url, key_file=str(tmp_path / "k"), state_dir=tmp_path / "s") as stack:
        for i in range(4):
            stack.backend.put(f"blocks/{i:04x}", os.urandom(50) + marker * 10)
        stack.backend.put("lease", marker)  # through the top: encrypted like everything else
    client = moto_s3.client()
    prefix = s3_url.split("/", 3)[3] + "/"
    listing = client.list_objects_v2(Bucket=moto_s3.bucket, Prefix=prefix)["Contents"]
    assert len(listing) == 6
    for item in listing:
        body = client.get_object(Bucket=moto_s3.bucket, Key=item["Key"])["Body"].read()
        assert marker not in body, item["Key"]


def test_a_subprocess_reaches_moto_through_env(s3_url: str, moto_s3: MotoS3) -> None:
    open_backend(s3_url).put("blocks/0d", b"from the test process")
    code = ("import sys; from blockstore.factory import open_backend; "
            "sys.stdout.write(open_backend(sys.argv[1]).get('blocks/0d').decode())")
    env = {"PATH": os.environ["PATH"], **moto_s3.env}
    result = subprocess.run([sys.executable, "-c", code, s3_url], cwd=REPO, env=env,
                            capture_output=True, check=True, text=True)
    assert result.stdout == "from the test process"


# -- error classification against a scripted HTTP server --------------------------------


class ScriptedS3(ThreadingHTTPServer):
    """Answers every request with one fixed S3 error, counting requests."""

    daemon_threads = True
    status = 503
    code = "SlowDown"
    message = "Please reduce your request rate."
    requests = 0


class ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedS3
    protocol_version = "HTTP/1.1"  # answers botocore's Expect: 100-continue at once

    def _answer(self) -> None:
        self.server.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{self.server.code}</Code>"
                f"<Message>{self.server.message}</Message><RequestId>r1</RequestId></Error>")
        payload = b"" if self.command == "HEAD" else body.encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def scripted_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedS3]:
    server = ScriptedS3(("127.0.0.1", 0), ScriptedHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
                        "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(("status", "code", "expected", "errno_value"), [
    (503, "SlowDown", TransientError, errno.EAGAIN),
    (500, "InternalError", TransientError, errno.EAGAIN),
    (400, "RequestTimeout", TransientError, errno.EAGAIN),
    (403, "AccessDenied", StoreError, errno.EACCES),
    (403, "InvalidAccessKeyId", StoreError, errno.EACCES),
    (404, "NoSuchKey", NotFoundError, errno.ENOENT),
    (507, "XMinioStorageFull", StoreFullError, errno.ENOSPC),
    (400, "InvalidArgument", StoreError, errno.EIO),
])
def test_s3_errors_are_classified(scripted_s3: ScriptedS3, status: int, code: str,
                                  expected: type[StoreError], errno_value: int) -> None:
    scripted_s3.status, scripted_s3.code = status, code
    backend = open_backend("s3://bucket/prefix", path_style=True)
    for request in (lambda: backend.get("blocks/0e"), lambda: backend.put("blocks/0e", b"x")):
        with pytest.raises(StoreError) as info:
            request()
        assert type(info.value) is expected
        assert info.value.errno == errno_value
        if expected is not NotFoundError:
            assert code in str(info.value)
            assert "s3://bucket/prefix/blocks/0e" in str(info.value)


def test_only_the_retry_layer_retries(scripted_s3: ScriptedS3) -> None:
    stats = StatsLayer(open_backend("s3://bucket/prefix", path_style=True))
    layer = RetryLayer(stats, RetryPolicy(max_attempts=3), sleep=no_sleep)
    with pytest.raises(TransientError, match=r"SlowDown.*gave up after 3 attempts"):
        layer.put("blocks/0f", b"x")
    assert scripted_s3.requests == 3  # botocore added no attempts of its own
    assert stats.snapshot().puts == 3


def test_connection_failures_are_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: connections are refused
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    backend = open_backend("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{port}",
                           region="us-east-1", connect_timeout=2)
    with pytest.raises(TransientError, match="Could not connect"):
        backend.get("blocks/10")
