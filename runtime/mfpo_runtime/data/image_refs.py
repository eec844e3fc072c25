"""Image references as records and benchmark questions write them -> the bytes they name.

The one reader of an image *value* (a string in a user's file, not a field of the manifest), for
datagen's formats (`data.formats`) and every benchmark (`eval.common`). A reference is:

- a `data:` URI (RFC 2397, `data:image/jpeg;base64,...`): how OpenAI-style chat data and vLLM's
  `image_url` inline an image. Parsed here (RFC 2397's grammar is one comma and a `;base64`
  flag) rather than by `urllib.request.DataHandler`, which decodes base64 leniently (it drops
  characters outside the alphabet, so a damaged payload would reach the image decoder as other
  bytes): the payload is percent-decoded (RFC 2397 section 3), ASCII white space dropped (line
  wrapping), then decoded strictly by `base64.b64decode(validate=True)`.
- a `file://` URI: its path percent-decoded. RFC 8089 section 2 takes a file URI's path from
  RFC 3986, where a space, a non-ASCII character, `%` itself... are percent-encoded (section 2.1);
  `pathlib.Path.as_uri()` and `urllib.request.pathname2url` write them so
  (`file:///a/grace%20hopper.jpg`); `urllib.parse.unquote` (UTF-8, as RFC 3986 section 2.5
  says new URIs encode) reverses it. The decoded path is held to the storage rule
  (`mfpo_core.uris`: no `?`, `#`, control character, empty or dot segment) like any URI.
- an `s3://` URI: as written. minio-py percent-encodes an object name itself
  (`minio.helpers.BaseURL.build`: `quote(object_name)`), so the key is the text of the URI, `%`
  included, as the AWS CLI reads `s3://` URIs and `storage` reads every `s3://` URI.
- any other text: a path, absolute, or relative to `base` (the data file's directory, a
  benchmark's images directory).

Manifest URIs (`spec.data.uri`, ...) are not image values: `storage` reads them literally on
both backends (`mfpo_core.uris`), so that a URI `join` builds from a record id names that id.

`quoted` cuts a user's value for a message: a base64 image pasted into a path field is
hundreds of kilobytes, and a message quotes it at most once, cut.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

from mfpo_core import storage, uris

# Linux's PATH_MAX (limits.h): no path a file system opens is longer; an S3 key is at most
# 1,024 bytes (docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html).
LONGEST_PATH = 4096
# The encoded magic bytes of PNG, JPEG, GIF and WebP: how inline base64 image data starts.
BASE64_IMAGE_PREFIXES = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR")
SHOWN_CHARACTERS = 160  # a long path or s3:// URI whole; a pasted payload cut


def quoted(value: str, limit: int = SHOWN_CHARACTERS) -> str:
    """`repr(value)`, cut to its first `limit` characters with the total length when longer."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


class ImageRefError(ValueError):
    """A reference that names no readable image; the message quotes it cut (`quoted`)."""


@dataclass(frozen=True)
class Resolved:
    """Where a reference's bytes are: `uri` (a storage URI or path) or `inline` (decoded)."""

    uri: str | None = None
    inline: bytes | None = None
    media_type: str = ""  # of a data: URI

    def name(self) -> str:
        """The URI, or the inline data's size and media type (never the data itself)."""
        if self.uri is not None:
            return self.uri
        kind = f" ({self.media_type})" if self.media_type else ""
        return f"inline image data of {len(self.inline or b''):,} bytes{kind}"


def resolve(reference: str, base: str, *, bare_base64: bool = False) -> Resolved:
    """Where `reference` points, without reading a file (a data: URI is decoded: its bytes are
    in the reference). `bare_base64`: base64 image data with no `data:` head is accepted
    (Object HalBench's questions file inlines images so). Raises ImageRefError."""
    if reference.startswith("data:"):
        return _data_uri(reference)
    if bare_base64 and reference.startswith(BASE64_IMAGE_PREFIXES):
        return Resolved(inline=_base64(reference, reference))
    if len(reference.encode("utf-8", "surrogatepass")) > LONGEST_PATH:
        hint = ""
        if reference.startswith(BASE64_IMAGE_PREFIXES):
            hint = " (it looks like base64 image data: write it as a data:image/...;base64,<data> URI)"
        raise ImageRefError(
            f"image {quoted(reference)} is longer than any path ({LONGEST_PATH:,} bytes, Linux's "
            f"PATH_MAX) or S3 key (1,024 bytes){hint}"
        )
    if reference.startswith("file://"):
        return Resolved(uri=_file_uri(reference))
    if "://" in reference or reference.startswith("/"):
        return Resolved(uri=reference)
    try:
        return Resolved(uri=storage.join(base, reference))
    except (ValueError, storage.StorageError) as err:  # a '..', '//', '?'... the storage rule refuses
        problem = uris.relative_problem(reference) or _reason(err)
        raise ImageRefError(f"image {quoted(reference)} cannot name a file under {base}: {problem}") from err


def read(reference: str, base: str, *, bare_base64: bool = False) -> tuple[bytes, Resolved]:
    """(the bytes `reference` names, where they were: `Resolved.uri` read, or inline data).
    Raises ImageRefError."""
    found = resolve(reference, base, bare_base64=bare_base64)
    if found.inline is not None:
        return found.inline, found
    try:
        return storage.read_bytes(found.uri), found
    except (storage.StorageError, OSError, ValueError) as err:  # ValueError: a path no file can have
        raise ImageRefError(f"cannot read image {quoted(found.uri)}: {_reason(err)}") from err


def exists(found: Resolved, listed: set[str] | None = None) -> bool:
    """Whether `found` names an object, without reading it: inline data always; a URI in
    `listed` (the URIs of a directory listed once: one request for thousands of images), else
    asked of storage."""
    if found.inline is not None:
        return True
    if listed is not None and found.uri in listed:
        return True
    return storage.exists(found.uri)


def _data_uri(reference: str) -> Resolved:
    head, comma, payload = reference[len("data:") :].partition(",")
    if not comma:
        raise ImageRefError(f"image {quoted(reference)} is a data: URI without the ',' before its data (RFC 2397)")
    parameters = head.split(";")
    media_type = parameters[0].strip().lower()
    if parameters[-1].strip().lower() == "base64":
        return Resolved(inline=_base64(unquote(payload), reference), media_type=media_type)
    return Resolved(inline=unquote_to_bytes(payload), media_type=media_type)


_ASCII_WHITE_SPACE = re.compile(r"[ \t\r\n\f]+")


def _base64(data: str, reference: str) -> bytes:
    try:
        return base64.b64decode(_ASCII_WHITE_SPACE.sub("", data), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageRefError(f"image {quoted(reference)} holds data that is not base64: {err}") from err


def _file_uri(reference: str) -> str:
    """A file:// URI with its path percent-decoded (RFC 8089 / RFC 3986 section 2.1), checked
    against the storage rule after decoding: a '%2F..' must not walk out of a directory."""
    try:
        decoded = unquote(reference, errors="strict") if "%" in reference else reference
    except UnicodeDecodeError as err:
        raise ImageRefError(f"image {quoted(reference)} percent-encodes bytes that are not UTF-8: {err.reason}") from err
    problem = uris.storage_uri_problem(decoded)
    if problem:
        shown = quoted(reference) + (f" (decoded: {quoted(decoded)})" if decoded != reference else "")
        raise ImageRefError(f"image {shown} is not a file URI storage can read: {problem}")
    return decoded


def _reason(err: BaseException) -> str:
    """An error's message with any very long value in it cut (storage quotes the URI it read)."""
    text = str(err)
    return text if len(text) <= 4 * SHOWN_CHARACTERS else f"{text[: 4 * SHOWN_CHARACTERS]}... ({len(text):,} characters)"
