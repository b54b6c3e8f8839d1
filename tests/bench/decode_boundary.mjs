// What driving the browser's greedy loop from Python costs per token (issue 14, point 2).
// The same decode twice under node, on the same stand-ins for the model (logits rows kept in JS)
// and the grammar (a bitmask per step), with the real pick kernel (web/pick.js) over a
// 49,152-token vocabulary:
//   js: the all-JS loop the browser ran before (web/lm.js generate on main), kept below as the
//       baseline;
//   py: the real pyapp.generation.loop.decode_greedy_async in Pyodide driving the real
//       pyapp/backends/browser_decode.py pieces over stand-ins with web/lm.js's piece API.
// Model and grammar cost the same in both, so (py - js) per token is the boundary and
// Python-loop overhead; divide it by a real forward pass for the share.
// Usage: node tests/bench/decode_boundary.mjs [tokens=1500] [rounds=5]
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";
import { pick } from "../../web/pick.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TOKENS = Number(process.argv[2] ?? 1500), ROUNDS = Number(process.argv[3] ?? 5);
const V = 49152, ROWS = 16;

// Stand-ins: logits rows with a different favourite each step; a bitmask allowing a free-text
// sized set (a few thousand tokens) on most steps and a short choice on every fourth.
const rows = Array.from({ length: ROWS }, (_, r) => {
  const a = new Float32Array(V);
  for (let i = 0; i < V; i++) a[i] = Math.sin(i * 12.9898 + r * 78.233) * 3;
  a[(r * 997) % V] = 10;
  return a;
});
const masks = [0, 1, 2, 3].map((k) => {
  const m = new Int32Array(V / 32);
  const n = k === 3 ? 6 : 4000;
  for (let j = 0; j < n; j++) { const t = (j * 7919 + k * 13 + (j % ROWS) * 997) % V; m[t >> 5] |= 1 << (t & 31); }
  for (let r = 0; r < ROWS; r++) { const t = (r * 997) % V; m[t >> 5] |= 1 << (t & 31); }
  return m;
});
let stepNo = 0;
const matcher = { getNextTokenBitmask: async () => masks[stepNo % 4], acceptToken: () => true, isTerminated: () => false };

// Baseline: the JS loop (main's web/lm.js generate, closing mode included), same stand-ins.
const CHOICE_MAX = 64, AVOID = 16;
function repeats(t) {
  for (let p = 1; p <= 8; p++) {
    const span = Math.max(8, 3 * p);
    if (t.length < span) break;
    let loop = true;
    for (let i = t.length - span + p; i < t.length && loop; i++) loop = t[i] === t[i - p];
    if (loop) return true;
  }
  return false;
}
async function runJs(groups, closeAt) {
  stepNo = 0;
  const t0 = performance.now();
  let logits = rows[0], closed = false;
  const out = [], choices = [];
  while (out.length < TOKENS) {
    const bitmask = await matcher.getNextTokenBitmask();
    if (!closed && (out.length >= closeAt || repeats(out))) closed = true;
    const [token, prob, allowed] = pick(logits, V, bitmask, closed ? groups : null, closed ? new Set(out.slice(-AVOID)) : null);
    if (!matcher.acceptToken(token)) throw new Error("rejected");
    if (allowed > 1 && allowed <= CHOICE_MAX) choices.push(prob);
    out.push(token);
    if (matcher.isTerminated() || out.length >= TOKENS) break;
    logits = rows[++stepNo % ROWS];
  }
  return { ms: (performance.now() - t0) / out.length, tokens: out };
}

// web/lm.js's piece API over the same stand-ins.
let run = null, closingGroups = [];
const pieces = {
  start: async () => { stepNo = 0; run = { logits: rows[0], bitmask: null, out: [] }; },
  step: async () => { run.logits = rows[++stepNo % ROWS]; },
  fillBitmask: async () => { run.bitmask = await matcher.getNextTokenBitmask(); },
  acceptToken: (t) => matcher.acceptToken(t),
  isTerminated: () => matcher.isTerminated(),
  setGroups: (json) => { closingGroups = JSON.parse(json).map((ids) => Int32Array.from(ids)); },
  pick: (preferJson, avoidJson) => pick(run.logits, V, run.bitmask,
    preferJson ? JSON.parse(preferJson).map((g) => closingGroups[g]) : null,
    avoidJson ? new Set(JSON.parse(avoidJson)) : null),
  isCancelled: () => false,
  emitToken: (t) => { run.out.push(t); },
  release: () => { run = null; },
};

function pyFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? pyFiles(path) : path.endsWith(".py") ? [path] : [];
  });
}

const pyodide = await loadPyodide();
pyodide.registerJsModule("edge_triage_lm", pieces);
const files = [...pyFiles(join(root, "pyapp", "generation")), join(root, "pyapp", "__init__.py"),
  ...["__init__.py", "base.py", "browser_decode.py"].map((f) => join(root, "pyapp", "backends", f))];
for (const path of files) {
  const rel = relative(root, path);
  pyodide.FS.mkdirTree(`/home/pyodide/${dirname(rel)}`);
  pyodide.FS.writeFile(`/home/pyodide/${rel}`, readFileSync(path, "utf8"));
}
pyodide.runPython(`
import sys, time
sys.path.insert(0, "/home/pyodide")
from pyapp.backends.browser_decode import JsCursor, JsKernel, JsStepModel
from pyapp.generation.closing import closing_token_ids, quote_tokens
from pyapp.generation.loop import decode_greedy_async
import edge_triage_lm as lm

VOCAB = [('"', 5), ('}', 9), ('"}', 8), ('},', 7), (',', 11)] + [(f"w{i}", 1000 + i) for i in range(50)]
kernel = JsKernel()
masks = kernel.group_masks(closing_token_ids(VOCAB))

async def decode(n):
    t0 = time.perf_counter()
    try:
        gen = await decode_greedy_async(JsStepModel(), [1, 2, 3], kernel=kernel, cursor=JsCursor("k"),
                                        max_new_tokens=n, eos_ids=frozenset({-1}),
                                        cancel=lambda: bool(lm.isCancelled()), on_token=lm.emitToken,
                                        closing=(n - 64, masks, quote_tokens(VOCAB)))
    finally:
        lm.release()
    return (time.perf_counter() - t0) * 1000 / len(gen.token_ids), gen.token_ids
`);
const decodePy = pyodide.globals.get("decode");
const groups = closingGroups;

const js = [], py = [];
for (let round = 0; round < ROUNDS; round++) {
  const a = await runJs(groups, TOKENS - 64);
  const [ms, out] = (await decodePy(TOKENS)).toJs();
  if (round === 0 && JSON.stringify(out) !== JSON.stringify(a.tokens)) throw new Error("the two loops chose different tokens");
  js.push(a.ms); py.push(ms);
}
const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
const extra = median(py) - median(js);
console.log(JSON.stringify({ tokens: TOKENS, rounds: ROUNDS, js_ms_per_token: +median(js).toFixed(4),
  py_ms_per_token: +median(py).toFixed(4), py_over_js_ms_per_token: +extra.toFixed(4),
  share_of_a_forward_pass: Object.fromEntries([20, 35, 60, 100, 200].map((f) => [`${f}ms`, +(extra / f).toFixed(4)])) }));
