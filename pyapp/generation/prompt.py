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

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]

    def render(self) -> str:
        turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
                        for m in self.messages())
        return turns + "<|im_start|>assistant\n"
