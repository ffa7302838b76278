"""``type=`` checkers for numeric command-line options: a range and one clear message each."""

from __future__ import annotations

import argparse
from typing import Callable


def number(kind: type = int, low: float | None = None, high: float | None = None, *, above: float | None = None,
           problem: str | None = None) -> Callable[[str], float]:
    """A checker that parses ``kind`` (int or float) within ``low <= value <= high`` and ``value > above``.

    The message for a value out of range is ``"<text> <problem>"`` when ``problem`` is given (e.g. ``"shows no
    runs; pass 1 or more"``), else it states the range.
    """
    what = "a whole number" if kind is int else "a number"
    bounds = " and ".join(part for part in (
        f">= {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else "",
        f"> {above:g}" if above is not None else "") if part)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if (low is not None and value < low) or (high is not None and value > high) \
                or (above is not None and not value > above):
            raise argparse.ArgumentTypeError(f"{text} {problem}" if problem else f"{text!r} is not {what} {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse
