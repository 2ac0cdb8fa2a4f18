"""A backend on an S3-compatible bucket through boto3 (`s3://bucket/prefix` store URLs).

Theory of operation:

* One boto3 client, shared by all threads (botocore clients are thread-safe), with a
  connection pool of `connections` (the factory's limit layer caps concurrent requests
  at the same number, so no request waits for a socket). Endpoint, region and
  credentials come from the standard AWS environment and config files, as for the AWS
  CLI (`AWS_ENDPOINT_URL` points it at MinIO, Ceph or moto); arguments override them.
* botocore's own retries are off (one attempt): the retry layer above is the only
  one, so the back-off policy and the request counts stay in one place.
* Key ``k`` is object ``prefix/k``. `put_if_absent` is a PUT with ``If-None-Match: *``
  (S3 answers 412 if the object exists); for servers without conditional writes pass
  ``conditional_put=False`` to fall back to HEAD + PUT (and say so in `properties`).
  `get_range` is a ranged GET; `list` pages through ListObjectsV2 (S3 lists in UTF-8
  byte order, which is key order for our ASCII keys); `delete_many` sends
  DeleteObjects requests of up to 1000 keys.
* Errors are classified once, here: 404/NoSuchKey -> NotFoundError; throttling, 5xx,
  timeouts and connection failures -> TransientError; everything else (AccessDenied,
  NoSuchBucket, InvalidAccessKeyId, ...) -> a permanent StoreError whose message
  carries S3's error code and text.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    SSLError,
)

from blockstore.backend import (
    Backend,
    NotFoundError,
    Properties,
    StoreError,
    StoreFullError,
    TransientError,
    check_key,
)

DELETE_BATCH = 1000
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_TRANSIENT = frozenset({
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
    "ThrottlingException", "ThrottledException", "RequestThrottled", "TooManyRequests",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "OperationAborted",
    "ConditionalRequestConflict", "PriorRequestNotComplete",
})
_DENIED = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "AllAccessDisabled", "AccountProblem",
})
_FULL = frozenset({"QuotaExceeded", "XMinioStorageFull", "StorageFull"})

# Building a boto3 session loads the service models (~0.1 s); clients made from one
# session share them. A session caches the credentials it resolved, so it is reused
# only while the environment that chose them is unchanged. Sessions are not
# thread-safe, so clients are made under a lock.
_SESSION_ENV = ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_REGION",
                "AWS_DEFAULT_REGION")
_sessions: dict[tuple[str | None, ...], boto3.session.Session] = {}
_session_lock = threading.Lock()


class S3Backend(Backend):
    """Objects in `bucket` under `prefix` (see the module docstring).

    Options: `endpoint_url`, `region`, `profile` (override the AWS environment);
    `path_style` (path-style addressing, for MinIO and most self-hosted servers);
    `connections` (pool size); `storage_class` (e.g. "STANDARD_IA"); `sse`
    ("AES256" or "aws:kms") with `sse_kms_key_id`; `conditional_put`; `connect_timeout`
    and `read_timeout` in seconds; `list_page_size` (keys per LIST request, max 1000).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        path_style: bool = False,
        connections: int = 16,
        storage_class: str | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        conditional_put: bool = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        list_page_size: int = 1000,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._connections = connections
        self._conditional = conditional_put
        self._page_size = list_page_size
        self._put_args: dict[str, str] = {}
        if storage_class:
            self._put_args["StorageClass"] = storage_class
        if sse:
            self._put_args["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self._put_args["SSEKMSKeyId"] = sse_kms_key_id
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # no SHA-256 of every request body for SigV4 (botocore does it on plain
            # HTTP unless told): 0.55 CPU-s per GiB uploaded; the body keeps its
            # CRC32 checksum header (signed), and what we store is checked per object
            s3={"addressing_style": "path" if path_style else "auto",
                "payload_signing_enabled": False},
        )
        try:
            identity = (profile, region, *map(os.environ.get, _SESSION_ENV))
            with _session_lock:
                session = _sessions.get(identity)
                if session is None:
                    session = boto3.session.Session(profile_name=profile, region_name=region)
                    _sessions[identity] = session
                self._client = session.client("s3", endpoint_url=endpoint_url, config=config)
        except BotoCoreError as exc:
            raise StoreError(f"s3://{bucket}/{self.prefix}: {exc}") from exc

    def __repr__(self) -> str:
        return f"S3Backend('s3://{self.bucket}/{self.prefix}')"

    @property
    def properties(self) -> Properties:
        return Properties(
            connections=self._connections, conditional_put=self._conditional, range_reads=True
        )

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, action: str, key: str | None) -> StoreError:
        """Classify a botocore exception from `action` on `key` (see module docstring)."""
        where = f"s3://{self.bucket}/{self._object(key or '')}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            text = f"{where}: {action} failed: {code}: {error.get('Message') or status}"
            if code in _NOT_FOUND:
                return NotFoundError(f"{key}: not found", key=key)
            if code in _TRANSIENT or status in (429, 500, 502, 503, 504):
                return TransientError(text, key=key)
            if code in _FULL:
                return StoreFullError(text, key=key)
            denied = code in _DENIED or status == 403
            return StoreError(text, key=key, errno=errno.EACCES if denied else errno.EIO)
        text = f"{where}: {action} failed: {exc}"
        if isinstance(exc, SSLError):
            return StoreError(text, key=key)  # a bad certificate does not heal by waiting
        if isinstance(exc, (ConnectionError, HTTPClientError, IncompleteReadError)):
            return TransientError(text, key=key)
        return StoreError(text, key=key)

    def _call(self, action: str, key: str | None, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(Bucket=self.bucket, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, action, key) from exc

    def _read_body(self, response: dict[str, Any], key: str) -> bytes:
        try:
            return response["Body"].read()
        except BotoCoreError as exc:
            raise self._error(exc, "get", key) from exc

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        response = self._call("get", key, "get_object", Key=self._object(check_key(key)))
        return self._read_body(response, key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            if not self.exists(key):
                raise NotFoundError(f"{key}: not found", key=key)
            return b""
        try:
            response = self._call(
                "get", key, "get_object", Key=self._object(check_key(key)),
                Range=f"bytes={offset}-{offset + length - 1}",
            )
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response["Error"].get("Code") in (
                "InvalidRange", "416",
            ):
                if self.exists(key):
                    return b""  # offset at or past the end: S3 refuses, we return nothing
                raise NotFoundError(f"{key}: not found", key=key) from None
            raise
        return self._read_body(response, key)

    def exists(self, key: str) -> bool:
        try:
            self._call("exists", key, "head_object", Key=self._object(check_key(key)))
        except NotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        strip = len(self._object(""))
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self._object(prefix),
            PaginationConfig={"PageSize": self._page_size},
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"][strip:], item["Size"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", prefix) from exc

    # -- writes ----------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self._call("put", key, "put_object", Key=self._object(check_key(key)), Body=data,
                   **self._put_args)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        name = self._object(check_key(key))
        if not self._conditional:
            if self.exists(key):
                return False
            self.put(key, data)
            return True
        try:
            self._call("put", key, "put_object", Key=name, Body=data, IfNoneMatch="*",
                       **self._put_args)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response["Error"].get("Code") in (
                "PreconditionFailed", "412",
            ):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self._call("delete", key, "delete_object", Key=self._object(check_key(key)))

    def delete_many(self, keys: Iterable[str]) -> None:
        batch = [self._object(check_key(key)) for key in keys]
        for start in range(0, len(batch), DELETE_BATCH):
            chunk = batch[start : start + DELETE_BATCH]
            response = self._call(
                "delete", None, "delete_objects",
                Delete={"Objects": [{"Key": name} for name in chunk], "Quiet": True},
            )
            for failure in response.get("Errors", ()):
                fake = ClientError({"Error": failure, "ResponseMetadata": {}}, "DeleteObjects")
                strip = len(self._object(""))
                raise self._error(fake, "delete", failure.get("Key", "")[strip:])

    def close(self) -> None:
        self._client.close()
