"""Assembling the browser runtime into build/runtime: Pyodide, wheels + our lock file,
transformers.js and ORT wasm. Everything comes from registry packages (npm, PyPI); nothing is
committed and nothing is fetched from a CDN at run time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from models.cache import cache_root, content_key, sha256_file

ORT_FILES = "ort-wasm-simd-threaded.asyncify.*"
# The plain Wasm build of the same onnxruntime-web, for pages on the Wasm backend: the asyncify
# build (WebGPU and Wasm in one binary) has no float64 kernels, which the integer encoder file's
# exact float ops need (models/weightquant.py), and is twice the download (27 vs 14 MB).
# transformers.js' bundled onnxruntime imports "<wasmPaths>ort-wasm-simd-threaded.asyncify.mjs"
# from a path prefix, so ort-wasm/ holds the plain build's loader under that name (and its
# binary under the name the loader asks for). Its exports are the same onnxruntime API.
ORT_WASM_FILES = {"ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.asyncify.mjs",
                  "ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm"}
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip")
# Pyodide 314's platform tag, and the browser-side packages pyapp needs besides itself.
PYODIDE_PLATFORM = "pyemscripten_2026_0_wasm32"
PYODIDE_PYTHON = "3.14"
BROWSER_REQUIREMENTS = ("pydantic==2.14.3", "pydantic-core==2.50.4")
PYAPP_DIST = "edge-triage-pyapp"
RUNTIME_FORMAT = "runtime-5"  # 2: wheels per requirement set; 3: snapshot; 4: bytecode; 5: ort-wasm/
# Pyodide's heap after its boot (server/pysnapshot.mjs), restored by web/worker.js.
PYODIDE_SNAPSHOT = "pyodide/snapshot.bin.gz"


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def pyapp_sources(root: Path) -> list[Path]:
    """The files of the pyapp wheel: pyapp holds exactly the browser's Python (tests/test_layout.py
    checks it against web/worker.js's imports), so the CLI, evaluation and the CPython backends
    neither ship nor key the runtime version."""
    return sorted(p for p in (root / "pyapp").rglob("*.py"))


def _inputs(root: Path) -> list[str | Path]:
    pyapp_files = pyapp_sources(root)
    return [RUNTIME_FORMAT, *BROWSER_REQUIREMENTS, root / "package-lock.json",
            root / "server" / "pysnapshot.mjs", root / "server" / "pycompile.mjs", *pyapp_files,
            *[str(p.relative_to(root)) for p in pyapp_files]]


def build_runtime(out: Path, root: Path | None = None, log=print, force: bool = False) -> dict:
    """Write ``out`` (build/runtime) and return its index (version + files).

    Skips all work when the inputs' content key matches the previous build.
    """
    root = root or repo_root()
    key = content_key(_inputs(root))
    index_path = out / "runtime.json"
    if not force and index_path.exists():
        index = json.loads(index_path.read_text())
        if index.get("key") == key:
            log(f"runtime: up to date ({index['version']})")
            return index
    node = root / "node_modules"
    if not (node / "pyodide" / "pyodide.mjs").exists():
        raise SystemExit("node_modules is missing: run `npm ci` (or `make`) first")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "pyodide").mkdir(parents=True)
    (tmp / "wheels").mkdir()
    (tmp / "transformers").mkdir()
    (tmp / "ort").mkdir()
    log("runtime: copying Pyodide, transformers.js and ORT wasm from node_modules")
    for name in PYODIDE_FILES:
        shutil.copy2(node / "pyodide" / name, tmp / "pyodide" / name)
    shutil.copy2(node / "@huggingface/transformers/dist/transformers.min.js",
                 tmp / "transformers" / "transformers.min.js")
    # The grammar engine for extraction (web/lm.js): XGrammar's UMD bundle, Wasm embedded.
    shutil.copy2(node / "@mlc-ai/web-xgrammar/lib/index.js", tmp / "transformers" / "web-xgrammar.js")
    # transformers.js must run with the ORT build it was made against (its own dependency);
    # version 4 loads only the asyncify build (Wasm and WebGPU in one binary).
    for path in sorted((node / "onnxruntime-web" / "dist").glob(ORT_FILES)):
        shutil.copy2(path, tmp / "ort" / path.name)
    (tmp / "ort-wasm").mkdir()
    for name, served in ORT_WASM_FILES.items():
        shutil.copy2(node / "onnxruntime-web" / "dist" / name, tmp / "ort-wasm" / served)
    log("runtime: collecting wheels for Pyodide")
    wheels = download_wheels(tmp / "wheels", log)
    wheels.append(build_pyapp_wheel(root, tmp / "wheels"))
    log("runtime: compiling the wheels' Python to bytecode (Pyodide's interpreter)")
    subprocess.run(["node", str(root / "server" / "pycompile.mjs"), str(tmp / "pyodide"),
                    str(node / "pyodide" / "pyodide-lock.json"), *map(str, wheels)],
                   check=True, cwd=root)
    write_lock(node / "pyodide" / "pyodide-lock.json", wheels, tmp / "wheels" / "pyodide-lock.json")
    log("runtime: Pyodide snapshot")
    subprocess.run(["node", str(root / "server" / "pysnapshot.mjs"), str(tmp / "pyodide"),
                    str(tmp / "wheels" / "pyodide-lock.json"), str(tmp / PYODIDE_SNAPSHOT)],
                   check=True, cwd=root)
    files = [
        {"path": p.relative_to(tmp).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(tmp.rglob("*")) if p.is_file()
    ]
    version = content_key([json.dumps(files, sort_keys=True)])[:12]
    index = {"key": key, "version": version, "files": files}
    (tmp / "runtime.json").write_text(json.dumps(index, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"runtime: built version {version} ({len(files)} files)")
    return index


def download_wheels(dest: Path, log=print) -> list[Path]:
    """pyemscripten / pure-Python wheels from PyPI, cached outside the checkout."""
    # One folder per requirement set: every wheel in it was resolved for this set (a package
    # dropped from the set must not linger in the runtime because an older download left it).
    cache = cache_root() / "wheels" / PYODIDE_PLATFORM / content_key(list(BROWSER_REQUIREMENTS))[:12]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--platform", PYODIDE_PLATFORM, "--platform", "any",
           "--python-version", PYODIDE_PYTHON, "--implementation", "cp",
           "--abi", "cp" + PYODIDE_PYTHON.replace(".", ""), "--abi", "none",
           "--dest", str(cache), *BROWSER_REQUIREMENTS]
    subprocess.run(cmd, check=True)
    # pip download leaves every version it ever fetched in the cache; keep what was resolved now.
    wanted = _resolved(cache)
    copied = []
    for wheel in wanted:
        shutil.copy2(wheel, dest / wheel.name)
        copied.append(dest / wheel.name)
    log(f"runtime: {len(copied)} wheels: {', '.join(w.name for w in copied)}")
    return copied


def _resolved(cache: Path) -> list[Path]:
    from packaging.utils import parse_wheel_filename
    from packaging.version import Version

    newest: dict[str, tuple[Version, Path]] = {}
    pins = {r.split("==")[0].replace("_", "-"): Version(r.split("==")[1])
            for r in BROWSER_REQUIREMENTS}
    for wheel in cache.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        if name in pins and version != pins[name]:
            continue
        if name not in newest or version > newest[name][0]:
            newest[name] = (version, wheel)
    return sorted(p for _, p in newest.values())


def build_pyapp_wheel(root: Path, dest: Path) -> Path:
    """A wheel of the ``pyapp`` package alone: the task code that runs in the browser."""
    from pyapp import __version__

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        for source in pyapp_sources(root):
            target = project / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        (project / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{PYAPP_DIST}"\nversion = "{__version__}"\n'
            'dependencies = ["pydantic"]\n'
            '[tool.setuptools.packages.find]\ninclude = ["pyapp*"]\n'
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--disable-pip-version-check", "-w", str(dest), str(project)],
            check=True,
        )
    (wheel,) = dest.glob(PYAPP_DIST.replace("-", "_") + "-*.whl")
    return wheel


def write_lock(base_lock: Path, wheels: list[Path], out: Path) -> None:
    """Our pyodide-lock.json: Pyodide's own info block, and only the packages we serve.

    pyodide-lock checks wheel tags against ``info.platform``, which Pyodide 314 still spells
    ``emscripten_5_0_3`` while PyPI's wheels say ``pyemscripten_2026_0``; we present the latter
    while adding the wheels and put the original back for Pyodide.
    """
    from pyodide_lock import PyodideLockSpec
    from pyodide_lock.spec import InfoSpec
    from pyodide_lock.utils import add_wheels_to_spec

    info = json.loads(base_lock.read_text())["info"]
    original_platform = info["platform"]
    spec = PyodideLockSpec(
        info=InfoSpec(arch=info["arch"], platform=f"pyemscripten_{info['abi_version']}",
                      version=_pyodide_version(base_lock), python=info["python"],
                      abi_version=info["abi_version"]),
        packages={},
    )
    spec = add_wheels_to_spec(spec, wheels, base_path=out.parent)
    data = json.loads(spec.model_dump_json())
    data["info"]["platform"] = original_platform
    out.write_text(json.dumps(data, indent=1, sort_keys=True))


def _pyodide_version(base_lock: Path) -> str:
    return json.loads((base_lock.parent / "package.json").read_text())["version"]
