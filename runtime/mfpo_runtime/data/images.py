"""The one image decoder of the runtime: bytes or a file -> an upright 8-bit RGB image.

Every stage that reads an image file calls `decode` (datagen's readers, the score and align
stages, the evaluation, the bootstrap), so the image the keywords are grounded on, the
noised m' and the image the model is given share one orientation and one colour conversion.

What it does, in order (docs/own-data.md says the same to users):

- **Limit.** An image of more than `MAX_IMAGE_PIXELS` pixels is refused before its pixels
  are decoded: Pillow checks the header against `PIL.Image.MAX_IMAGE_PIXELS` (set to ours while
  decoding) and warns above it, raises above twice it; the warning is made an error here.
- **Whole or nothing.** The pixels are decoded eagerly with `ImageFile.LOAD_TRUNCATED_IMAGES`
  forced off while decoding (whatever a library set it to): a truncated PNG, JPEG, GIF, TIFF
  or BMP raises instead of being filled with black.
- **Orientation.** The EXIF orientation tag is applied (`ImageOps.exif_transpose`), as
  transformers' `image_utils.load_image` and datasets' `Image` feature do before an image
  reaches a processor (the processors themselves never read EXIF).
- **RGB with correct scaling**, by mode:
  RGB as is; 1, L, P, CMYK, YCbCr, LAB, RGBX by Pillow's own conversion;
  anything with alpha (RGBA, LA, PA, RGBa, La, or a `transparency` key: P or L or RGB with a
  PNG tRNS chunk) composited over `BACKGROUND`: white, the default of vLLM's image loader
  (ImageMediaIO's rgba_background_color) and what a page shows behind a transparent picture
  (Pillow's plain convert drops alpha and shows whatever colour the transparent pixels store);
  I;16 / I;16L / I;16B / I;16N (16-bit) and I (32-bit integers: what Pillow makes of 16-bit
  data in some formats) as 16-bit values, v / 257 rounded (0 -> 0, 65535 -> 255), values
  outside 0..65535 clipped; F (32-bit float) as [0, 1] -> 0..255, clipped, NaN -> 0.
  Pillow's plain `convert("RGB")` clips I;16, I and F at 255 instead of scaling them.

Any failure is an `ImageDecodeError` naming what was read and Pillow's reason; callers turn it
into their bad-record or bad-input error. Pillow's exception classes are many (its own fuzz
tests, Tests/oss-fuzz/test_fuzzers.py, list OSError, SyntaxError, MemoryError, ValueError,
NotImplementedError, DecompressionBombError/Warning and UnidentifiedImageError as what
malformed files raise); `DECODE_ERRORS` is that list.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# 64 Mi pixels (8192 x 8192): a 48-megapixel photograph passes, a decompression bomb does not.
# Decoded to RGB that is 192 MiB, and the float pass of a 16-bit or float image twice that.
MAX_IMAGE_PIXELS = 8192 * 8192
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited over

DECODE_ERRORS = (
    OSError,  # UnidentifiedImageError, "image file is truncated", "broken data stream", ...
    SyntaxError,  # raised by several plugins for a malformed header or chunk
    ValueError,
    MemoryError,
    NotImplementedError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,  # made an error while decoding
)
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageDecodeError(ValueError):
    """An image that cannot be used; the message names it and says why."""


@contextmanager
def _strict_pillow() -> Iterator[None]:
    """Pillow's limits as this module documents them, for the duration of one decode.

    Scoped rather than set once at import: a library that sets LOAD_TRUNCATED_IMAGES for its
    own use still cannot make this decoder accept a truncated file, and is not changed for its
    own reads. Not thread-safe (Pillow's switches are module globals); stages decode on one thread.
    """
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = MAX_IMAGE_PIXELS, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def decode(source: bytes | Path | str, what: str) -> Image.Image:
    """The upright RGB image of `source` (encoded bytes, or a local file path).

    `what` names the image in the error (a record's image path, a URI). Raises ImageDecodeError.
    """
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with _strict_pillow():
        try:
            with Image.open(stream) as image:
                image.load()  # every pixel now, so truncation raises here
                ImageOps.exif_transpose(image, in_place=True)
                return to_rgb(image)
        except UnidentifiedImageError as err:  # Pillow's message holds the stream's repr (an address)
            raise ImageDecodeError(
                f"{what} is not an image Pillow can read ({_size_of(source)}, in no image "
                "format Pillow knows)"
            ) from err
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageDecodeError(f"{what} {_too_many_pixels(source)}") from err
        except DECODE_ERRORS as err:
            raise ImageDecodeError(f"{what} cannot be decoded: {type(err).__name__}: {_plain(err)}") from err


def _size_of(source: bytes | Path | str) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"{len(source)} bytes"
    return f"{Path(source).stat().st_size} bytes"


def _too_many_pixels(source: bytes | Path | str) -> str:
    """The decompression-bomb refusal in this module's words: Pillow's own message quotes its
    error threshold (twice the limit) even when the warning below it was what stopped the image.
    The size is read from the header again, with the limit off: no pixel is decoded."""
    limit = f"the limit of {MAX_IMAGE_PIXELS:,} pixels (8192 x 8192)"
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # Pillow's switch for no decompression-bomb check
    try:
        with Image.open(stream) as image:
            width, height = image.size
    except DECODE_ERRORS:
        return f"has more pixels than {limit} (a decompression-bomb guard)"
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return (
        f"is {width} x {height} = {width * height:,} pixels, more than {limit} "
        "(a decompression-bomb guard: its pixels are not decoded)"
    )


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _plain(err: BaseException) -> str:
    """An exception's message without object addresses ("<_io.BytesIO object at 0x7f...>"):
    messages are the same in every run."""
    return _ADDRESS.sub("", str(err))


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image of any Pillow mode, scaled as the module docstring says."""
    if image.mode in SIXTEEN_BIT_MODES:  # a 16-bit PNG's tRNS grey level is not applied
        return _gray(np.asarray(image).astype(np.float64) / 257.0)  # (H, W)
    if image.mode == "F":
        return _gray(np.asarray(image).astype(np.float64) * 255.0)  # (H, W)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _gray(values: np.ndarray) -> Image.Image:
    """(H, W) values on the 0..255 scale -> RGB (rounded, clipped; NaN -> 0)."""
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    levels = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(levels, mode="L").convert("RGB")
