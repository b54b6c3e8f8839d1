"""Turning whatever a user pasted into text a model can take, or a clear error.

Both runtimes call this before tokenising, so the same input is cleaned the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Beyond this the input is refused rather than truncated: nobody triages a megabyte in one case,
# and holding it would only cost memory in the worker.
MAX_INPUT_CHARS = 1_000_000

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Terminal colour and cursor sequences (coloured logs): removed whole, or their "[31m" would be
# left stuck to the next word once the ESC itself is replaced.
_ANSI = re.compile("\x1b\\[[0-9;?]*[ -/]*[@-~]")
# C0/C1 control characters except tab, newline and carriage return.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class InputError(ValueError):
    """The input cannot be processed; the message is meant for the user."""


@dataclass
class CleanText:
    text: str
    notices: list[str] = field(default_factory=list)


def clean(text: object) -> CleanText:
    """Validate and normalise input text.

    >>> clean("  Fan\\x00 speed  ").text
    'Fan  speed'
    >>> clean("   ")
    Traceback (most recent call last):
    ...
    pyapp.textinput.InputError: Text is empty: enter the text to triage.
    """
    if not isinstance(text, str):
        raise InputError(f"Text must be a string, got {type(text).__name__}.")
    if len(text) > MAX_INPUT_CHARS:
        raise InputError(
            f"Text is too large: {len(text):,} characters (limit {MAX_INPUT_CHARS:,})."
        )
    notices: list[str] = []
    cleaned, n_sur = _LONE_SURROGATE.subn("\ufffd", text)
    if n_sur:
        notices.append(f"Replaced {n_sur} invalid UTF-16 code unit(s) with U+FFFD.")
    cleaned, n_ansi = _ANSI.subn("", cleaned)
    if n_ansi:
        notices.append(f"Removed {n_ansi} terminal escape sequence(s).")
    cleaned, n_ctl = _CONTROL.subn(" ", cleaned)
    if n_ctl:
        notices.append(f"Replaced {n_ctl} control character(s) with spaces.")
    cleaned = cleaned.strip()
    if not cleaned:
        raise InputError("Text is empty: enter the text to triage.")
    if cleaned.count("\ufffd") > max(8, len(cleaned) // 4):
        raise InputError("Text looks like binary data (mostly undecodable characters).")
    return CleanText(cleaned, notices)


def prefix_for_tokens(text: str, max_tokens: int) -> str:
    """A prefix long enough to hold ``max_tokens`` tokens, so huge inputs are never tokenised whole.

    WordPiece and BPE tokens cover at most a word piece of ~100 characters, so 100 characters a
    token is a safe upper bound.
    """
    return text[: max_tokens * 100]
