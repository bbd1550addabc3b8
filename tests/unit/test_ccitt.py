"""The fax run decoder behind the damage check: every row of a whole stream, any cut found."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.ccitt import Ending, fax_rows
from tests.unit.test_pdf_damage import tiff_strip


@pytest.mark.parametrize("compression, t4_options, k", [
    ("group4", None, -1),
    ("group3", 0, 0),  # one-dimensional rows
    ("group3", 1, 1100),  # mixed: the first row 1D, the rest 2D
    ("group3", 4, 0),  # EOLs byte-aligned
    ("group3", 5, 1100),
])
@pytest.mark.parametrize("width", [1, 850, 2600])  # 2600 px: runs past 2560 need two makeup codes
def test_fax_rows_are_counted_whole_and_short(compression, t4_options, k, width):
    """The run decoder behind the check reads every row of what libtiff writes (no good scan
    called damaged), and finds any cut inside the rows."""
    rng = np.random.default_rng(width)
    pixels = np.where(rng.random((60, width)) < 0.3, 0, 255).astype(np.uint8)
    pixels[10:20] = 255  # white rows
    pixels[30:35] = 0  # black rows
    data = tiff_strip(Image.fromarray(pixels).convert("1"), compression, t4_options)
    assert fax_rows(data, width, 60, k=k, end_of_line=k >= 0) == (60, Ending.ROWS)
    for cut in rng.integers(0, len(data) - 4, 8):
        rows, ending = fax_rows(data[:cut], width, 60, k=k, end_of_line=k >= 0)
        assert rows < 60 and ending == Ending.DATA_ENDS, (cut, len(data))
