"""Storage URIs: which ones `storage` addresses faithfully, and how prefixes and names are joined.

One rule, three users: `api` (the CRD's pattern and pydantic's check of every URI field),
`storage.parse` (which refuses anything else, whoever built the URI) and `join` (every
<prefix>/<name> the stages and runners build). A URI that passes names one object or prefix,
and the same one on file:// and on s3://:

- `?` and `#` are refused: `urllib.parse` (storage.parse) reads them as the start of a query
  and a fragment and drops the rest, so `s3://b/runs#a/x/result.json` would be the key `runs`
  for every x (RFC 3986, section 3);
- control characters (U+0000-U+001F, U+007F-U+009F) are refused: a file system refuses NUL,
  MinIO refuses it in a key, S3 lists keys in XML 1.0, which cannot hold most of them, and AWS
  asks to avoid them (docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html);
- an empty path segment (`//`) is refused: MinIO refuses it in a key (cmd/object-api-utils.go,
  IsValidObjectPrefix) and a file system reads `a//b` as `a/b`, so the two backends would name
  different objects;
- a `.` or `..` path segment is refused, also with spaces around it: minio-py refuses it
  (helpers.check_object_name), MinIO refuses it after trimming white space (hasBadPathComponent,
  Go's strings.TrimSpace), and a file system walks `..` out of the prefix. The only exception is
  the head of `file://./<path>` and `file://../<path>` (relative to the manifest, resolved
  before anything reads them). Segments made only of dots and white space are refused with them.

`%` is read literally on both backends (neither decodes it, as the AWS CLI does not), so it is
allowed. A plain local path (no scheme) follows the same segment rules and has no `:`.

Pure: regular expressions and strings only, no I/O. The patterns use only what both Python's
`re` and Go's RE2 (the API server's pattern and CEL engine) read the same way.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# S3 bucket naming rules, as MinIO's client checks them (minio.helpers.check_bucket_name with
# strict=True): 3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or
# digit (this pattern), no '..', '.-' or '-.' and not an IPv4 address (BUCKET_FORBIDDEN_PATTERN).
S3_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
S3_BUCKET_FORBIDDEN_PATTERN = (
    r"^s3://([^/]*(\.\.|\.-|-\.)"  # minio's unallowed successive characters
    r"|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])(/|$))"
)
S3_BUCKET_MESSAGE = (
    "an s3:// bucket name may not contain '..', '.-' or '-.' nor be an IPv4 address (S3's bucket naming rules)"
)
STORAGE_URI_HINT = (
    "s3://<bucket>/<key> (bucket: 3-63 lowercase letters, digits, '.' or '-'), file:///<absolute path> "
    "or file://./<relative path>"
)

# White space around a dot segment: MinIO trims Go's unicode.IsSpace; here the ASCII space
# (control characters are refused anyway). The pattern must stay ASCII: it travels in YAML, where
# U+2028 and U+2029 are line breaks, and no escape of Unicode reads the same in Python's re and
# Go's RE2. A key MinIO still refuses (U+00A0 around '..') fails on MinIO with
# XMinioInvalidObjectName, which the s3 backend reports as bad input.
_WHITE_SPACE = " "
_CONTROL = r"\x00-\x1f\x7f-\x9f"


def _path(also_refused: str = "") -> str:
    """Segments separated by single slashes, none of them empty or made of dots and white space
    only, an optional trailing slash; `also_refused`: characters refused besides the rule's."""
    char = f"[^/?#{also_refused}{_CONTROL}]"
    naming_char = f"[^/?#.{also_refused}{_CONTROL}{_WHITE_SPACE}]"  # neither a dot nor white space
    segment = f"{char}*{naming_char}{char}*"
    return f"{segment}(/{segment})*/?"


_KEY = _path()
_STORAGE_URI = (
    rf"s3://{S3_BUCKET}(/({_KEY})?)?"
    rf"|file://(localhost)?/({_KEY})?"
    rf"|file://\.\.?(/\.\.)*/({_KEY})?"
)
_PLAIN_PATH = f"/?{_path(':')}"
# A URI or local path the stages read (spec.model.uri, data.uri, benchmark files...).
STORAGE_URI_PATTERN = rf"^({_STORAGE_URI}|{_PLAIN_PATH})$"
# spec.storage.uri, a run's prefix: a URI, never a bare path.
STORAGE_PREFIX_PATTERN = rf"^({_STORAGE_URI})$"
_STORAGE_URI_RE = re.compile(STORAGE_URI_PATTERN)
_STORAGE_PREFIX_RE = re.compile(STORAGE_PREFIX_PATTERN)
_DOT_SEGMENT = re.compile(f"[.{_WHITE_SPACE}]*")

# An http(s) server the stages call with paths appended (the judge's .../chat/completions,
# MLflow's .../api/2.0/...): a host, an optional path, no user:password@ (credentials never
# travel in the spec), no query or fragment (the appended path would land inside them).
HTTP_BASE_URL_PATTERN = r"^https?://[^\s/?#@]+(/[^\s?#]*)?$"


def storage_uri_problem(uri: str, *, prefix: bool = False) -> str | None:
    """Why `uri` is not a storage URI (`prefix`: a run prefix, no plain path), else None.

    The decision is STORAGE_URI_PATTERN's (or STORAGE_PREFIX_PATTERN's), the CRD's very
    pattern; the words say which rule it breaks."""
    accepted = (_STORAGE_PREFIX_RE if prefix else _STORAGE_URI_RE).fullmatch(uri)
    bucket_refused = re.match(S3_BUCKET_FORBIDDEN_PATTERN, uri)
    if accepted and not bucket_refused:
        return None
    if bucket_refused:
        return S3_BUCKET_MESSAGE
    return _explain(uri, prefix)


def _explain(uri: str, prefix: bool) -> str:
    generic = f"must be a storage URI: {STORAGE_URI_HINT}" + ("" if prefix else ", or a local path without ':'")
    scheme, sep, rest = uri.partition("://")
    for char in uri:
        if char in "?#":
            return (
                f"{char!r} cannot be part of a storage URI: a URI's query and fragment start there, and "
                "storage would read only the path before it (write the name without it)"
            )
        if re.fullmatch(f"[{_CONTROL}]", char):
            return f"control character U+{ord(char):04X} cannot be part of a storage URI"
    if (sep and scheme not in ("s3", "file")) or (not sep and (prefix or ":" in uri)):
        return generic
    path = rest if sep else uri.removeprefix("/")  # a plain path's root
    if scheme == "s3":
        bucket, _, path = rest.partition("/")
        if not re.fullmatch(S3_BUCKET, bucket):
            return generic
    elif scheme == "file":
        head = re.match(r"(localhost)?/|\.\.?(/\.\.)*/", rest)
        if head is None:
            return generic
        path = rest[head.end() :]
    segments = path.removesuffix("/").split("/") if path else []
    if "" in segments:
        return "an empty path segment ('//') names different objects on s3:// (MinIO refuses it) and file://"
    if any(_DOT_SEGMENT.fullmatch(s) for s in segments):
        return (
            "a '.' or '..' path segment (or one of dots and spaces only) is refused: MinIO and minio-py refuse "
            "it in a key and a file system walks out of the prefix with it (write the path without it)"
        )
    return generic


def relative_problem(name: str) -> str | None:
    """Why `name` cannot be joined under a prefix as a relative name, else None: the rule's
    characters and segments (leading and trailing slashes are dropped by `join`)."""
    inner = name.strip("/")
    if not inner:
        return None
    if re.search(f"[?#{_CONTROL}]", inner):
        return storage_uri_problem(f"file:///{inner}") or "cannot be part of a storage URI"
    segments = inner.split("/")
    if "" in segments or any(_DOT_SEGMENT.fullmatch(s) for s in segments):
        return storage_uri_problem(f"file:///{inner}")
    return None


def join(uri: str, *parts: str) -> str:
    """`uri` with `parts` appended as path segments: one slash between each, none doubled, the
    root of `file:///` kept (`file:///` + `x` is `file:///x`). Raises ValueError for a part the
    rule refuses (`..`, `//`, `?`...): joined, it would name another object than it says."""
    names = [p.strip("/") for p in parts if p and p.strip("/")]
    for name in names:
        problem = relative_problem(name)
        if problem:
            raise ValueError(f"cannot join {name!r} under {uri}: {problem}")
    if not names:
        return uri
    scheme, sep, rest = uri.partition("://")
    if not sep:  # a plain local path
        return str(PurePosixPath(uri, *names))
    return f"{scheme}://{rest.rstrip('/')}/" + "/".join(names)
