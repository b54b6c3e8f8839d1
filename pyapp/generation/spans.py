"""String values copied from the input: a field a task names (``Prompt.span_fields``) is decoded
as a run of the input's own characters.

A 135M model asked for "the affected part as the line names it" often writes a word of its own
(a category or kind word such as ``node``, or instruction text) instead: schema-valid and wrong.
So while the loop is inside such a field's string, the kernel picks only among tokens that keep
the value a substring of the source text (and, once it is not empty and does not end in
whitespace, tokens that close the string); the grammar's mask still applies on top. Which span
is the model's choice. Both runtimes run this same code over the same token texts, so they allow
the same tokens.
"""

from __future__ import annotations

_QUOTE = '"'
# A value stops before these: in a log line ": " ends the header (its component) and the message
# follows, and " [" opens a bracketed request or thread id after a component's name.
_BREAKS = (": ", " [")



class SpanIndex:
    """The vocabulary by the first characters of each token's text (the part before a quote),
    so the tokens that continue a value at a given place in the source are found without a
    pass over the whole vocabulary.

    >>> index = SpanIndex({1: "Node", 2: " 4", 3: "B", 4: '",', 5: "node", 6: "B.", 7: '"', 8: "Fa",
    ...                    9: 'Fa"'})
    >>> index.allowed("", "Fan on Node 4B.")  # "B" would start inside a word
    [1, 8]
    >>> index.allowed("Node", "Fan on Node 4B."), index.allowed("Node 4", "Fan on Node 4B.")
    ([2, 4, 7], [3, 6])
    >>> index.allowed("Node 4B", "Fan on Node 4B."), index.allowed("Fa", "Fan on Node 4B.")
    ([4, 7], [])
    """

    def __init__(self, token_texts: dict[int, str]):
        # head (text before any quote) of length 1 → tokens, of length ≥ 2 → by its first two
        # characters; tokens that start with a quote close the value.
        # (head, token, whether the token closes the value after its head)
        self._one: dict[str, list[tuple[str, int, bool]]] = {}
        self._two: dict[str, list[tuple[str, int, bool]]] = {}
        self._closers: list[int] = []
        # Tokens that open a string with text after the quote: (token, that text up to any
        # closing quote).
        self._openers: list[tuple[int, str]] = []
        for token, text in token_texts.items():
            if text.lstrip().startswith(_QUOTE) and (tail := text.lstrip()[1:].split(_QUOTE, 1)[0]):
                self._openers.append((token, tail))
            head = text.split(_QUOTE, 1)[0]
            if _QUOTE in text and head[-1:].isspace():
                continue  # it would close a value that ends in whitespace
            if not head:
                if text:
                    self._closers.append(token)
            elif len(head) == 1:
                self._one.setdefault(head, []).append((head, token, _QUOTE in text))
            else:
                self._two.setdefault(head[:2], []).append((head, token, _QUOTE in text))

    def allowed(self, written: str, source: str) -> list[int]:
        """Token ids whose text keeps ``written`` + the text (up to a quote) a run of
        ``source``; a value starts with no whitespace and closes only when it is not empty
        and does not end in whitespace. Sorted, for the same order in both runtimes."""
        # A name is whole words of the line: it starts and ends at a word's edge (not
        # ``thread`` out of ``data_thread()``).
        if written:
            ends = {i + len(written) for i in _occurrences(source, written) if _edge(source, i)}
        else:
            ends = {i for i in range(len(source)) if not source[i].isspace() and _edge(source, i)}
        out: set[int] = set()
        tail = written[-1:]
        for p in ends:
            candidates = list(self._one.get(source[p:p + 1], ()))
            candidates += [c for c in self._two.get(source[p:p + 2], ())
                           if source.startswith(c[0], p)]
            # The value never holds a break, nor ends where the next character starts one; a
            # token that closes the value after its text closes it at a word's edge.
            out.update(token for head, token, closes in candidates
                       if not _breaks(tail + head + source[p + len(head):p + len(head) + 1])
                       and not (closes and not _edge(source, p + len(head))))
        if written and not written[-1].isspace() and any(_edge(source, p) for p in ends):
            out.update(self._closers)
        return sorted(out)

    def bad_openers(self, source: str) -> list[int]:
        """Tokens that would open the value with text that is not a start of a run of
        ``source``: the loop avoids them at the value's opening quote (the value's first
        characters come with it when the quote and text are one token).

        >>> SpanIndex({1: '"', 2: ' "Node', 3: '"node', 4: '" Node', 5: '"ode'}).bad_openers(
        ...     "Fan on Node 4B.")
        [3, 4, 5]
        """
        return sorted(token for token, tail in self._openers
                      if tail[0].isspace() or _breaks(tail)
                      or not any(_edge(source, i) for i in _occurrences(source, tail)))


def _edge(source: str, p: int) -> bool:
    """Whether place ``p`` of ``source`` (before ``source[p]``) is not inside a word: a value
    may start or end there."""
    return p == len(source) or p == 0 or not (_word(source[p - 1]) and _word(source[p]))


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _breaks(text: str) -> bool:
    return any(b in text for b in _BREAKS)


def _occurrences(source: str, part: str) -> list[int]:
    found, at = [], source.find(part)
    while at >= 0:
        found.append(at)
        at = source.find(part, at + 1)
    return found


def field_at(prefix: str) -> str | None:
    """The key of a flat JSON object whose value ``prefix`` (the output so far) has reached, or
    None between fields.

    >>> [field_at(p) for p in ['{', '{"a": ', '{"a": "x, y', '{"a": "x", ', '{"a": 1, "b": n']]
    [None, 'a', 'a', None, 'b']
    """
    key, current, in_string, escaped, after_colon = None, None, False, False, False
    start = 0
    for i, ch in enumerate(prefix):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                if not after_colon:
                    current = prefix[start:i]
        elif ch == '"':
            in_string, start = True, i + 1
        elif ch == ":":
            key, after_colon = current, True
        elif ch in ",{}":
            key, after_colon = None, False
    return key


_CACHE: dict[int, tuple[dict[int, str], SpanIndex]] = {}


def span_index(token_texts: dict[int, str]) -> SpanIndex:
    """One index per vocabulary (the dict is kept with it, so its id is not reused)."""
    entry = _CACHE.get(id(token_texts))
    if entry is None or entry[0] is not token_texts:
        entry = _CACHE[id(token_texts)] = (token_texts, SpanIndex(token_texts))
    return entry[1]
