"""Files in a private directory of this machine (DATA_DIR/files by default).

Writes go to a temporary file in the target's own directory, are flushed to disk and then
renamed over the target, so a reader sees the whole file or none, and a crash leaves at
most a `.tmp-*` file that nothing ever reads.
"""

import os
import tempfile
from contextlib import suppress
from pathlib import Path

from app.modules.storage.base import StorageError, StoredFileMissing, key_for, key_parts, verified

_DIR_MODE = 0o700  # files are created 0o600 by mkstemp
TEMP_PREFIX = ".tmp-"


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes) -> str:
        key = key_for(data)
        path = self._path(key)
        try:
            if not self._holds(path, data):
                self._make_dirs(path.parent)
                self._write_atomically(path, data)
        except OSError as error:
            raise StorageError(f"could not store {key}: {_reason(error)}") from error
        return key

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoredFileMissing(f"no stored file {key}") from None
        except OSError as error:
            raise StorageError(f"could not read {key}: {_reason(error)}") from error
        return verified(key, data)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            raise StorageError(f"could not delete {key}: {_reason(error)}") from error

    def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.stat()
        except FileNotFoundError:
            return False
        except OSError as error:
            raise StorageError(f"could not look up {key}: {_reason(error)}") from error
        return True

    def _path(self, key: str) -> Path:
        """Built from the parts the key pattern matched, never from the key's text."""
        fan_out, digest = key_parts(key)
        return self.root / "sha256" / fan_out / digest

    @staticmethod
    def _holds(path: Path, data: bytes) -> bool:
        try:
            return path.stat().st_size == len(data) and path.read_bytes() == data
        except FileNotFoundError:
            return False

    def _make_dirs(self, directory: Path) -> None:
        # mkdir(parents=True) gives only the last directory `mode`, hence one at a time.
        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        (self.root / "sha256").mkdir(mode=_DIR_MODE, exist_ok=True)
        directory.mkdir(mode=_DIR_MODE, exist_ok=True)

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(handle, "wb") as temp:
                temp.write(data)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, path)
        except BaseException:
            with suppress(OSError):
                os.unlink(temp_name)
            raise
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Makes the rename itself durable."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _reason(error: OSError) -> str:
    """The kind of failure ("Permission denied"), without the paths an OSError carries."""
    return error.strerror or type(error).__name__
