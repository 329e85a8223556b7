"""The one base class of errors a user can cause and fix; each CLI turns it into one line."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, a bad option or a missing file: the message names it and the fix.

    Every error class a user can trigger derives from this, so a command line catches
    exactly one class in one place; anything else is a bug and keeps its traceback.
    """
