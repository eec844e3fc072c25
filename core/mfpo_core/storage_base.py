"""What `storage` (the front) and its backends share: locations, errors, the backend interface.

Both `mfpo_core.storage` and `mfpo_core.s3_backend` import this module and it imports neither,
so the front can load the s3 backend (lazily, for s3:// only) with no import cycle. Callers
use `storage`, which re-exports every name here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    """A storage operation failed; the message names the URI."""


class StorageConfigError(StorageError):
    """A configuration no retry can fix (malformed URI, missing bucket, refused credentials,
    bad settings): a stage reports it as bad input."""


class StorageIntegrityError(StorageError):
    """A downloaded object does not match its recorded digest, even when fetched again: the
    stored object is corrupt, and no retry of the stage can fix it."""

    def __init__(self, uri: str, expected: str, actual: str) -> None:
        super().__init__(f"checksum mismatch for {uri}: expected {expected}, got {actual}")
        self.uri, self.expected, self.actual = uri, expected, actual


@dataclass(frozen=True)
class Location:
    scheme: str  # "file" or "s3"
    bucket: str  # s3 bucket; "" for file
    key: str  # s3 object key, or absolute local path for file

    def join(self, *parts: str) -> Location:
        key = "/".join([self.key.rstrip("/"), *[p.strip("/") for p in parts if p]])
        return Location(self.scheme, self.bucket, key)

    @property
    def uri(self) -> str:
        if self.scheme == "file":
            return f"file://{self.key}"
        return f"s3://{self.bucket}/{self.key}"


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Backend(Protocol):
    """What a scheme must do (file:// in `storage`, s3:// in `s3_backend`); the public functions
    of `storage` add URIs, checksums and atomicity."""

    # sha256: the file's digest when the caller has it already (the s3 backend stores it).
    def put_file(self, local: Path, loc: Location, sha256: str | None = None) -> None: ...
    def get_file(self, loc: Location, local: Path) -> None: ...
    def list(self, loc: Location) -> Iterator[str]: ...  # relative keys of all objects under loc
    def exists(self, loc: Location) -> bool: ...
    def delete(self, loc: Location) -> None: ...  # a single object/file

    def delete_tree(self, loc: Location) -> None:
        """A file/object and everything under it; backends override with a faster way."""
        for rel in list(self.list(loc)):
            self.delete(loc.join(rel) if rel else loc)

    def read_bytes(self, loc: Location) -> bytes: ...
    def write_bytes(self, data: bytes, loc: Location) -> None: ...
    # Write only if nothing is there yet, atomically: True if written, False if it existed.
    def create_bytes(self, data: bytes, loc: Location) -> bool: ...
