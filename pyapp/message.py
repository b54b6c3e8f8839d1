r"""The message of a log or telemetry line: the line without its header, as an extractive summary.

telemetry-extract's ``summary`` comes from here, not from the language model: read line by line
(README "Extraction"), SmolLM2-135M's own summaries were about their line in few of 40 dev lines
(hallucinated causes, copied instructions, bare numbers), while the line's own words are right by
construction. What is removed is only a *leading* header, token by token, while each token is one
a log writer puts before its message: a timestamp, date or number (no letters), a bracketed group
(``[Sun Dec 04 06:12:37 2005]``, ``[notice]``), a level word (``INFO``, ``Info``, Android's ``D``),
a month or weekday name before a number, and the host after a syslog time. What is left is a
contiguous part of the line, so the summary never says what the line does not; a line that is
nothing but header keeps all of it. Longer than ``limit`` characters: cut at a word, with "…".
The record's grammar allows no escapes in a string with a length limit (xgrammar writes such a
string as ``[^"\\\r\n]{0,160}``), so ``"`` and ``\`` become ``'`` and ``/``.
"""

from __future__ import annotations

import re
import unicodedata

#: Level words as log writers print them (upper or capitalised), and Android's one-letter levels.
LEVELS = frozenset(
    w for level in ("trace", "debug", "info", "notice", "warn", "warning", "error", "err",
                    "severe", "fatal", "critical", "crit", "alert", "emerg")
    for w in (level.upper(), level.capitalize())) | frozenset("VDIWEFA")
MONTHS = frozenset("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())
WEEKDAYS = frozenset("Mon Tue Wed Thu Fri Sat Sun".split())
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?([.,]\d+)?$")
_SEPARATORS = re.compile(r"\s*\|\s*")


def line_message(text: str, limit: int = 160) -> str:
    """The line's message: its leading header removed, whitespace collapsed, ``"`` and backslash
    replaced, at most ``limit`` characters.

    >>> line_message("Dec 10 10:04:54 LabSZ sshd[24809]: Failed password for root from 60.2.12.12")
    'sshd[24809]: Failed password for root from 60.2.12.12'
    >>> line_message("2016-09-28 04:30:32, Info  CBS  Warning: Unrecognized packageExtended attribute.")
    'CBS Warning: Unrecognized packageExtended attribute.'
    >>> line_message("PSU 2 failed, running on redundant supply")
    'PSU 2 failed, running on redundant supply'
    >>> line_message("1131566740 2005.11.09")
    '1131566740 2005.11.09'
    """
    tokens = _tokens(text)
    start = _header_end(tokens)
    message = " ".join(tokens[start:] if start < len(tokens) else tokens)
    return _shorten(message, limit)


def _tokens(text: str) -> list[str]:
    # Control characters out, runs of whitespace to one space, "|" field separators as tokens.
    text = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    text = text.replace('"', "'").replace("\\", "/")
    return _SEPARATORS.sub(" | ", text).split()


def _header_end(tokens: list[str]) -> int:
    """Index of the message's first token."""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token.startswith("["):
            close = next((j for j in range(i, len(tokens)) if tokens[j].endswith("]")), None)
            if close is None:
                break
            i = close + 1
        elif token.rstrip(":,") in LEVELS and (len(token.rstrip(":,")) > 1 or i > 0):
            i += 1  # a one-letter level only inside a header: "A disk failed" keeps its "A"
        elif token in MONTHS and nxt[:1].isdigit():
            # "Dec 10 10:04:54 host prog[pid]: …": month, day, time, then the host.
            if i + 2 < len(tokens) and _CLOCK.match(tokens[i + 2]) and i + 3 < len(tokens) - 1:
                i += 4
            else:
                i += 2
        elif token.rstrip(",") in WEEKDAYS and nxt in MONTHS:
            i += 1
        elif not _lettered(token):
            i += 1
        elif i > 0 and nxt in MONTHS and tokens[i + 2:i + 3] and tokens[i + 2][:1].isdigit():
            i += 1  # a host before a syslog time ("tbird-admin1 Nov 9 12:02:17 …")
        elif (level := _level_after_clock(tokens, i)) is not None:
            i = level + 1  # a file or logger name, a date and time, a level (OpenStack)
        else:
            break
    return i


def _lettered(token: str) -> bool:
    return any(ch.isalpha() for ch in token)


def _level_after_clock(tokens: list[str], i: int) -> int | None:
    """Index of a level word that follows ``tokens[i]`` after two to four tokens without
    letters (a date and a time at least), else None."""
    j = i + 1
    while j < len(tokens) and j - i <= 5 and not _lettered(tokens[j]):
        j += 1
    if 3 <= j - i <= 5 and j < len(tokens) - 1 and tokens[j].rstrip(":,") in LEVELS \
            and len(tokens[j].rstrip(":,")) > 1:
        return j
    return None


def _shorten(message: str, limit: int) -> str:
    if len(message) <= limit:
        return message
    # The longest run of whole words that leaves room for the "…", found with one search:
    # popping words off a join of them was quadratic (105 s for a 1,000,000-character line).
    space = message.rfind(" ", 0, limit)
    cut = message[:space] if space > 0 else message[:limit - 1]
    return cut + "…"
