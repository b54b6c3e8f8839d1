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
    assert {"edge-triage-pyapp", "pydantic", "pydantic-core", "transformers-js-py"} <= set(packages)
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
