"""Files in an S3-compatible bucket, shared by every process of a deployment.

Object names are `<prefix>/<key>`. Uploads carry their SHA-256 so the store refuses bytes
that changed on the way, and reads are checked against the key. Every failure leaves as a
StorageError naming the operation, the key and the error code only: S3 error bodies and
botocore messages can echo request details, and credentials must never reach a log.
"""

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.core.config import Settings
from app.modules.storage.base import StorageError, StoredFileMissing, key_for, key_parts, verified

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# A store that does not answer fails an upload or ingestion within seconds, not minutes.
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
MAX_ATTEMPTS = 3  # the first try included
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET = frozenset({"404", "NoSuchBucket", "NotFound"})


class S3Storage:
    def __init__(self, bucket: str, prefix: str, client: "S3Client") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self._bucket_found = False

    def put(self, data: bytes) -> str:
        key = key_for(data)
        name = self._object_name(key)
        checksum = _sha256_base64(key)
        with _translated("store", key):
            self._check_bucket()
            if not self._holds(name, checksum):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=name,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=checksum,
                )
        return key

    def get(self, key: str) -> bytes:
        name = self._object_name(key)
        with _translated("read", key):
            self._check_bucket()
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=name)
            except ClientError as error:
                if _code(error) in _NOT_FOUND:
                    raise StoredFileMissing(f"no stored file {key}") from None
                raise
            data = response["Body"].read()
        return verified(key, data)

    def delete(self, key: str) -> None:
        name = self._object_name(key)
        with _translated("delete", key):
            self._check_bucket()
            self.client.delete_object(Bucket=self.bucket, Key=name)  # absent: S3 says 204 too

    def exists(self, key: str) -> bool:
        name = self._object_name(key)
        with _translated("look up", key):
            self._check_bucket()
            return self._head(name)

    def _object_name(self, key: str) -> str:
        key_parts(key)  # ValueError before any request for a malformed key
        return f"{self.prefix}/{key}" if self.prefix else key

    def _head(self, name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                return False
            raise
        return True

    def _holds(self, name: str, checksum: str) -> bool:
        """The object is there with our SHA-256, which the store checked on upload: an
        object put there some other way (or a store without checksums) is uploaded again."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name, ChecksumMode="ENABLED")
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                return False
            raise
        return head.get("ChecksumSHA256") == checksum

    def _check_bucket(self) -> None:
        """Once per instance, at first use: S3 answers a missing bucket's objects with the
        same 404 as missing objects, which would make every file look deleted."""
        if self._bucket_found:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if _code(error) in _NO_BUCKET:
                raise StorageError(f"S3 bucket {self.bucket} does not exist") from None
            raise
        self._bucket_found = True


def s3_client(config: Settings) -> "S3Client":
    secret = config.S3_SECRET_ACCESS_KEY
    options = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        # Self-hosted stores (MinIO, Ceph, moto) rarely resolve bucket subdomains.
        s3={"addressing_style": "path" if config.S3_ENDPOINT_URL else "auto"},
    )
    try:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=config.S3_ENDPOINT_URL,
            region_name=config.S3_REGION,
            aws_access_key_id=config.S3_ACCESS_KEY_ID,
            aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
            config=options,
        )
    except BotoCoreError as error:
        raise StorageError(f"S3 client not configured ({type(error).__name__})") from None


@contextmanager
def _translated(action: str, key: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        raise StorageError(f"S3 could not {action} {key} ({_code(error)})") from None
    except BotoCoreError as error:
        raise StorageError(f"S3 could not {action} {key} ({type(error).__name__})") from None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "unknown"))


def _sha256_base64(key: str) -> str:
    _fan_out, digest = key_parts(key)
    return base64.b64encode(bytes.fromhex(digest)).decode()
