"""The chat prompt, rendered in Python so both runtimes tokenise the same string.

SmolLM2 uses ChatML; ``render`` produces what the model's ``chat_template`` produces with
``add_generation_prompt=True`` (tests/pyapp/test_generation.py checks it against the template).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass(frozen=True)
class Prompt:
    """
    >>> Prompt(user="hi", system="Be brief.").render()
    '<|im_start|>system\\nBe brief.<|im_end|>\\n<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n'
    """

    user: str
    system: str = DEFAULT_SYSTEM
    #: The start of ``user`` that is the same for every input of a task (its instructions):
    #: backends prefill it once and reuse its KV cache (``fixed_text``), so each record only
    #: prefills its own text. Empty: only the system turn is shared.
    fixed_user: str = ""
    #: Text the answer must start with, written for the model (``decode_greedy_async``'s
    #: ``answer_start``): values already decided, e.g. the encoder heads' fields of a record.
    #: It must fit the grammar; it is run through the model with the first token that needs
    #: logits, and it is part of the output.
    answer_start: str = ""
    #: String fields whose value must be a run of ``span_source`` (the input as the model saw
    #: it): decoded by ``generation.spans``.
    span_fields: tuple[str, ...] = ()
    span_source: str = ""

    def __post_init__(self) -> None:
        if not self.user.startswith(self.fixed_user):
            raise ValueError("Prompt.fixed_user must be a prefix of Prompt.user")

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]

    def fixed_text(self) -> str:
        """The rendered prompt up to the end of ``fixed_user``: a prefix of ``render()``.

        >>> p = Prompt(user="Extract.\\nText: disk full", system="S", fixed_user="Extract.\\n")
        >>> p.render().startswith(p.fixed_text()), p.fixed_text()
        (True, '<|im_start|>system\\nS<|im_end|>\\n<|im_start|>user\\nExtract.\\n')
        """
        return f"<|im_start|>system\n{self.system}<|im_end|>\n<|im_start|>user\n{self.fixed_user}"

    def render(self) -> str:
        turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
                        for m in self.messages())
        return turns + "<|im_start|>assistant\n"


#: Shorter shared prefixes are prefilled with the rest of the prompt (not worth a cache entry).
MIN_PREFIX_TOKENS = 8


def reusable_prefix(ids: list[int], fixed_ids: list[int]) -> list[int]:
    """The leading tokens of ``ids`` whose KV cache a backend reuses: the tokens of the prompt's
    ``fixed_text`` without its last one (which may merge with the input's first characters), when
    ``ids`` starts with them and goes on; else none. It depends only on the task's fixed text,
    never on what ran before, so both runtimes split every prompt at the same place.

    >>> reusable_prefix(list(range(20)), list(range(11)))
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> reusable_prefix(list(range(20)), [0, 1, 2]), reusable_prefix([5] + list(range(1, 20)), list(range(11)))
    ([], [])
    """
    prefix = fixed_ids[:-1]
    if len(prefix) < MIN_PREFIX_TOKENS or len(ids) <= len(prefix) or ids[:len(prefix)] != prefix:
        return []
    return prefix
