"""The assembled browser runtime: our own lock file pointing only at wheels we serve."""

import json

from models.cache import sha256_file
from server import runtime as runtime_mod


def test_lock_file_points_every_package_at_a_served_wheel(build_dir):
    wheels = build_dir / "runtime" / "wheels"
    lock = json.loads((wheels / "pyodide-lock.json").read_text())
    assert lock["info"]["python"].startswith("3.14")
    assert lock["info"]["version"] == "314.0.7"
    packages = lock["packages"]
    assert {"edge-triage-pyapp", "pydantic", "pydantic-core"} <= set(packages)
    # The encoder's pipeline is made in web/inference.js: no Python proxy package any more.
    assert "transformers-js-py" not in packages
    for name, pkg in packages.items():
        assert "://" not in pkg["file_name"], name  # relative: served from our origin
        wheel = wheels / pkg["file_name"]
        assert wheel.exists(), name
        assert sha256_file(wheel) == pkg["sha256"], name
        for dep in pkg["depends"]:
            assert dep in packages, f"{name} depends on {dep}, which is not in the lock"
    assert "pyemscripten_2026_0_wasm32" in packages["pydantic-core"]["file_name"]
    assert packages["edge-triage-pyapp"]["imports"] == ["pyapp"]


def test_runtime_index_lists_every_file_with_its_hash(build_dir):
    root = build_dir / "runtime"
    index = json.loads((root / "runtime.json").read_text())
    listed = {f["path"] for f in index["files"]}
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*")
               if p.is_file() and p.name != "runtime.json"}
    assert listed == on_disk
    for f in index["files"][:5]:
        assert sha256_file(root / f["path"]) == f["sha256"]
    assert any(p.startswith("ort/") and p.endswith(".wasm") for p in listed)
    # The plain Wasm build, under the loader name transformers.js imports (server/runtime.py).
    assert {"ort-wasm/ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm/ort-wasm-simd-threaded.wasm"} <= listed
    assert "transformers/transformers.min.js" in listed


def test_second_build_is_a_no_op(build_dir):
    # The first call catches up with any source edited since `make build`.
    runtime_mod.build_runtime(build_dir / "runtime", log=lambda *_: None)
    messages = []
    index = runtime_mod.build_runtime(build_dir / "runtime", log=messages.append)
    assert messages == [f"runtime: up to date ({index['version']})"]


def test_pyapp_wheel_holds_only_pyapp(build_dir, tmp_path):
    import zipfile

    (wheel,) = (build_dir / "runtime" / "wheels").glob("edge_triage_pyapp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("pyapp/", "edge_triage_pyapp-")) for n in names)
    assert "pyapp/backends/browser.py" in names


def test_pyapp_wheel_holds_exactly_the_modules_the_browser_imports(build_dir):
    """What ships is what web/worker.js imports, transitively (read from the code, not listed)."""
    import zipfile

    from tests.test_layout import browser_modules

    runtime_mod.build_runtime(build_dir / "runtime", log=lambda *_: None)
    (wheel,) = (build_dir / "runtime" / "wheels").glob("edge_triage_pyapp-*.whl")
    names = [n for n in zipfile.ZipFile(wheel).namelist() if not n.startswith("edge_triage_pyapp-")]
    sources = [n for n in names if "/__pycache__/" not in n]
    modules = {n.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for n in sources}
    assert all(n.endswith(".py") for n in sources), sources
    assert modules == browser_modules()


def test_every_wheel_ships_its_bytecode_for_pyodides_python(build_dir):
    """server/pycompile.mjs: a .pyc of Pyodide's Python beside every module, unchecked-hash (the
    browser never reads the source to validate it), listed in the wheel's RECORD; without it the
    page compiled every module again on each visit before its first result."""
    import zipfile

    lock = json.loads((build_dir / "runtime" / "wheels" / "pyodide-lock.json").read_text())
    python = lock["info"]["python"]  # e.g. "3.14.2"
    cache_tag = "cpython-" + "".join(python.split(".")[:2])
    wheels = sorted((build_dir / "runtime" / "wheels").glob("*.whl"))
    assert wheels
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
            record = z.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
            for source in (n for n in names if n.endswith(".py")):
                folder, _, module = source.rpartition("/")
                pyc = f"{folder + '/' if folder else ''}__pycache__/{module[:-3]}.{cache_tag}.pyc"
                assert pyc in names, (wheel.name, pyc)
                assert f"{pyc},sha256=" in record
                # PEP 552 flags: bit 0 hash-based, bit 1 check_source (off: unchecked).
                assert int.from_bytes(z.read(pyc)[4:8], "little") == 0b01


def test_runtime_version_is_keyed_only_on_what_ships(tmp_path):
    """Editing the CLI, evaluation or a CPython backend leaves clients' offline caches valid;
    editing shipped code does not."""
    import shutil

    root = runtime_mod.repo_root()
    shutil.copytree(root / "pyapp", tmp_path / "pyapp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(root / "package-lock.json", tmp_path / "package-lock.json")
    (tmp_path / "server").mkdir()
    for script in ("pysnapshot.mjs", "pycompile.mjs"):
        shutil.copy2(root / "server" / script, tmp_path / "server" / script)

    def key():
        return runtime_mod.content_key(runtime_mod._inputs(tmp_path))

    before = key()
    for path in ("server/cli.py", "models/evaluation.py", "models/cpython/lm.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("# edited\n")
    assert key() == before
    snapshot = tmp_path / "server" / "pysnapshot.mjs"  # makes the Pyodide snapshot we serve
    snapshot.write_text(snapshot.read_text() + "\n// edited\n")
    assert key() != before
    before = key()
    bytecode = tmp_path / "server" / "pycompile.mjs"  # rewrites the wheels we serve
    bytecode.write_text(bytecode.read_text() + "\n// edited\n")
    assert key() != before
    before = key()
    engine = tmp_path / "pyapp" / "engine.py"
    engine.write_text(engine.read_text() + "\n# edited\n")
    assert key() != before


def test_pyodide_snapshot_is_served_and_holds_nothing_of_the_build_machine(build_dir):
    import gzip

    snapshot = build_dir / "runtime" / runtime_mod.PYODIDE_SNAPSHOT
    heap = gzip.decompress(snapshot.read_bytes())
    assert heap[:4] == b"\x00snp" and len(heap) >= 16 * 2**20  # Pyodide's header, then the heap
    assert str(runtime_mod.repo_root()).encode() not in heap
    assert b"node_modules" not in heap
