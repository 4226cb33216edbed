"""Where uploaded files live: a private local directory, or an S3-compatible bucket.

One interface (`Storage`), content-addressed keys, and errors that never carry a path
beyond the key or any credential.
"""

from app.core.config import Settings
from app.modules.storage.base import Storage, StorageError, StoredFileMissing, key_for
from app.modules.storage.local import LocalStorage
from app.modules.storage.s3 import S3Storage, s3_client

__all__ = [
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "StoredFileMissing",
    "build_storage",
    "key_for",
]


def build_storage(config: Settings) -> Storage:
    """DATA_DIR/files when STORAGE_URL is empty, else the bucket and prefix it names
    (s3://bucket/prefix). Nothing is contacted here: a missing bucket is a StorageError
    at first use."""
    if not config.STORAGE_URL:
        return LocalStorage(config.DATA_DIR / "files")
    bucket, _, prefix = config.STORAGE_URL.removeprefix("s3://").partition("/")
    return S3Storage(bucket, prefix, s3_client(config))
