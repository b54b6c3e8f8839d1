"""The interface task code sees. Async because the browser backend awaits JS promises."""

from __future__ import annotations

from abc import ABC, abstractmethod


class EncoderBackend(ABC):
    """Sentence embeddings from the encoder model: mean-pooled over tokens and L2-normalised."""

    #: What ran the model: "cpython", "wasm" or "webgpu".
    name: str = "unknown"
    #: Threads the runtime uses for inference (1 when single-threaded).
    threads: int = 1
    #: The model's token window; longer inputs are truncated.
    max_tokens: int = 256
    #: The content key of the model in use (from its manifest), for caches.
    model_key: str = ""

    @abstractmethod
    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed each text (truncated to ``max_tokens``)."""

    @abstractmethod
    async def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` including special tokens, without truncation."""

    async def embed_input(self, text: str) -> tuple[list[float], bool, list[str]]:
        """Embed one user input: (embedding, truncated?, notices for the user)."""
        from ..textinput import prefix_for_tokens

        notices: list[str] = []
        embedding, tokens = await self.embed_counted(text, prefix_for_tokens(text, self.max_tokens))
        truncated = tokens > self.max_tokens
        if truncated:
            notices.append(f"Input truncated to the model's {self.max_tokens} tokens "
                           f"(it has {len(text):,} characters).")
        return embedding, truncated, notices

    async def embed_counted(self, text: str, counted: str) -> tuple[list[float], int]:
        """``text``'s embedding and the token count of ``counted``; a backend where each call
        crosses to another thread (the browser's encoder worker) does both in one."""
        (embedding,) = await self.embed([text])
        return embedding, await self.count_tokens(counted)
