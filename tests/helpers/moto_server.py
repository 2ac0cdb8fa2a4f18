"""pytest plugin: a real moto S3 server over HTTP for the whole test session.

`moto_s3` (session scope) starts moto in a child process bound to 127.0.0.1 on a port
the kernel picks (port 0, so parallel sessions never race for a port), waits until it
answers HTTP, creates a bucket and yields a `MotoS3` with `endpoint_url`, `bucket`,
`env` (what a subprocess such as `rsyncd-py` needs to reach it: endpoint, dummy
credentials, region, no user AWS config) and `url()` (a fresh `s3://bucket/prefix`).
`s3_url` (function scope) is a fresh store URL with `env` applied to this process, and
removes the prefix's objects afterwards.

The child reads its stdin and exits when it closes, so the server goes away with the
test session even when pytest is killed. Run this file directly to start a server by
hand: it prints the port on its first line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

BUCKET = "rsyncd-py-test"
REGION = "us-east-1"


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 server with one bucket (see the module docstring)."""

    endpoint_url: str
    bucket: str
    env: dict[str, str] = field(default_factory=dict)

    def url(self, name: str | None = None) -> str:
        """A store URL under a fresh prefix (or under `name` if given)."""
        return f"s3://{self.bucket}/{name or 't-' + uuid.uuid4().hex[:12]}"

    def client(self) -> Any:
        """A boto3 S3 client for inspecting the bucket directly."""
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under `prefix` (cleanup between tests)."""
        client = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix + "/"
        )
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})


def _start_server() -> tuple[subprocess.Popen[bytes], int]:
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.strip().isdigit():
        child.kill()
        child.wait()
        raise RuntimeError(f"moto server did not start: {line!r}")
    return child, int(line)


def _wait_until_answering(endpoint_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(endpoint_url + "/moto-api/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _stop_server(child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    child.stdin.close()  # the child exits when its stdin closes
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    if child.stdout is not None:
        child.stdout.close()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A moto S3 server for this session (one per xdist worker) with a test bucket."""
    child, port = _start_server()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_until_answering(endpoint)
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        server = MotoS3(endpoint_url=endpoint, bucket=BUCKET, env=env)
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        _stop_server(child)


@pytest.fixture
def s3_url(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh `s3://bucket/prefix` URL, with this process's AWS environment aimed at moto."""
    for name, value in moto_s3.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    url = moto_s3.url()
    yield url
    moto_s3.delete_prefix(url.removeprefix(f"s3://{moto_s3.bucket}/"))


def _serve() -> None:
    """Child process: serve moto on an ephemeral port until stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.buffer.read()
    server.stop()


if __name__ == "__main__":
    _serve()
