"""What every storage shares: the interface, its errors and the content-addressed keys.

A key names the bytes it holds (`sha256/<first 2 hex>/<64 hex>`), so storing the same
bytes twice yields one object, and a key from a caller is checked against this exact form
before anything is built from it: no caller ever chooses a path or an object name.
"""

import hashlib
import re
from typing import Protocol

_KEY = re.compile(r"sha256/([0-9a-f]{2})/(\1[0-9a-f]{62})")


class StorageError(Exception):
    """The storage is unreachable or refuses; the message never holds credentials."""


class StoredFileMissing(StorageError):  # noqa: N818 (the shared interface names it)
    """No file is stored under the key."""


class Storage(Protocol):
    def put(self, data: bytes) -> str:
        """Stores `data` (idempotent, atomic) and returns its key."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes stored under `key`; StoredFileMissing if there are none."""
        ...

    def delete(self, key: str) -> None:
        """Removes the file; a key with nothing stored is fine."""
        ...

    def exists(self, key: str) -> bool: ...


def key_for(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"sha256/{digest[:2]}/{digest}"


def key_parts(key: str) -> tuple[str, str]:
    """(fan-out directory, digest) of a well-formed key; ValueError for anything else."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise ValueError("malformed storage key")
    return match.group(1), match.group(2)


def verified(key: str, data: bytes) -> bytes:
    """`data` if it still hashes to `key`: a stored file that changed is refused."""
    if key_for(data) != key:
        raise StorageError(f"stored file {key} is corrupt")
    return data
