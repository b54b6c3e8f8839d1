import json

import pytest

from models.trainingdata import DataFileError, json_kind, read_jsonl, read_text_file


def test_read_jsonl_reads_records_across_line_endings_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "d.jsonl"
    # U+2028 inside a string is valid raw JSON; a reader splitting on it would break the record.
    rows = [{"text": "a\u2028b", "label": "x"}, {"text": "c", "label": "y"}]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n\r\n".join(json.dumps(r, ensure_ascii=False)
                                                       for r in rows).encode() + b"\r\n")
    assert read_jsonl(path) == rows


@pytest.mark.parametrize("content, said", [
    (b'{"text": "a"}\n{"text": "b"\n', "line 2: not JSON"),
    (b'{"text": "a"}\n"b"\n', "line 2: a JSON string, not an object"),
    (b'{"text": 3}\n', 'line 1: the record has no "text" string'),
    (b'{"text": "\xff"}\n', "not UTF-8 text (byte 10"),
])
def test_read_jsonl_refuses_a_line_that_is_not_a_record_and_says_where(tmp_path, content, said):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataFileError) as e:
        read_jsonl(path)
    assert str(e.value).startswith(f"{path}") and said in str(e.value)


def test_read_text_file_names_a_missing_file_or_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_text_file(tmp_path / "nope.jsonl")
    with pytest.raises(DataFileError, match="a directory, not a file"):
        read_text_file(tmp_path)


def test_json_kind_uses_json_names():
    assert [json_kind(json.loads(v)) for v in ('{}', '[]', '"s"', '1', '1.5', 'true', 'null')] == \
        ["object", "array", "string", "number", "number", "boolean", "null"]
