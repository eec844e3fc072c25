"""The s3:// backend of `mfpo_core.storage`, through the official `minio` client.

Called only by `storage._backend` (lazily, so file:// users never import minio). Configuration
comes from the environment, which a Secret fills in the cluster:

    MFPO_S3_ENDPOINT or AWS_ENDPOINT_URL   host:port or http(s)://host:port; required: there is
                                            no default (write s3.amazonaws.com for AWS S3)
    MFPO_S3_SECURE                          true/false; else the URL's scheme; else true
    MFPO_S3_CONNECT_TIMEOUT, MFPO_S3_READ_TIMEOUT   seconds (default 10 and 60) per attempt
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN   (anonymous if unset)
    AWS_REGION (or AWS_DEFAULT_REGION)      us-east-1 if unset (saves a GetBucketLocation call)
    MFPO_S3_PART_SIZE                       multipart part size in bytes (>= 5 MiB, default 64 MiB)

What this edge guarantees:
- one client per configuration (endpoint, TLS, region, credentials), cached;
- files larger than the part size go up in parallel multipart (minio's `put_object`);
- every download is verified: against the sha256 that `put_file` stores in the object's
  metadata (`x-amz-meta-mfpo-sha256`) when present, else against the ETag when it is a plain
  MD5 (single-part uploads without SSE-KMS); a multipart ETag without our metadata cannot be
  checked (it is an MD5 of part MD5s whose part size is unknown), and `storage.fetch_dir`
  still checks published directories against their commit marker;
- a download that fails its check is fetched once more; a second mismatch is a
  `StorageIntegrityError` (the stored object is corrupt);
- before a multipart upload, the key's incomplete multipart uploads (a killed earlier try's
  parts) are aborted, so that no orphaned parts stay on the server;
- transient failures (connection errors, timeouts, 5xx incl. 503 SlowDown) are retried with
  exponential backoff by urllib3's `Retry`, honouring Retry-After, on every request minio sends;
- every minio/urllib3 error is translated here, once, into `storage.StorageError` naming the
  URI; secrets never appear in a message.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import MIN_PART_SIZE, DictType
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from mfpo_core.storage_base import (
    Backend,
    Location,
    StorageConfigError,
    StorageError,
    StorageIntegrityError,
    sha256_file,
)

log = logging.getLogger("mfpo.storage")

AWS_ENDPOINT = "s3.amazonaws.com"  # only when written explicitly: never a silent default
DEFAULT_REGION = "us-east-1"
DEFAULT_PART_SIZE = 64 * 1024 * 1024
SHA256_METADATA = "mfpo-sha256"  # sent as x-amz-meta-mfpo-sha256
# Per attempt: a hung server costs READ_TIMEOUT per try, not urllib3's unbounded wait.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0

# Retry policy of every request (tests shorten the backoff). With a backoff factor b urllib3
# sleeps b, 2b, 4b, ... capped at BACKOFF_MAX between attempts.
MAX_RETRIES = 6
BACKOFF_FACTOR = 0.5
BACKOFF_MAX = 30.0
RETRY_STATUSES = (500, 502, 503, 504)  # 503 is S3's SlowDown

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
}

# A key the server will not store under that name, whatever the retry (mfpo_core.uris refuses
# what it can know beforehand; MinIO also trims Unicode white space around a '..' segment).
_KEY_NAME_CODES = {"XMinioInvalidObjectName", "InvalidObjectName", "KeyTooLongError"}


@dataclass(frozen=True)
class S3Settings:
    """Everything that identifies one client. Built from the environment by `settings_from_env`."""

    endpoint: str  # host:port
    secure: bool
    region: str
    access_key: str | None
    secret_key: str | None
    session_token: str | None
    part_size: int
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT

    def __repr__(self) -> str:  # never print the secret
        return (
            f"S3Settings(endpoint={self.endpoint!r}, secure={self.secure}, region={self.region!r})"
        )


def _truthy(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise StorageConfigError(f"{name}={value!r}: expected true or false")


def parse_endpoint(raw: str, secure_env: str | None) -> tuple[str, bool]:
    """host:port and TLS from `host:port` or `http(s)://host:port[/]`; MFPO_S3_SECURE wins."""
    raw = raw.strip()
    secure = True
    if "://" in raw:
        parsed = urlparse(raw)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise StorageConfigError(f"S3 endpoint {raw!r}: expected host:port or http(s)://host:port")
        if parsed.path not in ("", "/"):
            raise StorageConfigError(f"S3 endpoint {raw!r}: a path is not allowed, only host:port")
        raw, secure = parsed.netloc, parsed.scheme == "https"
    if not raw or "/" in raw:
        raise StorageConfigError(f"S3 endpoint {raw!r}: expected host:port or http(s)://host:port")
    if secure_env is not None and secure_env.strip():
        secure = _truthy(secure_env, "MFPO_S3_SECURE")
    return raw, secure


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise StorageConfigError(f"{name}={raw!r}: expected a positive number of seconds")
    return value


def settings_from_env(env: Mapping[str, str] | None = None, uri: str | None = None) -> S3Settings:
    """The S3 settings of an environment mapping (the process's own when None); `uri` names
    the object that needs them in an error."""
    env = dict(os.environ if env is None else env)
    raw = env.get("MFPO_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL")
    if not raw:
        raise StorageConfigError(
            f"no S3 endpoint for {uri or 's3://'}: set spec.storage.endpoint (MFPO_S3_ENDPOINT "
            f"for a stage run by hand); to use AWS S3, write {AWS_ENDPOINT} there"
        )
    endpoint, secure = parse_endpoint(raw, env.get("MFPO_S3_SECURE"))
    access, secret = env.get("AWS_ACCESS_KEY_ID") or None, env.get("AWS_SECRET_ACCESS_KEY") or None
    if bool(access) != bool(secret):
        raise StorageConfigError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
    raw_part_size = env.get("MFPO_S3_PART_SIZE") or str(DEFAULT_PART_SIZE)
    if not raw_part_size.strip().isdigit():
        raise StorageConfigError(f"MFPO_S3_PART_SIZE={raw_part_size!r}: expected a number of bytes")
    part_size = int(raw_part_size)
    if part_size < MIN_PART_SIZE:
        raise StorageConfigError(
            f"MFPO_S3_PART_SIZE={part_size}: S3 parts must be at least {MIN_PART_SIZE} bytes"
        )
    return S3Settings(
        endpoint=endpoint,
        secure=secure,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        access_key=access,
        secret_key=secret,
        session_token=env.get("AWS_SESSION_TOKEN") or None,
        part_size=part_size,
        connect_timeout=_seconds(env, "MFPO_S3_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
        read_timeout=_seconds(env, "MFPO_S3_READ_TIMEOUT", DEFAULT_READ_TIMEOUT),
    )


def _http_client(settings: S3Settings) -> urllib3.PoolManager:
    # allowed_methods=None retries every verb: minio's POSTs (create/complete multipart) are
    # safe to repeat, and its request bodies are in-memory bytes, so they can be re-sent.
    retry = Retry(
        total=MAX_RETRIES,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=BACKOFF_MAX,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,  # hand the last error response to minio: its S3 code names the cause
    )
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
        maxsize=16,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=retry,
    )


@functools.lru_cache(maxsize=8)
def _backend_for_settings(settings: S3Settings) -> S3Backend:
    client = Minio(
        settings.endpoint,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        session_token=settings.session_token,
        secure=settings.secure,
        region=settings.region,
        http_client=_http_client(settings),
    )
    return S3Backend(client, settings)


def backend_for(loc: Location) -> S3Backend:
    """The cached backend for the current environment (called by storage for each s3:// op)."""
    return _backend_for_settings(settings_from_env(uri=loc.uri))  # the bucket is per call


def backend_for_env(env: Mapping[str, str], loc: Location | None = None) -> S3Backend:
    """The cached backend for explicit settings rather than the process environment: the
    operator acting with one run's Secret while other runs use theirs."""
    return _backend_for_settings(settings_from_env(env, loc.uri if loc else None))


def clear_clients() -> None:
    """Forget cached clients (after the environment changed, e.g. in tests)."""
    _backend_for_settings.cache_clear()


# ---------------------------------------------------------------- error translation


_TRANSLATED = (MinioException, Urllib3Error, ValueError)
_BROKEN_BODY = (ProtocolError, ReadTimeoutError)  # the body stopped before its Content-Length


def _describe(err: BaseException, loc: Location, settings: S3Settings) -> str:
    uri = loc.uri
    where = f"{'https' if settings.secure else 'http'}://{settings.endpoint}"
    if isinstance(err, S3Error):
        code = err.code or "Error"
        if code == "NoSuchBucket":
            return f"bucket {loc.bucket!r} does not exist ({uri})"
        if code in ("NoSuchKey", "ResourceNotFound"):
            return f"no such object: {uri}"
        if code in _CREDENTIAL_CODES:
            who = (
                "anonymous access"
                if settings.access_key is None
                else "the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            )
            return f"access to {uri} refused by {where} ({code}): check {who}"
        return f"S3 error {code} on {uri} from {where}: {err.message}"
    if isinstance(err, ServerError):
        return (
            f"S3 server {where} failed on {uri} after {MAX_RETRIES} retries: HTTP {err.status_code}"
        )
    if isinstance(err, InvalidResponseError):
        return f"S3 endpoint {where} gave a non-S3 answer for {uri}: {err}"
    if isinstance(err, _BROKEN_BODY):
        return (
            f"download of {uri} from {where} kept breaking off after {MAX_RETRIES} retries: {err}"
        )
    if isinstance(err, Urllib3Error):
        return (
            f"cannot reach S3 endpoint {where} for {uri} after {MAX_RETRIES} retries: "
            f"{_reason(err, settings)}"
        )
    return f"S3 operation on {uri} failed: {type(err).__name__}: {err}"


def _reason(err: Urllib3Error, settings: S3Settings) -> str:
    """The cause of a connection failure in words, without urllib3's object reprs."""
    reason = getattr(err, "reason", None) or err
    if isinstance(reason, NewConnectionError):  # a subclass of ConnectTimeoutError in urllib3 2
        # Its text repeats the connection object; its cause is the OSError in words.
        return f"cannot connect: {reason.__cause__ or reason}"
    if isinstance(reason, ConnectTimeoutError):
        return f"no connection within {settings.connect_timeout:g}s (MFPO_S3_CONNECT_TIMEOUT)"
    if isinstance(reason, ReadTimeoutError):
        return f"no answer within {settings.read_timeout:g}s (MFPO_S3_READ_TIMEOUT)"
    return str(reason)


class S3Backend(Backend):
    """storage's backend protocol over one minio client."""

    def __init__(self, client: Minio, settings: S3Settings) -> None:
        self.client = client
        self.settings = settings

    def _fail(self, err: BaseException, loc: Location) -> StorageError:
        config = isinstance(err, S3Error) and (
            err.code == "NoSuchBucket" or err.code in _CREDENTIAL_CODES or err.code in _KEY_NAME_CODES
        )
        return (StorageConfigError if config else StorageError)(_describe(err, loc, self.settings))

    def _missing(self, err: S3Error, loc: Location) -> StorageError:
        """A 404 on HEAD/GET says NoSuchKey even when the bucket is what is missing: ask."""
        if err.code == "NoSuchKey" and not self._bucket_exists(loc):
            return StorageConfigError(f"bucket {loc.bucket!r} does not exist ({loc.uri})")
        return self._fail(err, loc)

    def _bucket_exists(self, loc: Location) -> bool:
        try:
            return self.client.bucket_exists(loc.bucket)
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err

    def _require_key(self, loc: Location) -> None:
        if not loc.key or loc.key.endswith("/"):
            raise StorageConfigError(f"{loc.uri} names no object: expected s3://bucket/key")

    # ------------------------------------------------------------------ writes

    def put_file(self, local: Path, loc: Location, sha256: str | None = None) -> None:
        self._require_key(loc)
        digest = sha256 or _sha256_of(local)
        if local.stat().st_size > self.settings.part_size:
            self._abort_incomplete_uploads(loc)
        try:
            self.client.fput_object(
                loc.bucket,
                loc.key,
                str(local),
                metadata={SHA256_METADATA: digest},
                part_size=self.settings.part_size,
            )
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err
        except OSError as err:
            raise StorageError(f"cannot upload {local} to {loc.uri}: {err}") from err

    def write_bytes(self, data: bytes, loc: Location) -> None:
        self._require_key(loc)
        if len(data) > self.settings.part_size:
            self._abort_incomplete_uploads(loc)
        try:
            self.client.put_object(
                loc.bucket,
                loc.key,
                io.BytesIO(data),
                len(data),
                metadata={SHA256_METADATA: hashlib.sha256(data).hexdigest()},
                part_size=self.settings.part_size,
            )
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err

    def create_bytes(self, data: bytes, loc: Location) -> bool:
        """A conditional write, If-None-Match: * (S3's conditional writes, AWS since 2024,
        docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html; MinIO, moto):
        412 PreconditionFailed when the key exists, 409 ConditionalRequestConflict when another
        conditional write of it is in flight. minio-py's put_object has no header for it
        (it files unknown headers as metadata), hence its request method. A server that ignores
        the header overwrites: the caller reads the object back and compares."""
        self._require_key(loc)
        headers: DictType = {
            "If-None-Match": "*",
            "Content-Type": "application/json",
            f"x-amz-meta-{SHA256_METADATA}": hashlib.sha256(data).hexdigest(),
        }
        try:
            self.client._execute("PUT", loc.bucket, loc.key, body=data, headers=headers)
            return True
        except S3Error as err:
            if err.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise self._fail(err, loc) from err
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err

    def _abort_incomplete_uploads(self, loc: Location) -> None:
        """Abort the key's unfinished multipart uploads: a killed earlier upload's parts stay
        on the server (and are billed) until aborted. minio-py has no public call for this
        since v7, hence its ListMultipartUploads/AbortMultipartUpload methods."""
        try:
            found = self.client._list_multipart_uploads(loc.bucket, prefix=loc.key)
            for upload in found.uploads:
                if upload.object_name == loc.key and upload.upload_id:  # the prefix matches longer keys too
                    self.client._abort_multipart_upload(loc.bucket, loc.key, upload.upload_id)
        except S3Error as err:
            if err.code != "AccessDenied":
                raise self._fail(err, loc) from err
            # Credentials limited to put/get may not list uploads: the upload itself can still
            # succeed, so say what is left undone instead of failing it.
            log.warning(
                "cannot clean up unfinished multipart uploads of %s (AccessDenied: the "
                "credentials lack s3:ListBucketMultipartUploads/s3:AbortMultipartUpload); "
                "a bucket lifecycle rule can abort them instead",
                loc.uri,
            )
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err

    # ------------------------------------------------------------------- reads

    def get_file(self, loc: Location, local: Path) -> None:
        self._require_key(loc)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                self._download(loc, handle)
            os.replace(tmp, local)  # readers never see half a file
        finally:
            tmp.unlink(missing_ok=True)

    def read_bytes(self, loc: Location) -> bytes:
        self._require_key(loc)
        buffer = io.BytesIO()
        self._download(loc, buffer)
        return buffer.getvalue()

    def _download(self, loc: Location, sink: io.RawIOBase | io.BufferedIOBase) -> None:
        """Stream an object into `sink` and verify it; a body cut halfway is fetched again.

        urllib3's Retry covers requests and their status, not a response stream that breaks
        mid-way (a MinIO pod restarting), hence this short loop with the same backoff.
        """
        mismatches = 0
        for attempt in range(MAX_RETRIES + 1):
            sink.seek(0)
            sink.truncate()
            try:
                self._download_once(loc, sink)
                return
            except StorageIntegrityError:
                mismatches += 1
                # Once may be corruption in transit; twice, the stored object is corrupt.
                if mismatches == 2 or attempt == MAX_RETRIES:
                    raise
            except _BROKEN_BODY as err:
                if attempt == MAX_RETRIES:
                    raise self._fail(err, loc) from err
                time.sleep(min(BACKOFF_FACTOR * 2**attempt, BACKOFF_MAX))

    def _download_once(self, loc: Location, sink: io.RawIOBase | io.BufferedIOBase) -> None:
        """Stream an object into `sink`, hashing on the way, and verify it (see module doc)."""
        response = None
        md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        try:
            response = self.client.get_object(loc.bucket, loc.key)
            for block in response.stream(amt=1 << 20):
                md5.update(block)
                sha.update(block)
                sink.write(block)
            headers = response.headers
        except _BROKEN_BODY:
            raise  # the caller fetches again
        except S3Error as err:
            raise self._missing(err, loc) from err
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err
        finally:
            if response is not None:
                response.close()
                response.release_conn()
        # An encrypted object's ETag is not the MD5 of its content: only our sha256 can be checked.
        etag = None if headers.get("x-amz-server-side-encryption") else headers.get("ETag")
        _verify(loc, headers.get(f"x-amz-meta-{SHA256_METADATA}"), etag, md5, sha)

    # ------------------------------------------------------------- namespace

    def _is_object(self, loc: Location) -> bool:
        if not loc.key or loc.key.endswith("/"):
            return False
        try:
            self.client.stat_object(loc.bucket, loc.key)
            return True
        except S3Error as err:
            if err.code in ("NoSuchKey", "ResourceNotFound"):
                return False
            raise self._fail(err, loc) from err
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err

    def _prefix(self, loc: Location) -> str:
        return f"{loc.key.rstrip('/')}/" if loc.key.strip("/") else ""

    def list(self, loc: Location) -> Iterator[str]:
        """Relative keys under loc; [""] when loc is itself an object (like a file path)."""
        if self._is_object(loc):
            yield ""
            return
        prefix = self._prefix(loc)
        try:
            names = [
                o.object_name
                for o in self.client.list_objects(loc.bucket, prefix=prefix, recursive=True)
            ]
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err
        for name in sorted(n for n in names if n and not n.endswith("/")):
            yield name[len(prefix) :]

    def exists(self, loc: Location) -> bool:
        """An object, or a non-empty "directory" prefix (as a path exists for file://)."""
        if self._is_object(loc):
            return True
        try:
            found = self.client.list_objects(loc.bucket, prefix=self._prefix(loc), recursive=True)
            return next(iter(found), None) is not None
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err

    def delete(self, loc: Location) -> None:
        self._require_key(loc)
        try:
            self.client.remove_object(loc.bucket, loc.key)
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err

    def delete_tree(self, loc: Location) -> None:
        """Delete an object and everything under its prefix with batched DeleteObjects calls."""
        keys = [loc.join(rel).key if rel else loc.key for rel in self.list(loc)]
        if not keys:
            return
        try:
            errors = list(self.client.remove_objects(loc.bucket, [DeleteObject(k) for k in keys]))
        except _TRANSLATED as err:
            raise self._fail(err, loc) from err
        if errors:
            first = errors[0]
            raise StorageError(
                f"could not delete {len(errors)} object(s) under {loc.uri}, "
                f"e.g. {first.name}: {first.message}"
            )


def _sha256_of(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as err:
        raise StorageError(f"cannot read {path}: {err}") from err


def _verify(loc: Location, sha_expected: str | None, etag: str | None, md5, sha) -> None:
    """Compare the hashes of a download with what the object's headers promise."""
    if sha_expected:
        if sha.hexdigest() != sha_expected:
            raise StorageIntegrityError(loc.uri, f"sha256 {sha_expected}", f"sha256 {sha.hexdigest()}")
        return
    plain_etag = (etag or "").strip('"')
    if len(plain_etag) == 32 and "-" not in plain_etag and plain_etag != md5.hexdigest():
        raise StorageIntegrityError(loc.uri, f"md5 {plain_etag} (ETag)", f"md5 {md5.hexdigest()}")
