"""Errors that name what is wrong with a user's input, each with a stable code.

Callers recognise them by type (``except InputError``) and report ``code`` (the server's error
event codes, the CLI's exit status 2), never by class name or message text.
"""

from __future__ import annotations

__all__ = ["BadAudio", "BadImage", "BadText", "InputError"]


class InputError(ValueError):
    """Bad user input (no face in the photo, unreadable audio, empty text, ...).

    The message names the problem in words a user can act on; callers show it without a traceback.
    """

    code: str = "bad_input"
    """Stable machine-readable kind of problem (the server's ``error`` event code)."""


class BadText(InputError):
    """Text to speak that cannot be spoken (empty, too long, not a string)."""

    code = "bad_text"


class BadImage(InputError):
    """A photo that cannot be used (unreadable, extreme, no face)."""

    code = "bad_image"


class BadAudio(InputError):
    """Audio that cannot be used (unreadable, malformed chunks, a wrong rate)."""

    code = "bad_audio"
