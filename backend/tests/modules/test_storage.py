"""File storage: one behaviour suite run on a local directory and on S3 (a moto server on
127.0.0.1), then what only one of them can show (permissions, crashes, an unreachable or
missing bucket) and which one build_storage picks."""

import base64
import hashlib
import os
import socket
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.core.config import Settings
from app.modules.storage import (
    LocalStorage,
    S3Storage,
    Storage,
    StorageError,
    StoredFileMissing,
    build_storage,
)
from app.modules.storage.local import TEMP_PREFIX
from app.modules.storage.s3 import CONNECT_TIMEOUT_SECONDS, MAX_ATTEMPTS, READ_TIMEOUT_SECONDS
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DATA = b"The quarterly report, page one.\n"
OTHER = b"Someone else's notes.\n"
DIGEST = hashlib.sha256(DATA).hexdigest()
KEY = f"sha256/{DIGEST[:2]}/{DIGEST}"
MALFORMED_KEYS = [
    "../etc/passwd",
    "/etc/passwd",
    f"/{KEY}",
    f"sha256/{DIGEST[:2]}/../../../etc/passwd",
    f"sha256/{DIGEST[:2]}/{DIGEST[:63]}",  # too short
    f"sha256/{DIGEST[:2]}/{DIGEST}0",  # too long
    f"sha256/{DIGEST[:2]}/{DIGEST.upper()}",
    f"sha256/AB/ab{'0' * 62}",  # uppercase fan-out
    f"sha256/ff/{'0' * 64}",  # the fan-out is not the digest's start
    f"{KEY}\n",
    f"{KEY}/",
    f"md5/{DIGEST[:2]}/{DIGEST}",
    "",
]


@dataclass
class Store:
    """A storage under test and a look at what it really holds, bypassing it."""

    storage: Storage
    held: Callable[[], set[str]]  # every name stored, temporary files included
    tamper: Callable[[str, bytes], None]  # replaces a stored file's bytes behind its back


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def s3_settings(**values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }
    return Settings(_env_file=None, **(defaults | values))


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture(scope="module")
def s3_client(s3_server: S3Server) -> "S3Client":
    return s3_server.client()


@pytest.fixture
def bucket(s3_client: "S3Client") -> Iterator[str]:
    name = f"files-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    for item in s3_client.list_objects_v2(Bucket=name).get("Contents", []):
        s3_client.delete_object(Bucket=name, Key=item["Key"])
    s3_client.delete_bucket(Bucket=name)


def local_store(root: Path) -> Store:
    def held() -> set[str]:
        return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}

    def tamper(key: str, data: bytes) -> None:
        (root / key).write_bytes(data)

    return Store(LocalStorage(root), held, tamper)


def s3_store(client: "S3Client", bucket: str, prefix: str) -> Store:
    def held() -> set[str]:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {item["Key"].removeprefix(f"{prefix}/") for item in listed}

    def tamper(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)

    return Store(S3Storage(bucket, prefix, client), held, tamper)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return local_store(tmp_path / "files")
    client: S3Client = request.getfixturevalue("s3_client")
    return s3_store(client, request.getfixturevalue("bucket"), "uploads")


class TestBehaviour:
    def test_put_then_get_returns_the_bytes(self, store: Store) -> None:
        key = store.storage.put(DATA)

        assert key == KEY
        assert store.storage.get(key) == DATA
        assert store.storage.exists(key)
        assert store.held() == {KEY}

    def test_the_same_bytes_get_the_same_key_and_other_bytes_another(self, store: Store) -> None:
        first = store.storage.put(DATA)
        second = store.storage.put(bytes(DATA))
        other = store.storage.put(OTHER)

        assert first == second == KEY
        digest = hashlib.sha256(OTHER).hexdigest()
        assert other == f"sha256/{digest[:2]}/{digest}"
        assert store.storage.get(other) == OTHER
        assert store.held() == {KEY, other}

    def test_put_is_idempotent(self, store: Store) -> None:
        keys = {store.storage.put(DATA) for _ in range(3)}

        assert keys == {KEY}
        assert store.storage.get(KEY) == DATA
        assert store.held() == {KEY}

    def test_empty_bytes_are_stored_too(self, store: Store) -> None:
        key = store.storage.put(b"")

        assert key == f"sha256/e3/{hashlib.sha256(b'').hexdigest()}"
        assert store.storage.get(key) == b""
        assert store.held() == {key}

    def test_a_large_object_round_trips(self, store: Store) -> None:
        data = os.urandom(5 * 1_048_576)

        key = store.storage.put(data)

        assert store.storage.get(key) == data
        assert store.held() == {key}

    def test_get_of_a_key_never_stored_is_missing(self, store: Store) -> None:
        with pytest.raises(StoredFileMissing):
            store.storage.get(KEY)
        assert not store.storage.exists(KEY)
        assert store.held() == set()

    def test_delete_then_get_is_missing(self, store: Store) -> None:
        key = store.storage.put(DATA)
        store.storage.put(OTHER)

        store.storage.delete(key)

        with pytest.raises(StoredFileMissing):
            store.storage.get(key)
        assert not store.storage.exists(key)
        assert KEY not in store.held()
        assert len(store.held()) == 1  # the other file is untouched

    def test_delete_of_an_absent_key_is_fine(self, store: Store) -> None:
        store.storage.delete(KEY)
        store.storage.delete(KEY)

        assert not store.storage.exists(KEY)
        assert store.held() == set()

    @pytest.mark.parametrize("key", MALFORMED_KEYS)
    def test_malformed_keys_are_refused(self, store: Store, key: str) -> None:
        store.storage.put(DATA)

        for operation in (store.storage.get, store.storage.exists, store.storage.delete):
            with pytest.raises(ValueError, match="malformed storage key"):
                operation(key)
        assert store.held() == {KEY}
        assert store.storage.get(KEY) == DATA

    def test_a_stored_file_that_changed_is_refused(self, store: Store) -> None:
        key = store.storage.put(DATA)
        store.tamper(key, b"The quarterly report, page 0ne.\n")

        with pytest.raises(StorageError, match="corrupt") as raised:
            store.storage.get(key)
        assert not isinstance(raised.value, StoredFileMissing)

    def test_put_repairs_a_stored_file_that_changed(self, store: Store) -> None:
        key = store.storage.put(DATA)
        store.tamper(key, b"garbage")

        assert store.storage.put(DATA) == key

        assert store.storage.get(key) == DATA
        assert store.held() == {KEY}


class TestLocalStorage:
    def test_files_and_directories_are_private(self, tmp_path: Path) -> None:
        root = tmp_path / "data" / "files"
        key = LocalStorage(root).put(DATA)

        path = root / key
        assert path.read_bytes() == DATA
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for directory in (root, root / "sha256", path.parent):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    def test_put_leaves_no_temporary_file(self, tmp_path: Path) -> None:
        storage = LocalStorage(tmp_path)

        storage.put(DATA)
        storage.put(DATA)

        assert sorted(os.listdir(tmp_path / "sha256" / DIGEST[:2])) == [DIGEST]

    def test_an_existing_identical_file_is_not_rewritten(self, tmp_path: Path) -> None:
        storage = LocalStorage(tmp_path)
        before = (tmp_path / storage.put(DATA)).stat()

        storage.put(DATA)

        after = (tmp_path / KEY).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    def test_a_write_cut_short_by_a_crash_is_ignored(self, tmp_path: Path) -> None:
        # What a process killed between writing and renaming leaves behind.
        directory = tmp_path / "sha256" / DIGEST[:2]
        directory.mkdir(parents=True)
        leftover = directory / f"{TEMP_PREFIX}crashed"
        leftover.write_bytes(DATA[:7])
        storage = LocalStorage(tmp_path)

        assert not storage.exists(KEY)
        with pytest.raises(StoredFileMissing):
            storage.get(KEY)
        assert storage.put(DATA) == KEY

        assert storage.get(KEY) == DATA
        assert sorted(os.listdir(directory)) == sorted([DIGEST, leftover.name])
        assert leftover.read_bytes() == DATA[:7]

    def test_a_failing_disk_is_a_storage_error_naming_only_the_key(self, tmp_path: Path) -> None:
        root = tmp_path / "not-a-directory"
        root.write_bytes(b"")
        storage = LocalStorage(root)

        with pytest.raises(StorageError) as put_error:
            storage.put(DATA)
        with pytest.raises(StorageError) as get_error:
            storage.get(KEY)
        with pytest.raises(StorageError):
            storage.exists(KEY)

        for error in (put_error.value, get_error.value):
            assert not isinstance(error, StoredFileMissing)
            assert KEY in str(error)
            assert str(tmp_path) not in str(error)
        assert root.read_bytes() == b""


class TestS3Storage:
    def test_objects_live_under_the_prefix_with_their_sha256(
        self, s3_client: "S3Client", bucket: str
    ) -> None:
        storage = S3Storage(bucket, "/team/uploads/", s3_client)

        key = storage.put(DATA)

        head = s3_client.head_object(
            Bucket=bucket, Key=f"team/uploads/{key}", ChecksumMode="ENABLED"
        )
        assert head["ContentLength"] == len(DATA)
        assert head.get("ChecksumSHA256") == base64.b64encode(bytes.fromhex(DIGEST)).decode()
        listed = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
        assert [item["Key"] for item in listed] == [f"team/uploads/{KEY}"]

    def test_without_a_prefix_the_key_is_the_object_name(
        self, s3_client: "S3Client", bucket: str
    ) -> None:
        S3Storage(bucket, "", s3_client).put(DATA)

        listed = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
        assert [item["Key"] for item in listed] == [KEY]

    def test_a_missing_bucket_is_a_storage_error(self, s3_client: "S3Client", bucket: str) -> None:
        missing = f"{bucket}-gone"
        storage = S3Storage(missing, "uploads", s3_client)

        for operation in (storage.get, storage.exists, storage.delete):
            with pytest.raises(StorageError, match=f"S3 bucket {missing} does not exist") as raised:
                operation(KEY)
            assert not isinstance(raised.value, StoredFileMissing)
        with pytest.raises(StorageError, match="does not exist"):
            storage.put(DATA)
        buckets = [item.get("Name") for item in s3_client.list_buckets()["Buckets"]]
        assert missing not in buckets

    def test_a_bucket_created_later_is_used_once_it_exists(
        self, s3_client: "S3Client", bucket: str
    ) -> None:
        storage = S3Storage(f"{bucket}-late", "uploads", s3_client)
        with pytest.raises(StorageError):
            storage.put(DATA)

        s3_client.create_bucket(Bucket=f"{bucket}-late")
        try:
            assert storage.put(DATA) == KEY
            assert storage.get(KEY) == DATA
        finally:
            s3_client.delete_object(Bucket=f"{bucket}-late", Key=f"uploads/{KEY}")
            s3_client.delete_bucket(Bucket=f"{bucket}-late")

    def test_an_unreachable_store_is_a_storage_error_without_credentials(
        self, tmp_path: Path
    ) -> None:
        config = s3_settings(
            DATA_DIR=tmp_path,
            STORAGE_URL="s3://files/uploads",
            S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        )
        storage = build_storage(config)

        with pytest.raises(StorageError) as put_error:
            storage.put(DATA)
        with pytest.raises(StorageError) as get_error:
            storage.get(KEY)

        for error in (put_error.value, get_error.value):
            assert not isinstance(error, StoredFileMissing)
            assert "EndpointConnectionError" in str(error)
            assert SECRET_ACCESS_KEY not in str(error)
            assert ACCESS_KEY_ID not in str(error)
            assert error.__cause__ is None
        assert list(tmp_path.iterdir()) == []


class TestBuildStorage:
    def test_without_a_storage_url_files_go_under_the_data_dir(self, tmp_path: Path) -> None:
        storage = build_storage(Settings(_env_file=None, DATA_DIR=tmp_path, STORAGE_URL=""))

        assert isinstance(storage, LocalStorage)
        key = storage.put(DATA)
        assert (tmp_path / "files" / key).read_bytes() == DATA

    def test_an_s3_url_names_the_bucket_and_prefix(
        self, tmp_path: Path, s3_server: S3Server, s3_client: "S3Client", bucket: str
    ) -> None:
        config = s3_settings(
            DATA_DIR=tmp_path,
            STORAGE_URL=f"s3://{bucket}/team/uploads",
            S3_ENDPOINT_URL=s3_server.url,
        )

        storage = build_storage(config)

        assert isinstance(storage, S3Storage)
        assert (storage.bucket, storage.prefix) == (bucket, "team/uploads")
        assert storage.put(DATA) == KEY
        assert storage.get(KEY) == DATA
        listed = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
        assert [item["Key"] for item in listed] == [f"team/uploads/{KEY}"]
        assert list(tmp_path.iterdir()) == []

    def test_an_s3_url_without_a_prefix(self, s3_server: S3Server) -> None:
        storage = build_storage(
            s3_settings(STORAGE_URL="s3://files", S3_ENDPOINT_URL=s3_server.url)
        )

        assert isinstance(storage, S3Storage)
        assert (storage.bucket, storage.prefix) == ("files", "")

    def test_the_s3_client_gives_up_within_seconds(self, s3_server: S3Server) -> None:
        storage = build_storage(
            s3_settings(STORAGE_URL="s3://files", S3_ENDPOINT_URL=s3_server.url)
        )

        assert isinstance(storage, S3Storage)
        options = vars(storage.client.meta.config)  # botocore sets them as attributes
        assert options["connect_timeout"] == CONNECT_TIMEOUT_SECONDS <= 5
        assert options["read_timeout"] == READ_TIMEOUT_SECONDS <= 30
        assert options["retries"] == {"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"}
        assert storage.client.meta.region_name == REGION
