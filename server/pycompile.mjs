// The wheels' Python compiled to bytecode at build time, by Pyodide's own interpreter (the
// bytecode is tied to its exact Python version, which this machine's CPython is not): each wheel
// is rewritten in place with a __pycache__/*.pyc beside every .py (unchecked-hash, so the
// browser never compares it with the source), listed in its RECORD. Without them every page
// visit compiled pydantic's and our sources again before the first result: importing
// pyapp.backends.browser took 1.8-2.1 s of a 5.9-6.7 s cold start in headless Chromium
// (2-core machine), 604 ms vs 277 ms with the bytecode under Node.
//
//   node server/pycompile.mjs PYODIDE_DIR LOCK_FILE WHEEL...
//
// Run by server/runtime.py before the lock file is written (its sha256s are of these files).
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [pyodideDir, lockFile, ...wheels] = process.argv.slice(2);
if (!wheels.length) {
  console.error("usage: node server/pycompile.mjs PYODIDE_DIR LOCK_FILE WHEEL...");
  process.exit(2);
}
process.argv.length = 1;
const { loadPyodide } = await import(pathToFileURL(`${pyodideDir}/pyodide.mjs`).href);
const pyodide = await loadPyodide({ indexURL: `${pyodideDir}/`, lockFileURL: lockFile });
const compileWheel = pyodide.runPython(`
import base64, compileall, hashlib, pathlib, py_compile, shutil, zipfile

def compile_wheel(src, dst):
    root = pathlib.Path("/tmp/wheel")
    shutil.rmtree(root, ignore_errors=True)
    with zipfile.ZipFile(src) as z:
        infos = z.infolist()
        z.extractall(root)
    if not compileall.compile_dir(root, quiet=2, workers=1,
                                  invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH):
        raise RuntimeError(f"{src}: a module did not compile")
    pycs = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.pyc"))
    record = next(i.filename for i in infos if i.filename.endswith(".dist-info/RECORD"))
    lines = (root / record).read_text().splitlines()
    for rel in pycs:
        data = (root / rel).read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{rel},sha256={digest},{len(data)}")
    (root / record).write_text("\\n".join(lines) + "\\n")
    # The package's files, then the bytecode, then .dist-info (RECORD last, as wheels have it).
    meta = [i for i in infos if ".dist-info/" in i.filename]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for info in [i for i in infos if i not in meta]:
            out.writestr(info, (root / info.filename).read_bytes() if not info.is_dir() else b"")
        for rel in pycs:
            out.writestr(zipfile.ZipInfo(rel, (1980, 1, 1, 0, 0, 0)), (root / rel).read_bytes(),
                         zipfile.ZIP_DEFLATED)
        for info in sorted(meta, key=lambda i: i.filename == record):
            out.writestr(info, (root / info.filename).read_bytes())
    return len(pycs)

compile_wheel
`);
for (const wheel of wheels) {
  pyodide.FS.writeFile("/tmp/in.whl", readFileSync(wheel));
  const count = compileWheel("/tmp/in.whl", "/tmp/out.whl");
  writeFileSync(wheel, pyodide.FS.readFile("/tmp/out.whl"));
  console.log(`bytecode: ${count} modules, ${wheel.split("/").pop()}`);
}
