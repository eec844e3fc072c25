"""One small storage API over `file://` and `s3://` URIs.

Datasets, images, checkpoints and results all go through these functions, so that a run
works the same on a laptop (file://) and in a cluster (s3:// on MinIO). The s3 settings come
from an environment mapping (see `s3_backend` for the variables): the process's own, or the one
`using_env` sets for the current context. `storage_env` builds that mapping from a run's
`spec.storage` (+ the Secret's credentials): the operator's Jobs, its artifact deletion and the
local runner all use it, so the endpoint a manifest names is the one every plane talks to.

Atomic publication: `publish_dir` uploads a directory and writes its commit marker
(`_COMPLETE`, holding the file list and checksums) last; `is_complete` is true only after it.
A crash mid-upload therefore never leaves a directory that looks whole.

Called by every runtime stage, by the local runner (its run state) and by the operator's
artifact deletion. Locations, errors and the backend interface live in `storage_base` (imported
by this front and by `s3_backend` alike, so neither imports the other at module level); they are
re-exported here: callers need only `storage`.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mfpo_core import uris
from mfpo_core.storage_base import (
    Backend,
    Location,
    StorageConfigError,
    StorageError,
    StorageIntegrityError,
    sha256_file,
)

if TYPE_CHECKING:
    from mfpo_core.api import StorageSpec

COMMIT_MARKER = "_COMPLETE"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3 bucket naming rules


# The variables that choose where s3:// requests go. A run's settings replace all of them, so
# that a shell's AWS_ENDPOINT_URL never redirects a run whose manifest names its endpoint.
ENDPOINT_VARIABLES = (
    "MFPO_S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MFPO_S3_SECURE",
    "MFPO_S3_CONNECT_TIMEOUT",
    "MFPO_S3_READ_TIMEOUT",
)
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def storage_env(spec: StorageSpec, credentials: Mapping[str, str] | None = None) -> dict[str, str]:
    """The storage environment of a run: its endpoint settings, and the access keys of
    `credentials` (a Secret's data) when given. The one place a spec becomes s3 settings."""
    env = {
        "MFPO_S3_SECURE": "true" if spec.secure else "false",
        "MFPO_S3_CONNECT_TIMEOUT": f"{spec.connect_timeout_seconds:g}",
        "MFPO_S3_READ_TIMEOUT": f"{spec.read_timeout_seconds:g}",
    }
    if spec.endpoint:
        env["MFPO_S3_ENDPOINT"] = spec.endpoint
    for key in CREDENTIAL_VARIABLES:
        if credentials and credentials.get(key):
            env[key] = credentials[key]
    return env


def run_environment(spec: StorageSpec, base: Mapping[str, str]) -> dict[str, str]:
    """`base` (a shell's environment) with every endpoint setting replaced by the run's: what
    the local runner gives its stage processes and uses for its own state."""
    kept = {key: value for key, value in base.items() if key not in ENDPOINT_VARIABLES}
    return {**kept, **storage_env(spec)}


_ENV: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("mfpo_storage_env", default=None)


@contextlib.contextmanager
def using_env(env: Mapping[str, str]) -> Iterator[None]:
    """s3:// operations in this context use `env`'s settings instead of the process's."""
    token = _ENV.set(dict(env))
    try:
        yield
    finally:
        _ENV.reset(token)


def parse(uri: str) -> Location:
    """Parse a storage URI. A plain path is taken as a local file path.

    A URI that `uris` refuses (a '?' or '#', which urlparse would cut off with what follows, a
    control character, an empty or '.'/'..' segment) is refused here too, whoever built it: no
    part of a URI is ever dropped or read differently by the two backends."""
    if not isinstance(uri, str) or not uri:
        raise StorageConfigError(f"storage URI must be a non-empty string, got {uri!r}")
    if "://" not in uri:
        return Location("file", "", str(Path(uri).absolute()))
    scheme = uri.partition("://")[0]
    if scheme not in ("file", "s3"):
        raise StorageConfigError(f"unsupported storage URI {uri!r}: expected file:// or s3://")
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost", ".", ".."):
        raise StorageConfigError(f"malformed file URI {uri!r}: expected file:///absolute/path")
    if parsed.scheme == "s3" and not parsed.netloc:
        raise StorageConfigError(f"malformed s3 URI {uri!r}: expected s3://bucket/key")
    if parsed.scheme == "s3" and not _BUCKET_NAME.match(parsed.netloc):
        raise StorageConfigError(
            f"malformed s3 URI {uri!r}: bucket name {parsed.netloc!r} must be 3-63 lowercase "
            "letters, digits, dots or hyphens, starting and ending with a letter or digit"
        )
    problem = uris.storage_uri_problem(uri, prefix=True)
    if problem:
        raise StorageConfigError(f"malformed {parsed.scheme} URI {uri!r}: {problem}")
    if parsed.scheme == "s3":
        return Location("s3", parsed.netloc, parsed.path.lstrip("/"))
    if parsed.netloc in (".", ".."):
        # file://./runs/x: relative to the working directory (`mfpo run` resolves a manifest's
        # relative URIs against its own directory before they get here).
        return Location("file", "", str(Path(parsed.netloc + parsed.path).absolute()))
    return Location("file", "", parsed.path)


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a storage URI (a relative file:// URI stays relative). A part that
    would name another object than it says ('..', '//', '?'...) is a StorageConfigError."""
    try:
        return uris.join(uri, *parts)
    except ValueError as err:
        raise StorageConfigError(str(err)) from err


def _backend(loc: Location) -> Backend:
    if loc.scheme == "file":
        return _FILE
    # Imported lazily: the minio client is only needed for s3://.
    from mfpo_core import s3_backend

    env = _ENV.get()
    return s3_backend.backend_for(loc) if env is None else s3_backend.backend_for_env(env, loc)


class _FileBackend(Backend):
    def put_file(self, local: Path, loc: Location, sha256: str | None = None) -> None:
        target = Path(loc.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copyfile(local, tmp)
        os.replace(tmp, target)  # atomic on POSIX: readers never see half a file

    def get_file(self, loc: Location, local: Path) -> None:
        if not Path(loc.key).is_file():
            raise StorageError(f"no such object: {loc.uri}")
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(loc.key, local)

    def list(self, loc: Location) -> Iterator[str]:
        root = Path(loc.key)
        if root.is_file():
            yield ""
            return
        if not root.is_dir():
            return
        for path in sorted(root.rglob("*")):
            if path.is_file() and ".tmp-" not in path.name:
                yield path.relative_to(root).as_posix()

    def exists(self, loc: Location) -> bool:
        return Path(loc.key).exists()

    def delete(self, loc: Location) -> None:
        path = Path(loc.key)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def delete_tree(self, loc: Location) -> None:
        self.delete(loc)  # delete() already removes whole directories

    def read_bytes(self, loc: Location) -> bytes:
        try:
            return Path(loc.key).read_bytes()
        except FileNotFoundError as err:
            raise StorageError(f"no such object: {loc.uri}") from err

    def write_bytes(self, data: bytes, loc: Location) -> None:
        target = Path(loc.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def create_bytes(self, data: bytes, loc: Location) -> bool:
        target = Path(loc.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        draft = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        draft.write_bytes(data)
        try:
            # link() creates the name only if it is absent, with its whole content at once.
            os.link(draft, target)
            return True
        except FileExistsError:
            return False
        finally:
            draft.unlink()


_FILE = _FileBackend()


# ------------------------------------------------------------------ public API


def put_file(local: str | os.PathLike[str], uri: str, *, sha256: str | None = None) -> None:
    """Upload one file; pass its sha256 when known to save the s3 backend a second read."""
    loc = parse(uri)
    _backend(loc).put_file(Path(local), loc, sha256)


def get_file(uri: str, local: str | os.PathLike[str]) -> Path:
    loc = parse(uri)
    _backend(loc).get_file(loc, Path(local))
    return Path(local)


def read_bytes(uri: str) -> bytes:
    loc = parse(uri)
    return _backend(loc).read_bytes(loc)


def write_bytes(data: bytes, uri: str) -> None:
    loc = parse(uri)
    _backend(loc).write_bytes(data, loc)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(text: str, uri: str) -> None:
    write_bytes(text.encode("utf-8"), uri)


def create_json(doc: Any, uri: str) -> bool:
    """Write a JSON document only if none is there yet, atomically (on s3://, a conditional
    write): True if this call wrote it, False if one existed. Of two callers, one wins."""
    loc = parse(uri)
    data = json.dumps(doc, indent=2, sort_keys=True, default=str).encode("utf-8")
    return _backend(loc).create_bytes(data, loc)


def read_json(uri: str) -> Any:
    try:
        return json.loads(read_text(uri))
    except json.JSONDecodeError as err:
        raise StorageError(f"{uri} is not valid JSON: {err}") from err


def write_json(doc: Any, uri: str) -> None:
    write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), uri)


def exists(uri: str) -> bool:
    loc = parse(uri)
    return _backend(loc).exists(loc)


def list_files(uri: str) -> list[str]:
    """Relative paths of every file under a directory URI, sorted."""
    loc = parse(uri)
    return sorted(_backend(loc).list(loc))


def delete(uri: str) -> None:
    """Delete a file or a whole directory."""
    loc = parse(uri)
    _backend(loc).delete_tree(loc)


def put_dir(local: str | os.PathLike[str], uri: str) -> list[str]:
    """Upload every file under a local directory; returns the relative paths uploaded."""
    root = Path(local)
    if not root.is_dir():
        raise StorageError(f"cannot upload {root} to {uri}: not a directory")
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    _in_parallel(lambda rel: put_file(root / rel, join(uri, rel)), rels)
    return rels


def get_dir(uri: str, local: str | os.PathLike[str]) -> Path:
    """Download every file under a directory URI into a local directory."""
    rels = list_files(uri)
    if not rels:
        raise StorageError(f"no such directory or it is empty: {uri}")
    _in_parallel(lambda rel: get_file(join(uri, rel), Path(local, rel)), rels)
    return Path(local)


def copy_dir(src: str, dst: str) -> list[str]:
    """Copy every file under one directory URI to another (any schemes); returns the paths."""
    rels = list_files(src)
    for rel in rels:
        write_bytes(read_bytes(join(src, rel)), join(dst, rel))
    return rels


def _transfer_threads() -> int:
    raw = os.environ.get("MFPO_STORAGE_THREADS", "8")
    if not raw.isdigit() or int(raw) < 1:
        raise StorageConfigError(f"MFPO_STORAGE_THREADS={raw!r}: expected a positive integer")
    return int(raw)


def _in_parallel(work: Callable[[str], Any], rels: list[str]) -> list[Any]:
    """work(rel) for each path on a few threads (MFPO_STORAGE_THREADS, default 8), in order.

    Datasets hold thousands of small images: one request at a time would spend its time on
    round trips. The first failure is raised once the others have stopped.
    """
    threads = min(_transfer_threads(), len(rels))
    if threads <= 1:
        return [work(rel) for rel in rels]
    context = contextvars.copy_context()  # the workers use the caller's `using_env` settings
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mfpo-storage") as pool:
        return list(pool.map(lambda rel: context.copy().run(work, rel), rels))


def publish_dir(local: str | os.PathLike[str], uri: str) -> None:
    """Upload a directory and make it visible as complete only after the commit marker.

    The marker lists every file with its sha256; `fetch_dir` verifies them after download and
    fetches only those. Other files under `uri` are left alone: a published directory may
    hold other published directories (a checkpoint step holds one per rank).
    """
    root = Path(local)
    if not root.is_dir():
        raise StorageError(f"cannot publish {root} to {uri}: not a directory")
    if exists(join(uri, COMMIT_MARKER)):
        delete(join(uri, COMMIT_MARKER))  # republishing: invalidate first, never mix two versions
    files = [p for p in root.rglob("*") if p.is_file() and p.name != COMMIT_MARKER]
    rels = sorted(p.relative_to(root).as_posix() for p in files)
    digests = _in_parallel(lambda rel: sha256_file(root / rel), rels)
    digests_by_rel = dict(zip(rels, digests))
    manifest = {"files": digests_by_rel}
    _in_parallel(lambda rel: put_file(root / rel, join(uri, rel), sha256=digests_by_rel[rel]), rels)
    write_json(manifest, join(uri, COMMIT_MARKER))  # last: only now does the directory count


def is_complete(uri: str) -> bool:
    return exists(join(uri, COMMIT_MARKER))


def fetch_dir(uri: str, local: str | os.PathLike[str]) -> Path:
    """Download a published directory and verify every file's checksum against the marker."""
    if not is_complete(uri):
        raise StorageError(
            f"{uri} is not a complete published directory (no {COMMIT_MARKER} marker)"
        )
    manifest = read_json(join(uri, COMMIT_MARKER))
    root = Path(local)
    files: dict[str, str] = manifest["files"]

    def fetch_verified(rel: str) -> None:
        # A mismatch may be corruption in transit: fetch once more before calling it corrupt.
        for _ in range(2):
            actual = sha256_file(get_file(join(uri, rel), root / rel))
            if actual == files[rel]:
                return
        raise StorageIntegrityError(join(uri, rel), f"sha256 {files[rel]}", f"sha256 {actual}")

    _in_parallel(fetch_verified, sorted(files))
    return root


def local_path(uri: str) -> Path | None:
    """The local path behind a file:// URI (or plain path), else None: lets readers avoid copies."""
    loc = parse(uri)
    return Path(loc.key) if loc.scheme == "file" else None


@functools.cache
def _process_cache() -> Path:
    """One scratch directory per process for downloads, removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix="mfpo-cache-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def materialize(uri: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A local directory or file holding the URI's content: the path itself for file://,
    else a download into cache_dir (default: a per-process directory removed at exit).

    A published directory is verified against its marker and downloaded once: a later call
    whose marker is unchanged returns the same copy (a base model read by several stages'
    loaders in one process); a republished one is fetched again.
    """
    path = local_path(uri)
    if path is not None:
        if not path.exists():
            raise StorageError(f"no such file or directory: {uri}")
        return path
    loc = parse(uri)
    target = Path(cache_dir or _process_cache()) / hashlib.sha256(loc.uri.encode()).hexdigest()[:16]
    if is_complete(uri):
        marker = read_bytes(join(uri, COMMIT_MARKER))
        copy_marker = target / COMMIT_MARKER
        if copy_marker.is_file() and copy_marker.read_bytes() == marker:
            return target
        shutil.rmtree(target, ignore_errors=True)  # no file of an older version may linger
        fetch_dir(uri, target)
        copy_marker.write_bytes(marker)  # last, as on the remote side
        return target
    rels = list_files(uri)
    if rels == [""]:
        return get_file(uri, target / Path(loc.key).name)
    return get_dir(uri, target)
