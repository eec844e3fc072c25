"""Image values as other tools write them (hostile-user report, docs/own-data.md): data: URIs
(RFC 2397), percent-encoded file URIs (RFC 8089, what `pathlib.Path.as_uri()` writes), s3://
keys taken as written (minio-py quotes the key itself), and messages that quote a value cut."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from datagen_samples import png_bytes
from mfpo_core import storage
from mfpo_runtime.data import formats
from mfpo_runtime.data.formats import BadRecord, Sample, iter_samples

JPEG_LIKE = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(300_000)).decode()  # "/9j/...", 400 KB: no image


def _rows(path: Path, images: list, fmt: str = "jsonl") -> Path:
    rows = [{"id": f"r{i}", "image": image, "question": "What is this?", "chosen": f"A cat {i}.", "rejected": "A dog."}
            for i, image in enumerate(images)]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pixels(sample: Sample) -> np.ndarray:
    return np.asarray(sample.image)


@pytest.mark.parametrize("fmt, data_format", [("jsonl", "rlaif-v"), ("json", "llava")])
def test_a_data_uri_image_is_decoded_in_every_format(tmp_path: Path, fmt: str, data_format: str):
    """Before: 'cannot join data:image/png;base64,... under ...', raised past onBadRecord (the
    stage failed, naming no record) with the whole payload in the message."""
    encoded = base64.b64encode(png_bytes(1)).decode()
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))  # MIME line wrapping
    images = [f"data:image/png;base64,{encoded}", f"data:image/png;base64,{wrapped}",
              f"data:image/png;base64,{encoded.replace('+', '%2B').replace('/', '%2F')}"]  # RFC 2397: URL-encoded
    path = _rows(tmp_path / f"d.{fmt}", images, fmt)
    samples = list(iter_samples(str(path), data_format))
    assert all(isinstance(s, Sample) for s in samples), samples
    expected = np.asarray(formats.decode_image(png_bytes(1), "x"))
    for sample in samples:
        np.testing.assert_array_equal(_pixels(sample), expected)
    # Where the image came from: the record's own place, never the payload.
    place = "line" if fmt == "jsonl" else "item"
    assert samples[0].image_source.startswith(str(path)) and place in samples[0].image_source


def test_an_unusable_data_uri_or_base64_path_is_one_bad_record_with_a_short_message(tmp_path: Path):
    path = _rows(tmp_path / "d.jsonl", [
        f"data:image/jpeg;base64,{JPEG_LIKE}",  # decodes, is not an image
        f"data:image/jpeg;base64,{JPEG_LIKE[:1000]}!!{JPEG_LIKE[1000:]}",  # not base64
        JPEG_LIKE,  # bare base64 in a path field (report: a 625 KB warning line)
        "data:image/png;base64" + JPEG_LIKE,  # no comma
        "images/ok.png",
    ])  # fmt: skip
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ok.png").write_bytes(png_bytes(0))
    items = list(iter_samples(str(path), "rlaif-v"))
    assert [type(i) for i in items] == [BadRecord] * 4 + [Sample]
    messages = [i.describe() for i in items[:4]]
    assert all(len(m) < 700 for m in messages), [len(m) for m in messages]
    assert all(f"{path} line {n + 1}" in m for n, m in enumerate(messages))  # each names its record
    assert "inline image data of 300,004 bytes (image/jpeg) is not an image Pillow can read" in messages[0]
    assert "is not base64" in messages[1] and f"({len('data:image/jpeg;base64,') + len(JPEG_LIKE) + 2:,} characters)" in messages[1]
    assert "longer than any path" in messages[2] and "write it as a data:image/...;base64,<data> URI" in messages[2]
    assert "without the ',' before its data (RFC 2397)" in messages[3]


def test_a_file_uri_as_pathlib_writes_it_is_read(tmp_path: Path):
    """pathlib.Path.as_uri() percent-encodes a space, an en dash, an emoji (RFC 8089 with RFC
    3986's encoding); before, the encoded path was looked up literally: 'no such object'."""
    name = "grace hopper – é 日本 🖼 100%.png"
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / name).write_bytes(png_bytes(2))
    uri = (tmp_path / "images" / name).as_uri()
    assert "%20" in uri and "%E2%80%93" in uri and "%25" in uri  # the reference's encoding, not ours
    path = _rows(tmp_path / "d.jsonl", [uri, f"file://{tmp_path}/images/{name}"])  # encoded, and raw
    samples = list(iter_samples(str(path), "rlaif-v"))
    assert all(isinstance(s, Sample) for s in samples), samples
    assert samples[0].image_source == f"file://{tmp_path}/images/{name}"  # the decoded URI read
    np.testing.assert_array_equal(_pixels(samples[0]), np.asarray(formats.decode_image(png_bytes(2), "x")))


def test_a_decoded_file_uri_is_held_to_the_storage_rule(tmp_path: Path):
    """'%2F..' decodes to a '..' segment: refused like a written one (mfpo_core.uris)."""
    (tmp_path / "secret.png").write_bytes(png_bytes(0))
    (tmp_path / "d").mkdir()
    path = _rows(tmp_path / "d" / "d.jsonl", [f"file://{tmp_path}/d%2F..%2Fsecret.png", f"file://{tmp_path}/%FF.png"])
    first, second = iter_samples(str(path), "rlaif-v")
    assert isinstance(first, BadRecord) and "a '.' or '..' path segment" in first.reason
    assert f"(decoded: 'file://{tmp_path}/d/../secret.png')" in first.reason
    assert isinstance(second, BadRecord) and "percent-encodes bytes that are not UTF-8" in second.reason


def test_a_relative_image_path_that_leaves_the_data_directory_is_a_bad_record(tmp_path: Path):
    """Before: storage.join's ValueError escaped the reader and failed the stage, naming no record."""
    path = _rows(tmp_path / "d" / "d.jsonl", ["../x.png"])
    (item,) = iter_samples(str(path), "rlaif-v")
    assert isinstance(item, BadRecord) and "'../x.png' cannot name a file under" in item.reason


def test_an_s3_key_is_taken_as_written_not_percent_decoded(tmp_path: Path, s3_bucket: str):
    """minio-py percent-encodes an object name itself (minio.helpers.BaseURL.build), so the
    key `a%20b.png` is that key (as the AWS CLI reads s3://b/a%20b.png), and `a b.png` another."""
    from minio import Minio

    storage.write_bytes(png_bytes(3), f"s3://{s3_bucket}/imgs/a%20b.png")
    client = Minio(storage_endpoint(), access_key="datagen-test", secret_key="datagen-test-secret", secure=False)
    assert [o.object_name for o in client.list_objects(s3_bucket, prefix="imgs/")] == ["imgs/a%20b.png"]
    path = _rows(tmp_path / "d.jsonl", [f"s3://{s3_bucket}/imgs/a%20b.png", f"s3://{s3_bucket}/imgs/a b.png"])
    found, missing = iter_samples(str(path), "rlaif-v")
    assert isinstance(found, Sample) and found.image_source == f"s3://{s3_bucket}/imgs/a%20b.png"
    assert isinstance(missing, BadRecord) and "no such object" in missing.reason


def storage_endpoint() -> str:
    import os

    return os.environ["MFPO_S3_ENDPOINT"]


def test_quoted_cuts_a_long_value_and_gives_its_length():
    from mfpo_runtime.data import image_refs

    assert image_refs.quoted("abc") == "'abc'"
    assert image_refs.quoted("x" * 200) == f"{'x' * 160!r}... (200 characters)"
