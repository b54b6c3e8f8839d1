"""No repeated phrase inside a JSON string, by words: the decode loop's second no-repeat rule.

The token rule (``loop.NO_REPEAT``) misses most repeats a reader sees, because the same words
come back as other tokens (" The power management" after "The power management", "Crashed"
after "crashed,"). Here a string's text is split into words the way the summary check of the
evaluation does (``models.metrics.repeats_phrase``: split on whitespace, case and punctuation
folded), and a token is refused when it would start the third word of a ``WORDS``-word phrase
already in the string, unless the input has that phrase too (a copy of the input may repeat
itself). The loop then takes the model's next best allowed token (``loop.PHRASE_TRIES`` times).

Token texts come from the byte-level vocabulary both runtimes already hand the loop (for
``closing``): ``Ġ``/``Ċ``/``ĉ`` stand for a space, a newline and a tab; other characters only
need to fold the same way every time.
"""

from __future__ import annotations

from collections.abc import Iterable

WORDS = 3
_SPACES = {"Ġ": " ", "Ċ": "\n", "ĉ": "\t"}


def token_texts(vocab: Iterable[tuple[str, int]]) -> dict[int, str]:
    """Token id → its text with byte-level whitespace as whitespace.

    >>> token_texts([("ĠThe", 5), ("ing", 6)])
    {5: ' The', 6: 'ing'}
    """
    return {token: "".join(_SPACES.get(ch, ch) for ch in text) for text, token in vocab}


def words_of(text: str) -> list[str]:
    """Words as ``models.metrics.repeats_phrase`` counts them.

    >>> words_of("Crashed, stuck; CRASHED  --")
    ['crashed', 'stuck', 'crashed']
    """
    out = ["".join(ch for ch in w.lower() if ch.isalnum()) for w in text.split()]
    return [w for w in out if w]


def trigrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + WORDS]) for i in range(len(words) - WORDS + 1)}


class PhraseGuard:
    """The words of the string being written, and the phrases already in it.

    >>> g = PhraseGuard({1: "The", 2: " fan", 3: " stopped", 4: ".", 5: " the", 6: " Fan",
    ...                  7: " st", 8: " spun"}, allowed=set())
    >>> g.start()
    >>> for t in (1, 2, 3, 4, 5, 6): g.feed(t)
    >>> g.blocks(7), g.blocks(3), g.blocks(8), g.blocks(4)
    (True, True, False, False)
    >>> copied = PhraseGuard(g.texts, allowed={("the", "fan", "stopped")})
    >>> for t in (1, 2, 3, 4, 5, 6): copied.feed(t)
    >>> copied.blocks(3)
    False
    """

    def __init__(self, texts: dict[int, str], allowed: set[tuple[str, ...]]):
        self.texts = texts
        self.allowed = allowed  # phrases of the input: repeating them is copying
        self.start()

    def start(self, text: str = "") -> None:
        """A string opened (``text``: what the opening token wrote after its quote)."""
        self.words: list[str] = []
        self.partial = ""
        self.next_words: dict[tuple[str, ...], set[str]] = {}
        self._write(text)

    def feed(self, token: int) -> None:
        self._write(self.texts.get(token, ""))

    def blocks(self, token: int) -> bool:
        """Whether ``token`` writes the last word of a phrase the string already has, or starts
        it (the word it leaves unfinished is a prefix of that word)."""
        words, partial, grew = list(self.words), self.partial, False
        for ch in self.texts.get(token, ""):
            if ch.isspace():
                if partial and grew and self._repeats(words, partial, whole=True):
                    return True
                if partial:
                    words.append(partial)
                partial, grew = "", False
            elif ch.isalnum():
                partial += ch.lower()
                grew = True
        return grew and self._repeats(words, partial, whole=False)

    def _repeats(self, words: list[str], word: str, whole: bool) -> bool:
        if len(words) < WORDS - 1:
            return False
        head = tuple(words[-(WORDS - 1):])
        return any((s == word if whole else s.startswith(word)) and head + (s,) not in self.allowed
                   for s in self.next_words.get(head, ()))

    def _write(self, text: str) -> None:
        for ch in text:
            if ch.isspace():
                self._end_word()
            elif ch.isalnum():
                self.partial += ch.lower()
        # A word is only known to be finished at the next space, so a phrase ending the text
        # is recorded then; ``blocks`` compares prefixes, which covers the word in progress.

    def _end_word(self) -> None:
        if not self.partial:
            return
        if len(self.words) >= WORDS - 1:
            head = tuple(self.words[-(WORDS - 1):])
            self.next_words.setdefault(head, set()).add(self.partial)
        self.words.append(self.partial)
        self.partial = ""
