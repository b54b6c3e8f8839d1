"""Closing the JSON before the token budget runs out ("budget forcing"), the same in both runtimes.

A 135M model under greedy decoding often repeats itself inside a free string, a number or an
array ("square,square,square…", "1.1111…") until the token limit, and a cut-off JSON value is no
answer at all. So once a generation has used all but the last ``closing_starts_at(budget)``
tokens of its budget, every step prefers, among the tokens the grammar allows, those that end
something, most final first. Outside a string:

1. a token made only of ``}`` and ``]`` (closes objects and arrays, opens nothing),
2. ``"`` followed only by ``}``/``]`` (at a value start this opens a string, which the next step
   closes),
3. any token starting with ``"``,
4. any token starting with ``}`` or ``]`` (``},`` closes an item but starts the next one),
5. a token starting with ``,`` (ends a number or an item and moves on),
6. else whatever the grammar allows (keys the schema requires, ``{``, digits, format text).

Inside a string only groups 2 and 3 apply (there ``}`` is just a character). When no group
has an allowed token (digits of a time's fraction, say, where only ``Z`` or an offset ends the
value), the step avoids the last ``AVOID_WINDOW`` tokens: the best allowed token not among them,
so a loop is left even where no closing character may come next.

Closing mode also starts, earlier, as soon as the output falls into a loop: its last tokens
repeat with a period of at most ``MAX_PERIOD`` tokens (``repeats``). Greedy decoding never
leaves such a loop by itself, so waiting for the reserve would only spend time; this is what
makes most of the difference in speed on JSONSchemaBench, where a third of the outputs loop.
Once on, closing mode stays on.

Whether the text so far ends inside a string is tracked token by token from the few tokens that
contain ``"`` or a backslash (``quote_tokens``); JSON has no other way into or out of a string.

The model's logits still choose within the preferred group, and the grammar still decides what is
allowed, so the output stays schema-valid: this only shortens it. A generation that entered this
mode says so (``Generation.closed_early``) and extraction results name it as a reason to escalate,
because a value may have been cut short. The groups are token ids computed here from the
vocabulary and handed to the kernel of either runtime (``loop.decode_greedy_async`` drives both).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The preferred tokens, group by group, in order of preference outside a string; inside one
#: only the groups at ``IN_STRING_GROUPS`` apply.
CLOSING_GROUPS: tuple[str, ...] = (r"[}\]]+", r'"[}\]]*', r'".*', r"[}\]].*", r",.*")
IN_STRING_GROUPS: tuple[int, ...] = (1, 2)
#: The last quarter of the budget (at least this many tokens) is decoded in closing mode.
MIN_RESERVE = 24


def closing_token_ids(vocab: Iterable[tuple[str, int]]) -> list[list[int]]:
    """Token ids per closing group, from ``(token text, id)`` pairs of a byte-level vocabulary
    (where these ASCII characters stand for themselves). A token is in the first group it fits.

    >>> closing_token_ids([('"', 1), ('}', 2), ('",', 3), ('a', 4), (',', 5), (']}', 6), ('},', 7)])
    [[2, 6], [1], [3], [7], [5]]
    """
    patterns = [re.compile(p, re.DOTALL) for p in CLOSING_GROUPS]
    groups: list[list[int]] = [[] for _ in CLOSING_GROUPS]
    for text, token in vocab:
        for group, pattern in zip(groups, patterns):
            if pattern.fullmatch(text):
                group.append(token)
                break
    return [sorted(group) for group in groups]


def quote_tokens(vocab: Iterable[tuple[str, int]]) -> dict[int, str]:
    r"""The tokens whose text can change whether we are inside a string, with that text.

    >>> quote_tokens([('"', 1), ('ab', 2), ('\\n', 3)])
    {1: '"', 3: '\\n'}
    """
    return {token: text for text, token in vocab if '"' in text or "\\" in text}


def string_state(state: tuple[bool, bool], text: str) -> tuple[bool, bool]:
    r"""(inside a string, after a backslash there) once ``text`` follows a JSON prefix in ``state``.

    >>> string_state((False, False), '{"a')
    (True, False)
    >>> string_state((True, False), 'x\\"')
    (True, False)
    >>> string_state((True, False), '\\')
    (True, True)
    >>> string_state((True, True), '""')
    (False, False)
    """
    inside, escaped = state
    for ch in text:
        if escaped:
            escaped = False
        elif inside and ch == "\\":
            escaped = True
        elif ch == '"':
            inside = not inside
    return inside, escaped


#: In closing mode, with no closing token allowed, the last this many tokens are avoided.
AVOID_WINDOW = 16
#: Loops of up to this many tokens are detected; a loop must span at least ``MIN_LOOP`` tokens
#: and three periods ("1111 1111" of digits is a number, not yet a loop).
MAX_PERIOD = 8
MIN_LOOP = 8


def repeats(tokens: list[int]) -> bool:
    """The last tokens are one short sequence repeated (period ≤ MAX_PERIOD, ≥ 3 times).

    >>> repeats([5, 1, 2, 1, 2, 1, 2, 1, 2])
    True
    >>> repeats([1] * 7), repeats([1] * 8)
    (False, True)
    >>> repeats([9, 3, 4, 5, 3, 4, 5, 3, 4])
    False
    """
    for period in range(1, MAX_PERIOD + 1):
        span = max(MIN_LOOP, 3 * period)
        if len(tokens) < span:
            break
        tail = tokens[-span:]
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            return True
    return False


def closing_starts_at(budget: int) -> int:
    """The number of generated tokens after which closing mode begins.

    >>> closing_starts_at(256), closing_starts_at(160), closing_starts_at(30)
    (192, 120, 6)
    """
    return max(0, budget - max(MIN_RESERVE, budget // 4))
