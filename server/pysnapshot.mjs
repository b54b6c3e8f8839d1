// Pyodide's memory right after its boot, written once at build time (server/runtime.py) and
// restored by web/worker.js instead of booting: the Wasm heap of an initialised interpreter,
// gzip-compressed. Measured in headless Chromium (2-core machine, fresh profile each): the boot
// takes 0.7-0.8 s from the snapshot instead of 3.6-4.6 s.
//
//   node server/pysnapshot.mjs PYODIDE_DIR LOCK_FILE OUT.gz
//
// Pyodide's snapshot API is underscore-named (`_makeSnapshot`, `_loadSnapshot`): it is tied to
// the exact pyodide.asm.wasm, which is why the snapshot is made from the same files we serve and
// lives under the same content-hashed runtime version. Nothing of this machine goes into it:
// a browser's environment (not this process's), no script path, no packages (a loaded
// extension module's code would not be in the heap we restore).
import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";

const [pyodideDir, lockFile, out] = process.argv.slice(2);
if (!out) {
  console.error("usage: node server/pysnapshot.mjs PYODIDE_DIR LOCK_FILE OUT.gz");
  process.exit(2);
}
// Emscripten names the program after argv[1] (os.environ["_"]); a browser gets its default.
process.argv.length = 1;
const { loadPyodide } = await import(pathToFileURL(`${pyodideDir}/pyodide.mjs`).href);
const pyodide = await loadPyodide({
  indexURL: `${pyodideDir}/`,
  lockFileURL: lockFile,
  // What a browser boot has (Pyodide's default HOME; LANG from the C locale).
  env: { HOME: "/home/pyodide", LANG: "C.UTF-8" },
  _makeSnapshot: true,
});
const state = pyodide.runPython("import os, sys; [*os.environ.values(), *sys.argv, *sys.path]").toJs();
const leaked = state.filter((v) => v.includes("node_modules") || v.includes(process.cwd()));
if (leaked.length) throw new Error(`the snapshot would hold this machine's paths: ${leaked}`);
const snapshot = pyodide.makeMemorySnapshot();
writeFileSync(out, gzipSync(snapshot, { level: 9 }));
console.log(`pyodide snapshot: ${snapshot.length} bytes, ${out}`);
