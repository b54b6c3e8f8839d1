"""Hypothesis on task inputs and schemas (CPython): Unicode edge cases, very long inputs, control
characters, lone surrogates. Whatever the input, the result is a clean text or a readable
InputError, and a task's answer validates against its output model.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pyapp.tasks import TASKS, create_task
from pyapp.textinput import MAX_INPUT_CHARS, InputError, clean

FULL = bool(os.environ.get("EDGE_TRIAGE_TEST_FULL"))
EXAMPLES = 400 if FULL else 60

# Every code point, surrogates included (Python strings can hold them; JavaScript strings too).
any_char = st.characters(codec=None, categories=None)
controls = st.sampled_from([chr(c) for c in (*range(0x20), *range(0x7f, 0xa0))])
tricky = st.sampled_from(["\u200b", "\u202e", "\ufeff", "\ufffd", "\u0301", "\U0001f525",
                          "\ud800", "\udfff", "\u2028", "\u00a0", "ﬁ", "İ", "\r", "\n", "\t"])
texts = st.one_of(
    st.text(any_char, max_size=300),
    st.text(st.one_of(controls, tricky, any_char), max_size=300),
    # Very long: a word repeated past the models' context, up to 200k characters.
    st.builds(lambda word, n: (word + " ") * n, st.text(any_char, min_size=1, max_size=12),
              st.integers(1_000, 20_000)),
)


def assert_clean(cleaned: str) -> None:
    assert cleaned and cleaned == cleaned.strip()
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in cleaned)
    assert not any(ord(c) < 0x20 and c not in "\t\n\r" or 0x7F <= ord(c) < 0xA0 for c in cleaned)
    cleaned.encode("utf-8")  # strict: what the tokenizer and the browser get is valid UTF-8


@settings(max_examples=EXAMPLES * 5, deadline=None)
@given(texts)
def test_clean_gives_valid_text_or_a_readable_error(text):
    try:
        result = clean(text)
    except InputError as e:
        assert str(e).endswith(".") and len(str(e)) < 200
        return
    assert_clean(result.text)
    assert clean(result.text).text == result.text  # cleaning twice changes nothing


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text()), st.dictionaries(
    st.text(), st.text())))
def test_non_text_input_is_a_readable_error(value):
    with pytest.raises(InputError, match="Text must be a string"):
        clean(value)


def test_input_over_the_limit_is_refused_not_truncated():
    with pytest.raises(InputError, match="too large"):
        clean("x" * (MAX_INPUT_CHARS + 1))


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=texts, task=st.sampled_from(["telemetry-triage"]))
def test_classification_answers_any_text_with_a_schema_valid_output(engine, text, task):
    try:
        result = asyncio.run(engine.run(task, text))
    except InputError:
        with pytest.raises(InputError):
            clean(text)  # refused only when the input itself is refused
        return
    output = create_task(task).output_model.model_validate(result["output"])
    assert 0.0 <= result["confidence"] <= 1.0
    assert result["route"] in ("local", "escalated")
    assert abs(sum(output.scores.values()) - 1.0) < 1e-3
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # serialisable to the browser


# -- schemas ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(any_char),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=12)


@pytest.mark.parametrize("task", sorted(TASKS))
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_output_models_accept_or_refuse_any_json_cleanly(task, value):
    # Answers come back from handlers and reviewers as JSON: anything must be either a valid
    # output or a ValidationError, never another exception.
    model = create_task(task).output_model
    try:
        model.model_validate(value)
    except ValidationError as e:
        assert e.errors()
