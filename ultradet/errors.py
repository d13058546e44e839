"""User errors and how command lines report them.

A :class:`UserError` is a problem with what the user handed in (a config file, a dataset, an
evaluation input, an unreachable tracking server): its message says what is wrong and where, so
a command line prints ``<prog>: <message>`` and exits 1 instead of showing a Python traceback.
Any other exception is a bug and keeps its traceback. ``ULTRADET_DEBUG=1`` in the environment
shows the traceback of user errors too.

This module imports nothing from the project, so every layer (``evaluation`` included, which
needs only numpy) can define its errors on it.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

DEBUG_ENV = "ULTRADET_DEBUG"


class UserError(Exception):
    """Base of the errors caused by the user's input; the message names the file, key, video or
    frame and what to do. Concrete errors also derive from the builtin they refine
    (``ValueError``, ``FileNotFoundError``, ...), so existing ``except`` clauses keep working."""


def debug_enabled() -> bool:
    """True when ``$ULTRADET_DEBUG`` is set to anything but ``""``, ``0``, ``false`` or ``no``."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_cli(main: Callable[[], int | None], prog: str) -> int:
    """Call ``main()`` and return its exit status; a :class:`UserError` becomes
    ``<prog>: <message>`` on stderr and status 1 (re-raised with its traceback under
    ``ULTRADET_DEBUG=1``). Other exceptions propagate unchanged.

    Use as ``sys.exit(run_cli(main, "train"))`` at the bottom of a script.
    """
    try:
        return main() or 0
    except UserError as exc:
        if debug_enabled():
            raise
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
