"""User-facing errors: what the ``parahydra`` command reports in one line (exit status 2).

Raised by the sub-commands (``bag``, ``launch``, ``demo``, ``encode`` …) and caught only by
the command line's ``main``; a sub-command therefore never imports the CLI it is part of.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a file, a flag, a topic): reported in one line, exit status 2."""
