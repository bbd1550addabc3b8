"""Slant: leaning writing is measured and sheared upright before the model reads it."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.model_input import prepare_crop
from pipeline.recognize import Recognizer
from pipeline.slant import MIN_SLANT, deslant, estimate_slant, shear
from tests.model_fixtures import MEMORISED, build_memorising_model, render_line


def leaning(line: np.ndarray, slant: float) -> np.ndarray:
    """The line written with its strokes leaning by `slant` (their tops that far forward)."""
    return shear(line, -slant)


@pytest.mark.parametrize("slant", [-0.3, 0.2, 0.45, 0.7])
def test_estimate_slant_measures_how_far_the_strokes_lean(slant):
    line = render_line("Manuscript lines lean forward, Hill 1794", height=48)
    assert abs(estimate_slant(line)) < 0.03
    # Rounded strokes read a little upright of their true lean; within 15 % of it.
    assert estimate_slant(leaning(line, slant)) == pytest.approx(slant, rel=0.15)


def test_deslant_leaves_upright_print_alone_and_stands_leaning_lines_up():
    line = render_line("TOTAL AMOUNT 12.50", height=48)
    underlined = line.copy()
    underlined[-6:-3, 8:-8] = 0  # a rule under the text leans nowhere
    for upright in (line, underlined):
        assert deslant(upright) is upright
    stood_up = deslant(leaning(line, 0.5))
    assert abs(estimate_slant(stood_up)) < MIN_SLANT
    # Sheared back and cut again, the line is about as wide as the upright one, not widened by
    # the lean's white corners.
    cut_upright, cut_stood = prepare_crop(line), prepare_crop(stood_up)
    assert abs(cut_stood.shape[1] - cut_upright.shape[1]) <= 0.15 * cut_upright.shape[1]


def test_blank_and_tiny_crops_pass_unchanged():
    blank = np.full((40, 200), 255, np.uint8)
    assert estimate_slant(blank) == 0.0 and deslant(blank) is blank
    assert estimate_slant(np.zeros((0, 0), np.uint8)) == 0.0


def test_a_leaning_line_reads_as_the_upright_one(tmp_path):
    reader = build_memorising_model(tmp_path / "reader")
    lines = [render_line(text) for text in MEMORISED]
    leaned = [leaning(line, 0.45) for line in lines]
    assert all(estimate_slant(x) > 0.3 for x in leaned)
    results = Recognizer(str(reader)).recognize(leaned)
    assert [r.text for r in results] == list(MEMORISED)
