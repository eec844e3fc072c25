"""The datagen stage's PNG writer (fpng): lossless, a standard PNG any reader decodes."""

from pathlib import Path

import numpy as np
import pytest
from mfpo_runtime.stages.datagen import write_png
from PIL import Image


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_png_is_lossless_and_standard(tmp_path: Path, mode: str):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd sizes: no row padding
    pixels[:, :20] = 90  # a flat part that compresses, beside noise that does not
    image = Image.fromarray(pixels).convert(mode)
    path = tmp_path / "out.png"
    write_png(image, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the PNG signature (RFC 2083, 3.1)
    with Image.open(path) as written:
        assert written.format == "PNG" and written.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(written), np.asarray(image.convert("RGB")))
