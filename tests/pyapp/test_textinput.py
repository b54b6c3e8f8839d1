import pytest

from pyapp.textinput import MAX_INPUT_CHARS, InputError, clean, prefix_for_tokens


@pytest.mark.parametrize("text", ["", "   ", "\n\t  \r\n", "\x00\x01\x02"])
def test_empty_or_blank_text_is_refused(text):
    with pytest.raises(InputError, match="empty"):
        clean(text)


@pytest.mark.parametrize("value", [None, 42, b"bytes", ["a"]])
def test_non_string_is_refused_with_its_type(value):
    with pytest.raises(InputError, match=type(value).__name__):
        clean(value)


def test_control_characters_become_spaces_with_a_notice():
    result = clean("fan\x00stalled\x1b[31m on node\x7f 4")
    assert result.text == "fan stalled on node  4"  # the colour sequence goes whole
    assert any("control character" in n for n in result.notices)
    assert any("terminal escape" in n for n in result.notices)


def test_tabs_and_newlines_are_kept():
    assert clean("a\tb\nc").text == "a\tb\nc"
    assert clean("a\tb\nc").notices == []


def test_lone_surrogates_are_replaced():
    result = clean("disk \ud800 full \udfff")
    assert result.text == "disk \ufffd full \ufffd"
    assert "U+FFFD" in result.notices[0]
    result.text.encode("utf-8")  # now encodable


def test_binary_garbage_is_refused():
    binary = bytes(range(256)).decode("latin-1") * 4
    with pytest.raises(InputError):
        clean(binary.encode("latin-1").decode("utf-8", errors="replace"))


def test_oversized_input_is_refused_not_truncated_silently():
    with pytest.raises(InputError, match="too large"):
        clean("a" * (MAX_INPUT_CHARS + 1))


def test_prefix_for_tokens_bounds_work_on_huge_input():
    assert len(prefix_for_tokens("x" * 100_000, 256)) == 25_600
    assert prefix_for_tokens("short", 256) == "short"
