"""The one image decoder (`mfpo_runtime.data.images`) held to Pillow's documented modes and errors,
the PNG and EXIF specifications, and transformers' own image loading.

Expected pixels are computed here with numpy from the values written into the file, never by
asking Pillow to convert them.
"""

import importlib
import io
import pkgutil
import zlib

import mfpo_runtime
import numpy as np
import pytest
from image_files import (
    GRAY,
    GRAY_ALPHA,
    PALETTE,
    RGB,
    RGBA,
    encoded,
    exif_orientation,
    huge_png_header,
    noise_rgb,
    png,
    png_chunk,
)
from mfpo_runtime.data import images
from mfpo_runtime.data.images import ImageDecodeError, decode
from PIL import Image, ImageFile

WHITE = 255


def _rgb(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def _gray3(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2).astype(int)


def _over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Porter-Duff 'over' on an opaque white background, 8-bit: c*a + 255*(1-a)."""
    a = alpha.astype(float)[..., None] / 255.0
    return np.rint(colour.astype(float) * a + WHITE * (1.0 - a)).astype(int)


# ------------------------------------------------------------------ modes, by the PNG spec


def test_16_bit_grey_png_is_scaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535], [1000, 40000, 65280, 128]], dtype=np.uint16)
    image = decode(png(values, GRAY, bit_depth=16), "grey16.png")
    # 16-bit to 8-bit: v * 255 / 65535 = v / 257 (PNG spec 13.12, "sample depth rescaling")
    np.testing.assert_array_equal(_rgb(image), _gray3(np.rint(values / 257.0)))


def test_one_bit_and_8_bit_grey():
    bits = np.array([[0, 1, 1, 0, 1, 0, 0, 1, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(_rgb(decode(png(bits, GRAY, bit_depth=1), "1.png")), _gray3(bits * 255))
    grey = np.arange(0, 256, 5, dtype=np.uint8).reshape(2, -1)[:, :20]
    np.testing.assert_array_equal(_rgb(decode(png(grey, GRAY), "l.png")), _gray3(grey))


def test_palette_with_partial_transparency_is_composited_on_white():
    palette = [(255, 0, 0), (0, 0, 255), (0, 128, 0), (10, 20, 30)]
    alphas = bytes([255, 0, 128])  # tRNS: entries past its end are opaque (spec 11.3.2.1)
    indices = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    image = decode(png(indices, PALETTE, palette=palette, trns=alphas), "p.png")
    colours = np.array(palette)[indices]
    alpha = np.array([*alphas, 255])[indices]
    np.testing.assert_allclose(_rgb(image), _over_white(colours, alpha), atol=1)
    assert _rgb(image)[0, 1].tolist() == [255, 255, 255]  # fully transparent blue: background


def test_palette_without_transparency_is_the_palette():
    palette = [(1, 2, 3), (200, 100, 50)]
    indices = np.array([[0, 1, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(
        _rgb(decode(png(indices, PALETTE, palette=palette), "p.png")), np.array(palette)[indices]
    )


def test_grey_and_rgb_with_a_trns_colour_key():
    grey = np.array([[10, 20, 10]], dtype=np.uint8)
    image = decode(png(grey, GRAY, trns=b"\x00\x0a"), "l-trns.png")  # grey 10 is transparent
    assert _rgb(image).tolist() == [[[255] * 3, [20] * 3, [255] * 3]]
    rgb = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    image = decode(png(rgb, RGB, trns=b"\x00\x01\x00\x02\x00\x03"), "rgb-trns.png")
    assert _rgb(image).tolist() == [[[255] * 3, [4, 5, 6]]]


def test_grey_alpha_and_rgba_are_composited_on_white():
    rng = np.random.default_rng(1)
    la = rng.integers(0, 256, (6, 7, 2), dtype=np.uint8)
    image = decode(png(la, GRAY_ALPHA), "la.png")
    np.testing.assert_allclose(_rgb(image), _over_white(_gray3(la[..., 0]), la[..., 1]), atol=1)
    rgba = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    image = decode(png(rgba, RGBA), "rgba.png")
    np.testing.assert_allclose(_rgb(image), _over_white(rgba[..., :3], rgba[..., 3]), atol=1)


def test_48_bit_rgb_png_keeps_the_high_bits():
    values = np.array([[[0, 65535, 32896], [257, 51400, 1000]]], dtype=np.uint16)
    image = decode(png(values, RGB, bit_depth=16), "rgb48.png")
    np.testing.assert_allclose(_rgb(image), np.rint(values / 257.0), atol=1)


# ------------------------------------------------------------------ modes from TIFF and JPEG


def test_32_bit_integer_tiff_is_read_as_16_bit_values_clipped():
    values = np.array([[0, 257, 65535, 70000, -5, 32896]], dtype=np.int32)
    tiff = Image.fromarray(values)
    assert tiff.mode == "I"
    image = decode(encoded(tiff, "TIFF"), "i.tiff")
    expected = np.clip(np.rint(values / 257.0), 0, 255)
    np.testing.assert_array_equal(_rgb(image), _gray3(expected))


def test_big_endian_16_bit_tiff():
    values = np.array([[0, 257, 65535, 12345]], dtype=">u2")
    tiff = Image.fromarray(values)
    assert tiff.mode == "I;16B"
    with Image.open(io.BytesIO(encoded(tiff, "TIFF"))) as reopened:
        assert reopened.mode == "I;16B"
    image = decode(encoded(tiff, "TIFF"), "i16b.tiff")
    np.testing.assert_array_equal(_rgb(image), _gray3(np.rint(values.astype(float) / 257.0)))


def test_float_tiff_is_the_unit_interval():
    values = np.array([[0.0, 0.25, 1.0, 2.0, -1.0, np.nan, 0.8]], dtype=np.float32)
    tiff = Image.fromarray(values)
    assert tiff.mode == "F"
    image = decode(encoded(tiff, "TIFF"), "f.tiff")
    expected = [0, 64, 255, 255, 0, 0, 204]  # 0.25 * 255 = 63.75, 0.8 * 255 = 204
    assert _rgb(image)[0, :, 0].tolist() == expected


def test_cmyk_tiff_and_adobe_cmyk_jpeg():
    cmyk = np.zeros((16, 32, 4), dtype=np.uint8)
    cmyk[:, :8] = (255, 0, 0, 0)  # cyan
    cmyk[:, 8:16] = (0, 0, 0, 128)  # half black
    cmyk[:, 16:24] = (0, 255, 255, 0)  # red
    cmyk[:, 24:] = (40, 80, 120, 60)
    source = Image.fromarray(cmyk, mode="CMYK")
    # The subtractive model without a profile: R = 255 * (1 - C/255) * (1 - K/255), etc.
    c, k = cmyk[..., :3].astype(float), cmyk[..., 3:].astype(float)
    expected = np.rint((255 - c) * (255 - k) / 255)
    tiff = decode(encoded(source, "TIFF"), "cmyk.tiff")
    np.testing.assert_allclose(_rgb(tiff), expected, atol=1)
    jpeg_bytes = encoded(source, "JPEG", quality=95)
    with Image.open(io.BytesIO(jpeg_bytes)) as reopened:
        assert reopened.mode == "CMYK"  # Pillow writes Adobe (inverted) CMYK and reads it back
    jpeg = decode(jpeg_bytes, "cmyk.jpg")
    np.testing.assert_allclose(_rgb(jpeg)[4:12, 2:6], expected[4:12, 2:6], atol=6)
    np.testing.assert_allclose(_rgb(jpeg)[4:12, 26:30], expected[4:12, 26:30], atol=6)


def test_lab_tiff_grey_matches_cie_lab_to_srgb():
    lightness = np.array([0, 50, 128, 200, 255], dtype=np.uint8)  # Pillow's L: L* * 255 / 100
    lab = np.zeros((1, 5, 3), dtype=np.uint8)
    lab[..., 0] = lightness  # a* = b* = 0 (TIFF CIELab: signed bytes): a neutral grey
    image = decode(encoded(Image.fromarray(lab, mode="LAB"), "TIFF"), "lab.tiff")
    # CIE L* -> Y (CIE 15), Y -> sRGB (IEC 61966-2-1)
    l_star = lightness / 255.0 * 100.0
    fy = (l_star + 16) / 116
    y = np.where(fy > 6 / 29, fy**3, 3 * (6 / 29) ** 2 * (fy - 4 / 29))
    srgb = np.where(y <= 0.0031308, 12.92 * y, 1.055 * y ** (1 / 2.4) - 0.055)
    np.testing.assert_allclose(_rgb(image)[0, :, 0], np.rint(srgb * 255), atol=2)


def test_ycbcr_tiff_matches_jfif():
    ycc = np.array([[[128, 128, 128], [76, 85, 255], [150, 44, 21]]], dtype=np.uint8)
    image = decode(encoded(Image.fromarray(ycc, mode="YCbCr"), "TIFF"), "ycc.tiff")
    y, cb, cr = (ycc[..., i].astype(float) for i in range(3))
    # JFIF 1.02 (ITU-T T.871) full-range YCbCr -> RGB
    expected = np.stack(
        [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)],
        axis=-1,
    )
    np.testing.assert_allclose(_rgb(image), np.clip(np.rint(expected), 0, 255), atol=1)


def test_in_memory_modes_with_premultiplied_or_palette_alpha():
    pa = Image.new("PA", (2, 1))
    pa.putpalette([255, 0, 0, 0, 0, 255])
    pa.putpixel((0, 0), (0, 255))
    pa.putpixel((1, 0), (1, 0))
    assert _rgb(images.to_rgb(pa)).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_rgb_jpeg_is_decoded_as_is():
    pixels = noise_rgb(3)
    jpeg = encoded(Image.fromarray(pixels), "JPEG", quality=90)
    with Image.open(io.BytesIO(jpeg)) as plain:
        expected = np.asarray(plain.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(decode(jpeg, "x.jpg")), expected)


# ------------------------------------------------------------------ EXIF orientation


# CIPA DC-008 (Exif 2.32), tag 0x0112: where the stored 0th row and 0th column are shown.
# 1: row top, column left; 2: top, right; 3: bottom, right; 4: bottom, left;
# 5: row left, column top; 6: row right, column top; 7: row right, column bottom; 8: row left, column bottom.
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1, :],
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_the_exif_spec_defines(orientation):
    stored = noise_rgb(orientation, size=(5, 3))  # non-square: rotations change the size
    image = decode(png(stored, RGB, exif=exif_orientation(orientation)), f"o{orientation}.png")
    np.testing.assert_array_equal(np.asarray(image), DISPLAYED[orientation](stored))


def test_orientation_matches_what_transformers_load_image_gives_the_model(tmp_path):
    from transformers.image_utils import load_image

    stored = noise_rgb(11, size=(6, 4))
    for orientation in (3, 6, 8):
        path = tmp_path / f"o{orientation}.png"
        path.write_bytes(png(stored, RGB, exif=exif_orientation(orientation)))
        np.testing.assert_array_equal(np.asarray(decode(path, "o.png")), np.asarray(load_image(str(path))))


def test_exif_orientation_of_a_jpeg():
    stored = np.zeros((32, 48, 3), dtype=np.uint8)
    stored[:16, :16] = (255, 0, 0)  # a red block at the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    image = np.asarray(decode(encoded(Image.fromarray(stored), "JPEG", exif=exif, quality=95), "6.jpg"))
    assert image.shape == (48, 32, 3)  # rotated: the 0th row is shown on the right
    assert image[4:12, -12:-4, 0].min() > 200 and image[4:12, 4:12, 0].max() < 50


# ------------------------------------------------------------------ what cannot be decoded


def _formats():
    source = Image.fromarray(noise_rgb(5, size=(64, 64)))
    return {
        "png": encoded(source, "PNG"),
        "jpeg": encoded(source, "JPEG", quality=90),
        "progressive jpeg": encoded(source, "JPEG", quality=90, progressive=True),
        "gif": encoded(source, "GIF"),
        "tiff": encoded(source, "TIFF"),
        "bmp": encoded(source, "BMP"),
        "webp": encoded(source, "WEBP"),
    }


@pytest.mark.parametrize("kind", sorted(_formats()))
def test_a_truncated_file_is_refused_not_filled_with_black(kind):
    data = _formats()[kind]
    assert np.asarray(decode(data, kind)).shape == (64, 64, 3)
    with pytest.raises(ImageDecodeError, match=f"half.{kind}"):
        decode(data[: len(data) // 2], f"half.{kind}")


def test_truncated_is_refused_even_when_a_library_allows_truncated_images(monkeypatch):
    data = _formats()["png"]
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with Image.open(io.BytesIO(data[: len(data) // 2])) as lenient:
        lenient.load()  # what Pillow does with the switch on: the missing rows are black
        assert not np.asarray(lenient)[-1].any()
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode(data[: len(data) // 2], "half.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the library's own setting is left alone


def _two_idat_png_with_a_broken_second_chunk() -> bytes:
    rows = b"".join(b"\x00" + bytes([i] * 64) for i in range(64))
    data = zlib.compress(rows)
    ihdr = png_chunk(b"IHDR", bytes.fromhex("00000040 00000040 08 00 00 00 00".replace(" ", "")))
    second = len(data[20:]).to_bytes(4, "big") + b"\x01\x02\x03\x04" + data[20:] + bytes(4)
    return b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", data[:20]) + second + png_chunk(b"IEND", b"")


def _text_bomb_png() -> bytes:  # a zTXt chunk inflating past PngImagePlugin.MAX_TEXT_CHUNK
    ztxt = png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(bytes(2 << 20)))
    good = png(np.zeros((1, 2), dtype=np.uint8), GRAY)
    return good[:33] + ztxt + good[33:]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "UnidentifiedImageError|not an image"),
        (b"GIF89a not really", "cannot be decoded|not an image"),
        (b"<html>404</html>", "not an image"),
        (_two_idat_png_with_a_broken_second_chunk(), "SyntaxError: broken PNG file"),
        (_text_bomb_png(), "ValueError: Decompressed data too large"),
    ],
    ids=["empty", "gif-header-only", "html", "broken-chunk", "text-bomb"],
)
def test_each_class_pillow_raises_becomes_a_named_decode_error(data, error):
    with pytest.raises(ImageDecodeError, match=error) as raised:
        decode(data, "images/0042.png")
    assert "images/0042.png" in str(raised.value)
    # The same message every time: Pillow's own names the stream by its repr, an address
    # ("cannot identify image file <_io.BytesIO object at 0x7fcc...>").
    with pytest.raises(ImageDecodeError) as again:
        decode(bytes(data), "images/0042.png")
    assert str(again.value) == str(raised.value) and " at 0x" not in str(raised.value)


@pytest.mark.parametrize(
    "size",
    [
        (8193, 8192),  # just over our limit, under Pillow's own: its warning, made an error
        (9000, 9000),  # over Pillow's default warning limit (89 Mpx)
        (20000, 20000),  # over twice our limit: Pillow's DecompressionBombError
    ],
)
def test_images_over_the_pixel_limit_are_refused_before_decoding(size):
    """The message states the documented limit and the image's size, whichever of Pillow's two
    guards stopped it (Pillow's own DecompressionBombError quotes twice the limit)."""
    with pytest.raises(ImageDecodeError, match="decompression-bomb") as raised:
        decode(huge_png_header(*size), "bomb.png")
    width, height = size
    assert f"bomb.png is {width} x {height} = {width * height:,} pixels" in str(raised.value)
    assert "the limit of 67,108,864 pixels (8192 x 8192)" in str(raised.value)
    assert f"{2 * images.MAX_IMAGE_PIXELS}" not in str(raised.value)
    assert Image.MAX_IMAGE_PIXELS == 89478485  # Pillow's own default is back after the decode


def test_the_limit_is_the_documented_one():
    from pathlib import Path

    assert images.MAX_IMAGE_PIXELS == 8192 * 8192
    doc = (Path(__file__).parents[3] / "docs" / "own-data.md").read_text()
    assert "67,108,864" in doc and "8192 x 8192" in doc


def test_no_module_of_the_runtime_or_its_image_libraries_allows_truncated_images():
    """Importing every runtime module (and the libraries they bring: transformers' image
    processors, datasets) leaves Pillow's switches at their defaults."""
    for module in pkgutil.walk_packages(mfpo_runtime.__path__, "mfpo_runtime."):
        importlib.import_module(module.name)
    for name in (
        "transformers.image_utils",
        "transformers.models.llava.image_processing_pil_llava",
        "transformers.models.llava_next.image_processing_pil_llava_next",
        "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl",
        "datasets",
    ):
        importlib.import_module(name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == 89478485
