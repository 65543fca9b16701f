"""User-facing errors: what the ``parahydra`` command reports in one line (exit status 2),
and the argparse types of flags that every sub-command shares.

Raised by the sub-commands (``bag``, ``launch``, ``demo``, ``encode`` …) and caught only by
the command line's ``main``; a sub-command therefore never imports the CLI it is part of.
"""
from __future__ import annotations

import argparse


class UserError(Exception):
    """Bad input from the user (a file, a flag, a topic): reported in one line, exit status 2."""


def positive_int(text: str) -> int:
    """An argparse type: an integer ≥ 1 (``--max-pixels`` of ``decode`` and ``bag decompress``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value
