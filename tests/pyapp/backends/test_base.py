"""EncoderBackend.embed_input, the part of the backend interface both runtimes share (the browser
backends themselves import ``js`` and are tested in Chromium, tests/e2e)."""

from __future__ import annotations

from pyapp.backends.base import EncoderBackend
from tests.conftest import run


class WordEncoder(EncoderBackend):
    """One token per word; the embedding is the number of words seen, to show which text it got."""

    max_tokens = 5

    def __init__(self):
        self.embedded: list[str] = []

    async def embed(self, texts):
        self.embedded.extend(texts)
        return [[float(len(t.split()))] for t in texts]

    async def count_tokens(self, text):
        return len(text.split())


def test_short_input_is_embedded_whole_without_notice():
    backend = WordEncoder()
    assert run(backend.embed_input("fan 2 stalled")) == ([3.0], False, [])


def test_long_input_is_flagged_truncated_with_a_notice():
    backend = WordEncoder()
    text = " ".join(["word"] * 12)
    embedding, truncated, notices = run(backend.embed_input(text))
    assert truncated and embedding == [12.0] and backend.embedded == [text]
    assert notices == [f"Input truncated to the model's 5 tokens (it has {len(text):,} characters)."]
