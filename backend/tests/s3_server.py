"""A private S3 (moto's server) on 127.0.0.1, for tests of the S3 storage.

    with S3Server() as server:
        client = server.client()
        client.create_bucket(Bucket="files")
        ... S3_ENDPOINT_URL=server.url ...

It runs in a thread of this process and listens on a port the kernel picked, so parallel
test workers never collide. Buckets and objects live in memory, in moto's backend shared by
every server of the process: give each test a bucket of its own.
"""

from types import TracebackType
from typing import TYPE_CHECKING, Self

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"


class S3ServerError(RuntimeError):
    """The server was used before it started."""


class S3Server:
    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise S3ServerError("the S3 server is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()
        _host, self._port = self._server.get_host_and_port()

    def stop(self) -> None:
        if self._port is not None:
            self._server.stop()
            self._port = None

    def client(self) -> "S3Client":
        """A client for setting up and inspecting buckets, apart from the code under test."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
