"""Errors that name what is wrong with a user's input."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input (no face in the photo, unreadable audio, empty text, ...).

    The message names the problem in words a user can act on; callers show it without a traceback.
    """
