"""The numeric option checkers shared by the sub-commands."""

import argparse

import pytest

from faceswap_pl.argtypes import number


def test_ranges_and_messages():
    assert number(int, 0)("0") == 0 and number(float, above=0)("1e-4") == pytest.approx(1e-4)
    assert number(int, 9, 20)("20") == 20
    cases = [(number(int, 0), "-1", "'-1' is not a whole number >= 0"),
             (number(int, 1), "x", "'x' is not a whole number"),
             (number(float, -1, 1), "nan?", "'nan?' is not a number"),
             (number(float, above=0), "0", "'0' is not a number > 0"),
             (number(int, 9, 20), "21", "'21' is not a whole number >= 9 and <= 20"),
             (number(int, 1, problem="shows no runs"), "0", "0 shows no runs")]
    for check, text, message in cases:
        with pytest.raises(argparse.ArgumentTypeError) as caught:
            check(text)
        assert str(caught.value) == message
