"""The datagen stage's PNG writer (fpng): lossless, a standard PNG any reader decodes."""

import platform
import subprocess
import sys
import textwrap
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


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_stops_refaulting_the_per_record_arrays():
    # In a child process: mallopt changes the whole process. glibc's default trims the heap
    # when a large block is freed (M_TRIM_THRESHOLD, mallopt(3)), so arrays of the size of a
    # 336 px image, allocated and freed in turn, page-fault their memory back each time.
    script = textwrap.dedent(
        """
        import resource, numpy as np
        from mfpo_runtime.stages.datagen import keep_freed_memory

        def faults():
            (np.ones(400_000, np.float32), np.ones(300_000, np.float32))  # warm-up
            start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(20):
                (np.ones(400_000, np.float32), np.ones(300_000, np.float32))
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

        before = faults()
        assert keep_freed_memory()
        print(before, faults())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    assert before > 20 * 20  # faulted in again every round (fewer faults with huge pages)
    assert after < 20  # reused
