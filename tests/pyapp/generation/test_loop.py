"""The decode loop, the greedy kernel and the chat prompt (fast: a scripted model, no ONNX)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyapp.generation import DecodeState, Prompt, decode_greedy
from models.cpython.sampling import GreedyKernel

VOCAB = 40


class ScriptedModel:
    """Logits that make token ``script[i]`` the favourite at step i."""

    def __init__(self, script):
        self.script = script
        self.steps = 0

    def _logits(self, i):
        logits = np.zeros(VOCAB, dtype=np.float32)
        logits[self.script[min(i, len(self.script) - 1)]] = 5.0
        logits[7] = 4.0  # a runner-up everywhere
        return logits

    def start(self, ids):
        return DecodeState(self._logits(0), None, len(ids))

    def step(self, state, token):
        self.steps += 1
        return DecodeState(self._logits(self.steps), None, state.length + 1)


class OnlyCursor:
    """A grammar allowing only ``allowed[i]`` at step i, finished after the last."""

    def __init__(self, allowed):
        self.allowed = allowed
        self.i = 0

    def new_bitmask(self):
        return np.zeros((VOCAB + 31) // 32, dtype=np.int32)

    def fill_bitmask(self, bitmask):
        bitmask[:] = 0
        bits = bitmask.view(np.uint32)
        for t in self.allowed[self.i]:
            bits[t // 32] |= np.uint32(1 << (t % 32))

    def accept(self, token):
        if token not in self.allowed[self.i]:
            return False
        self.i += 1
        return True

    def is_finished(self):
        return self.i == len(self.allowed)


def run(script, **kw):
    kw.setdefault("cursor", None)
    kw.setdefault("max_new_tokens", 10)
    kw.setdefault("eos_ids", frozenset({0}))
    return decode_greedy(ScriptedModel(script), [1, 2, 3], kernel=GreedyKernel(VOCAB), **kw)


def test_stops_at_eos_without_emitting_it():
    gen = run([5, 6, 0, 9])
    assert gen.token_ids == [5, 6] and gen.stop_reason == "eos" and gen.complete


def test_token_limit_is_an_incomplete_stop():
    gen = run([5] * 20, max_new_tokens=4)
    assert len(gen.token_ids) == 4 and gen.stop_reason == "max_new_tokens" and not gen.complete


def test_cancel_stops_within_one_token():
    calls = []
    gen = run([5] * 20, cancel=lambda: len(calls) >= 2, on_token=calls.append)
    assert gen.token_ids == [5, 5] and gen.stop_reason == "cancelled"


def test_grammar_mask_overrides_the_favourite_and_finishing_stops():
    # The model prefers 5; the grammar allows {7, 9} then {9}: the runner-up 7, then 9.
    gen = run([5, 5, 5], cursor=OnlyCursor([{7, 9}, {9}]))
    assert gen.token_ids == [7, 9] and gen.stop_reason == "grammar"
    # One real choice (two allowed tokens); its probability is renormalised over {7, 9}.
    (p,) = gen.choices
    assert p == pytest.approx(1 / (1 + np.exp(-4.0)), rel=1e-5)


def test_kernel_without_mask_is_argmax_with_softmax_probability():
    logits = np.log(np.array([0.1, 0.7, 0.2], dtype=np.float32))
    token, prob, allowed = GreedyKernel(3).pick(logits, None)
    assert (token, allowed) == (1, 3) and prob == pytest.approx(0.7, rel=1e-5)


def test_prompt_renders_like_the_models_chat_template(build_dir):
    import jinja2

    from models.build import choose_lm, load_manifests

    m = choose_lm(load_manifests(build_dir / "models"))
    config = json.loads((build_dir / "models" / m.model_id / "tokenizer_config.json").read_text())
    template = jinja2.Environment().from_string(config["chat_template"])
    p = Prompt(user="Fan 2 stalled.\nWhat now?", system="Reply in JSON.")
    assert p.render() == template.render(messages=p.messages(), add_generation_prompt=True)


class AnyOfCursor(OnlyCursor):
    """A grammar allowing the same ``allowed`` tokens at every step, finished after ``last``."""

    def __init__(self, allowed, last):
        super().__init__([allowed])
        self.last, self.done = last, False

    def accept(self, token):
        self.done = token == self.last
        return token in self.allowed[0]

    def is_finished(self):
        return self.done


def test_preferred_pick_keeps_the_probability_over_all_allowed_tokens():
    kernel = GreedyKernel(VOCAB)
    logits = np.zeros(VOCAB, dtype=np.float32)
    logits[5], logits[9] = 3.0, 1.0
    cursor = AnyOfCursor([5, 9], 9)
    bitmask = cursor.new_bitmask()
    cursor.fill_bitmask(bitmask)
    token, prob, allowed = kernel.pick(logits, bitmask, kernel.group_masks([[9]]))
    assert (token, allowed) == (9, 2)
    assert prob == pytest.approx(np.exp(1.0) / (np.exp(1.0) + np.exp(3.0)), rel=1e-6)


class PositionModel:
    """Logits by position (``script[i]`` favoured for the i-th new token), whichever way the
    tokens before it were run; records the forward passes."""

    def __init__(self, script, prompt_len=3, batched=True):
        self.script, self.prompt_len, self.passes = script, prompt_len, []
        if not batched:
            self.extend = None

    def _state(self, length):
        logits = np.zeros(VOCAB, dtype=np.float32)
        logits[self.script[min(length - self.prompt_len, len(self.script) - 1)]] = 5.0
        logits[7] = 4.0
        return DecodeState(logits, None, length)

    def start(self, ids):
        return self._state(len(ids))

    def step(self, state, token):
        self.passes.append([token])
        return self._state(state.length + 1)

    def extend(self, state, tokens):  # None on the unbatched model (set in __init__)
        self.passes.append(list(tokens))
        return self._state(state.length + len(tokens))


def test_forced_tokens_run_in_one_forward_pass_with_the_same_output():
    # {7, 9}: a choice (the model's 5 is not allowed: the runner-up 7); then 9, 3, 4 are the
    # only tokens allowed (forced: no logits needed); then a choice among {5, 8} again.
    grammar = [{7, 9}, {9}, {3}, {4}, {5, 8}, {6}]
    outputs = {}
    for batched in (True, False):
        model = PositionModel([5, 5, 5, 5, 8, 5], batched=batched)
        gen = decode_greedy(model, [1, 2, 3], kernel=GreedyKernel(VOCAB),
                            cursor=OnlyCursor(grammar), max_new_tokens=10,
                            eos_ids=frozenset({0}))
        outputs[batched] = (gen.token_ids, gen.choices, model.passes)
    assert outputs[True][0] == outputs[False][0] == [7, 9, 3, 4, 8, 6]
    assert outputs[True][1] == outputs[False][1]  # the same two choices, same probabilities
    # Batched: the choice and the three forced tokens after it in one pass; the last choice
    # and the forced token that finishes the grammar are never run (no logits needed after).
    assert outputs[True][2] == [[7, 9, 3, 4]]
    assert outputs[False][2] == [[7], [9], [3], [4]]


def test_the_answers_start_is_output_first_and_run_with_the_next_pass():
    grammar = [{7, 9}, {3, 4}, {5, 8}, {6}]
    model = PositionModel([5, 5, 8, 5])
    gen = decode_greedy(model, [1, 2, 3], kernel=GreedyKernel(VOCAB), cursor=OnlyCursor(grammar),
                        max_new_tokens=10, eos_ids=frozenset({0}), answer_start=[9, 4])
    # 9 and 4 are decided (not the model's 7 and 3); only the third step is a choice.
    assert gen.token_ids == [9, 4, 8, 6] and len(gen.choices) == 1
    assert model.passes == [[9, 4]]
    with pytest.raises(RuntimeError, match="fixed start does not fit the grammar"):
        decode_greedy(PositionModel([5]), [1, 2, 3], kernel=GreedyKernel(VOCAB),
                      cursor=OnlyCursor(grammar), max_new_tokens=10, eos_ids=frozenset({0}),
                      answer_start=[9, 9])


def test_the_budget_counts_only_the_tokens_after_the_answers_start():
    # A long fixed start (a line's message as the summary) must not use up the model's budget.
    grammar = [{7, 9}, {3, 4}, {5, 8}, {6}]
    gen = decode_greedy(PositionModel([5, 5, 8, 5]), [1, 2, 3], kernel=GreedyKernel(VOCAB),
                        cursor=OnlyCursor(grammar), max_new_tokens=1, eos_ids=frozenset({0}),
                        answer_start=[9, 4])
    assert gen.token_ids == [9, 4, 8] and gen.stop_reason == "max_new_tokens"


class AnyCursor(OnlyCursor):
    def __init__(self, allowed, steps):
        super().__init__([allowed] * steps)


def test_a_phrase_of_the_string_is_not_written_twice_by_words():
    # Inside a string the model favours "The fan stopped the fan stopped …" (other tokens the
    # second time, so the token rule does not see it); the third word of the repeat is refused
    # and the runner-up (7, " now") comes instead. With the rule off the repeat is written.
    texts = {1: '"', 2: "The", 3: " fan", 4: " stopped", 5: " the", 7: " now"}
    script = [1, 2, 3, 4, 5, 3, 4, 2]
    runs = {}
    for on in (True, False):
        gen = decode_greedy(PositionModel(script), [9, 9, 9], kernel=GreedyKernel(VOCAB),
                            cursor=AnyCursor({1, 2, 3, 4, 5, 7}, 8), max_new_tokens=10,
                            eos_ids=frozenset({0}), closing=(100, [], {1: '"'}),
                            token_texts=texts if on else None)
        runs[on] = "".join(texts[t] for t in gen.token_ids)
    assert runs[False] == '"The fan stopped the fan stoppedThe'
    assert runs[True] == '"The fan stopped the fan nowThe'
    # A phrase the input has may be repeated (a copy of the input).
    gen = decode_greedy(PositionModel(script, prompt_len=4), [9, 2, 3, 4],
                        kernel=GreedyKernel(VOCAB), cursor=AnyCursor({1, 2, 3, 4, 5, 7}, 8),
                        max_new_tokens=10, eos_ids=frozenset({0}), closing=(100, [], {1: '"'}),
                        token_texts=texts, fixed=1)
    assert "".join(texts[t] for t in gen.token_ids) == '"The fan stopped the fan stoppedThe'


def test_a_span_field_is_decoded_as_a_run_of_the_source():
    # The model favours '{"c": "node"}' ("node" is not in the line): with "c" a span field the
    # value is the best-scored run of the line instead ("Fan": every other token ties at 0, and
    # the first in id order wins), then the favoured closing token. Other fields are free.
    texts = {1: '{"c": "', 2: "node", 3: "Fan", 4: " 2", 5: '"}', 6: " stalled", 7: " now",
             8: '{"d": "'}
    quotes = {t: s for t, s in texts.items() if '"' in s}

    def decode(script, **kw):
        gen = decode_greedy(PositionModel(script), [9, 9, 9], kernel=GreedyKernel(VOCAB),
                            cursor=AnyCursor(set(range(VOCAB)), 8), max_new_tokens=8,
                            eos_ids=frozenset({0}), closing=(100, [], quotes),
                            token_texts=texts, **kw)
        return "".join(texts[t] for t in gen.token_ids)

    span = {"span_fields": ("c",), "span_source": "Fan 2 stalled"}
    assert decode([1, 2, 5, 0]) == '{"c": "node"}'
    assert decode([1, 2, 5, 0], **span) == '{"c": "Fan"}'
    # Inside the run the model's favourite continuation is kept when the line has it.
    assert decode([1, 3, 4, 6, 5, 0], **span) == '{"c": "Fan 2 stalled"}'
    assert decode([8, 2, 5, 0], **span) == '{"d": "node"}'


def test_a_span_field_does_not_open_with_text_the_source_lacks():
    # '"node' opens the value with text of its own: avoided for the runner-up at the opening.
    texts = {1: '{"c": ', 2: '"node', 3: "Fan", 5: '"}', 7: '"'}
    quotes = {t: s for t, s in texts.items() if '"' in s}
    gen = decode_greedy(PositionModel([1, 2, 3, 5, 0]), [9, 9, 9], kernel=GreedyKernel(VOCAB),
                        cursor=AnyCursor(set(range(VOCAB)), 8), max_new_tokens=8,
                        eos_ids=frozenset({0}), closing=(100, [], quotes), token_texts=texts,
                        span_fields=("c",), span_source="Fan 2 stalled")
    assert "".join(texts[t] for t in gen.token_ids) == '{"c": "Fan"}'
