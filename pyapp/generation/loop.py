"""The greedy decode loop: one forward pass per token, the grammar's mask applied to each step."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..coroutine import run_to_end
from .closing import AVOID_WINDOW, IN_STRING_GROUPS, repeats, string_state
from .phrases import PhraseGuard, trigrams, words_of
from .spans import field_at, span_index

StopReason = Literal["eos", "grammar", "max_new_tokens", "context", "cancelled"]
#: Stops after which the output is complete; any other stop means it was cut short.
COMPLETE: frozenset[str] = frozenset({"eos", "grammar"})


@dataclass
class DecodeState:
    """The model after the tokens so far: last position's logits, KV cache, length."""

    logits: Any
    cache: Any
    length: int


class StepModel(Protocol):
    """``start`` and ``step`` return the state, or (in the browser) a coroutine of it. A model
    may also have ``extend(state, tokens)``: several tokens in one forward pass (as a prefill
    continuing from the cache); without it the loop steps them one by one."""

    def start(self, ids: list[int]) -> DecodeState | Awaitable[DecodeState]: ...
    def step(self, state: DecodeState, token: int) -> DecodeState | Awaitable[DecodeState]: ...


@dataclass
class Generation:
    """What a decode produced. ``choices`` holds, for every step where the grammar allowed
    between 2 and ``CHOICE_MAX`` tokens (a choice between enum values, booleans, structure),
    the chosen token's probability renormalised over the allowed tokens."""

    token_ids: list[int]
    stop_reason: StopReason
    choices: list[float] = field(default_factory=list)
    text: str = ""
    prompt_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    #: Decoding looped or reached the closing reserve of its budget (``generation.closing``): the
    #: JSON was closed as soon as the grammar allowed, so a value may have been cut short.
    closed_early: bool = False
    #: For each of ``choices``: the index in ``token_ids`` of the token chosen, and the text
    #: decoded before it (``finish``), which tells a task which field the choice was about.
    choice_at: list[int] = field(default_factory=list)
    choice_prefixes: list[str] = field(default_factory=list)

    def finish(self, text: str, prompt_tokens: int, requested: int, budget: int,
               elapsed_s: float, decode: Callable[[list[int]], str] | None = None) -> Generation:
        """What both runtimes fill in after the loop, the same way: a token limit set by the
        context window (``budget`` < ``requested``) is reported as "context"; with ``decode``,
        the text before each choice."""
        if budget < requested and self.stop_reason == "max_new_tokens":
            self.stop_reason = "context"
        if decode is not None:
            self.choice_prefixes = [decode(self.token_ids[:k]) for k in self.choice_at]
        self.text = text
        self.prompt_tokens = prompt_tokens
        self.timings["total_s"] = elapsed_s
        return self

    @property
    def complete(self) -> bool:
        return self.stop_reason in COMPLETE


class Cursor(Protocol):
    def fill_bitmask(self, bitmask: Any) -> None | Awaitable[None]: ...
    def accept(self, token: int) -> bool: ...
    def is_finished(self) -> bool: ...
    def new_bitmask(self) -> Any: ...


class Kernel(Protocol):
    def pick(self, logits: Any, bitmask: Any | None, prefer: list[Any] | None = None,
             avoid: list[int] | None = None,
             only: list[int] | None = None) -> tuple[int, float, int]: ...
    def forced(self, bitmask: Any) -> int | None: ...


# Steps with more allowed tokens than this are free text (strings, numbers): their
# probabilities say how the model phrases something, not which answer it chose.
CHOICE_MAX = 64
#: Inside a JSON string a token is avoided when it would write a sequence of this many tokens
#: that (a) is already in the same string, or (b) is in the task's fixed instructions; unless
#: the rest of the prompt (the input, retrieved examples) has that sequence too, as a copy of
#: the input may repeat itself ("0:0:0:0") and may share words with the instructions. A 135M
#: model otherwise repeats phrases in free text ("Crashed, stuck, failed, Crashed, …") until
#: closing mode cuts the value short, and fills a field with the instruction that describes it
#: ("the affected part as the line names it").
NO_REPEAT = 3
#: With ``token_texts``, a token that would repeat a phrase of the string by words
#: (``generation.phrases``) is replaced by the next best allowed token, at most this many times.
PHRASE_TRIES = 8


def ngrams(ids: list[int], n: int = NO_REPEAT) -> set[tuple[int, ...]]:
    return {tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)}


def echo_index(fixed: list[int], rest: list[int], n: int = NO_REPEAT) -> dict[tuple[int, ...], set[int]]:
    """First ``n - 1`` tokens → last tokens of the ``n``-token sequences of ``fixed`` that
    ``rest`` does not have.

    >>> echo_index([4, 5, 6, 7], [5, 6, 7], n=3)
    {(4, 5): {6}}
    """
    index: dict[tuple[int, ...], set[int]] = {}
    for gram in ngrams(fixed, n) - ngrams(rest, n):
        index.setdefault(gram[:-1], set()).add(gram[-1])
    return index


def repeating(written: list[int], allowed: set[tuple[int, ...]], n: int = NO_REPEAT) -> list[int]:
    """The tokens that would end a repeat of an ``n``-token sequence of ``written`` (not in
    ``allowed``).

    >>> repeating([7, 1, 2, 3, 1, 2], set())
    [3]
    >>> repeating([7, 1, 2, 3, 1, 2], {(1, 2, 3)})
    []
    """
    if len(written) < n:
        return []
    head = tuple(written[len(written) - n + 1:])
    return [written[i + n - 1] for i in range(len(written) - n + 1)
            if tuple(written[i:i + n - 1]) == head
            and head + (written[i + n - 1],) not in allowed]


def decode_greedy(model: StepModel, prompt_ids: list[int], **options: Any) -> Generation:
    """``decode_greedy_async`` for a model and cursor that answer at once (CPython's): the same
    loop, run to the end without an event loop."""
    return run_to_end(decode_greedy_async(model, prompt_ids, **options),
                      "the model or the cursor is asynchronous: use decode_greedy_async")


async def _ready(value: Any) -> Any:
    """A piece's answer: awaited when the piece is asynchronous (the browser's, in JS)."""
    return await value if hasattr(value, "__await__") else value


async def _advance(model: StepModel, state: DecodeState, tokens: list[int]) -> DecodeState:
    """The state after ``tokens``: one forward pass for all of them when the model can."""
    extend = getattr(model, "extend", None)
    if len(tokens) > 1 and extend is not None:
        return await _ready(extend(state, tokens))
    for token in tokens:
        state = await _ready(model.step(state, token))
    return state


async def decode_greedy_async(model: StepModel, prompt_ids: list[int], *, kernel: Kernel,
                              cursor: Cursor | None, max_new_tokens: int,
                              eos_ids: frozenset[int],
                              cancel: Callable[[], bool] | None = None,
                              on_token: Callable[[int], None] | None = None,
                              closing: tuple[int, list[Any], dict[int, str]] | None = None,
                              fixed: int = 0, answer_start: list[int] | tuple[int, ...] = (),
                              token_texts: dict[int, str] | None = None,
                              span_fields: tuple[str, ...] = (),
                              span_source: str = "") -> Generation:
    """Greedy decoding of up to ``max_new_tokens`` tokens after ``prompt_ids``: the one decode
    loop of both runtimes. Under CPython the model, cursor and kernel are numpy/onnxruntime
    objects (``models.cpython``); in the browser they are small JS pieces that keep the logits,
    the KV cache and the bitmask in JS (``pyapp.backends.browser_decode``), so per token only a
    token id goes in and (token, probability, allowed count) come back. ``model.start``,
    ``model.step`` and ``cursor.fill_bitmask`` may be coroutines.

    With a ``cursor`` every step picks the best token the grammar allows, and decoding stops as
    soon as the grammar is finished (the stop token it would force is not run through the
    model). ``cancel`` is polled before each forward pass, so a cancel stops within one token.
    ``closing`` = (tokens after which to close, the kernel's masks of ``CLOSING_GROUPS``, the
    ``quote_tokens``): see ``generation.closing``; only with a cursor. With it, inside strings
    the loop also avoids repeating itself or the first ``fixed`` prompt tokens, the task's
    instructions (``NO_REPEAT``).

    A token the grammar forces (the only one allowed: JSON structure, a key, an enum narrowed to
    one value) is chosen without the model's logits; it and the tokens before it not yet run
    go through the model in one forward pass when the next logits are needed (``extend``).
    In a telemetry record ~26 of ~60 tokens are forced. Greedy output is the same in exact
    arithmetic; in float a batched pass may round differently from single steps.

    ``answer_start`` (``Prompt.answer_start``, tokenised): the output's first tokens, decided
    before decoding; each is taken as a forced token (the grammar must accept it). They are not
    the model's: ``max_new_tokens``, the closing reserve and loop detection count only the
    tokens after them (a long fixed start, such as a line's message as the summary, would
    otherwise leave the model no budget, or read a line's own repetition as a loop).

    ``token_texts`` (``phrases.token_texts`` of the vocabulary): inside strings, outside closing
    mode, no phrase of ``phrases.WORDS`` words is written twice unless the input has it.

    ``span_fields`` (``Prompt.span_fields``, with ``token_texts``): inside the string value of
    such a key the token is picked among those that keep the value a run of ``span_source``
    (``generation.spans``); the grammar's mask applies on top.
    """
    clock = time.perf_counter
    t0 = clock()
    state = await _ready(model.start(prompt_ids))
    timings = {"prefill_s": clock() - t0, "forward_s": 0.0, "constraint_s": 0.0}
    bitmask = cursor.new_bitmask() if cursor is not None else None
    out: list[int] = []
    pending: list[int] = []  # accepted tokens not yet run through the model
    choices: list[float] = []
    choice_at: list[int] = []
    reason: StopReason = "max_new_tokens"
    close_at, groups, quotes = closing if closing and cursor is not None else (None, [], {})
    closed = False
    text_state = (False, False)  # inside a string, after a backslash (closing.string_state)
    string_start = 0  # index in ``out`` of the token that opened the current string
    input_ngrams = ngrams(prompt_ids[fixed:]) if quotes else set()
    echo = echo_index(prompt_ids[:fixed], prompt_ids[fixed:]) if quotes and fixed else {}
    forced = getattr(kernel, "forced", None)
    phrases = None
    if token_texts and quotes:
        given = "".join(token_texts.get(t, "") for t in prompt_ids[fixed:])
        phrases = PhraseGuard(token_texts, trigrams(words_of(given)))
    spans = span_index(token_texts) if span_fields and token_texts and quotes else None
    span_written: str | None = None  # the span field's value so far, while in it
    out_text = ""  # the output's text, kept only for span fields
    n_start = len(answer_start)
    while len(out) - n_start < max_new_tokens:
        if cancel is not None and cancel():
            reason = "cancelled"
            break
        t = clock()
        if cursor is not None:
            await _ready(cursor.fill_bitmask(bitmask))
        if close_at is not None and not closed and len(out) >= n_start \
                and (len(out) - n_start >= close_at or repeats(out[n_start:])):
            closed = True  # and stays on
        if len(out) < len(answer_start):
            only = answer_start[len(out)]
        else:
            only = forced(bitmask) if forced is not None and cursor is not None else None
        if only is not None:
            token, prob, allowed = only, 1.0, 1
        else:
            if pending:
                timings["constraint_s"] += clock() - t
                t = clock()
                state = await _advance(model, state, pending)
                timings["forward_s"] += clock() - t
                pending = []
                t = clock()
            prefer, avoid = None, None
            if closed:
                prefer = [groups[i] for i in IN_STRING_GROUPS] if text_state[0] else groups
                avoid = out[-AVOID_WINDOW:]
            elif text_state[0]:
                written = out[string_start:]
                avoid = repeating(written, input_ngrams)
                if echo and len(written) >= NO_REPEAT - 1:
                    avoid += echo.get(tuple(written[len(written) - NO_REPEAT + 1:]), ())
                avoid = avoid or None
            span_only = None
            if spans is not None and span_written is not None:
                span_only = spans.allowed(span_written, span_source)
            elif spans is not None and not text_state[0] and field_at(out_text) in span_fields:
                avoid = [*(avoid or ()), *spans.bad_openers(span_source)]
            token, prob, allowed = kernel.pick(state.logits, bitmask, prefer, avoid, span_only)
            tries = 0
            while (phrases is not None and text_state[0] and not closed and allowed > 1
                   and tries < PHRASE_TRIES and phrases.blocks(token)):
                avoid = [*(avoid or ()), token]
                token, prob, allowed = kernel.pick(state.logits, bitmask, prefer, avoid, span_only)
                tries += 1
        if cursor is not None:
            if not cursor.accept(token):
                raise RuntimeError(f"grammar rejected token {token} it allowed"
                                   if len(out) >= len(answer_start) else
                                   f"the answer's fixed start does not fit the grammar at token "
                                   f"{len(out)} ({token})")
        timings["constraint_s"] += clock() - t
        if 1 < allowed <= CHOICE_MAX:
            choices.append(prob)
            choice_at.append(len(out))
        if token in eos_ids:
            reason = "eos"
            break
        out.append(token)
        if spans is not None:
            out_text += token_texts.get(token, "")
        if token in quotes:
            text_state = string_state(text_state, quotes[token])
            span_written = None
            if text_state[0]:  # a string opened (or an escaped quote: the window restarts)
                string_start = len(out) - 1
                if phrases is not None:
                    phrases.start(quotes[token].rsplit('"', 1)[-1])
                # A span field's value is taken to have no escaped quote: a length-limited string
                # (telemetry's component) has none in the grammar (``[^"\\\r\n]{0,48}``).
                if spans is not None and field_at(out_text) in span_fields:
                    span_written = quotes[token].rsplit('"', 1)[-1]
        else:
            text_state = (text_state[0], False)
            if phrases is not None and text_state[0]:
                phrases.feed(token)
            if span_written is not None:
                span_written += token_texts.get(token, "")
        if on_token is not None:
            on_token(token)
        if cursor is not None and cursor.is_finished():
            reason = "grammar"
            break
        if len(out) - n_start >= max_new_tokens:
            break
        pending.append(token)  # run through the model when the next logits are needed
    timings["decode_tokens"] = float(len(out))
    return Generation(out, reason, choices, timings=timings, closed_early=closed,
                      choice_at=choice_at)
