// What driving the browser's greedy loop from Python would cost per token (issue 14, point 2).
// Runs the same decode twice under node, on the same stand-ins for the model (logits rows kept in
// JS) and the grammar (a bitmask per step), with web/decode.js's real pick kernel over a
// 49,152-token vocabulary:
//   js: web/decode.js decodeGreedy (today's browser loop, all in JS);
//   py: pyapp/generation/loop.py's loop body in Pyodide (the real closing.repeats /
//       string_state), calling small JS pieces per token: fill (await the bitmask), pick →
//       (token, probability, allowed count), accept, finished, step (await the forward pass).
// The model and grammar cost the same in both, so (py - js) per token is the boundary and
// Python-loop overhead; divide it by a real forward pass to get the share.
// Usage: node tests/bench/decode_boundary.mjs [tokens=1500] [rounds=5]
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";
import { decodeGreedy, parsePlan, pick } from "../../web/decode.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TOKENS = Number(process.argv[2] ?? 1500), ROUNDS = Number(process.argv[3] ?? 5);
const V = 49152, ROWS = 16;

// Stand-ins: logits rows with a different favourite each step, a bitmask that allows a free-text
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
const matcher = {
  getNextTokenBitmask: async () => masks[stepNo % 4],
  acceptToken: () => true,
  isTerminated: () => false,
};

async function runJs(plan) {
  stepNo = 0;
  const t0 = performance.now();
  const r = await decodeGreedy({
    logits: rows[0], matcher, plan, vocabSize: V, eos: new Set([-1]), maxNew: TOKENS, closeAt: TOKENS - 64,
    step: async () => rows[++stepNo % ROWS],
  });
  return { ms: (performance.now() - t0) / r.token_ids.length, tokens: r.token_ids };
}

// The small JS pieces a Python-driven loop would call (logits and bitmask never leave JS).
function jsPieces(plan) {
  let logits = rows[0], bitmask = null;
  return {
    start: () => { stepNo = 0; logits = rows[0]; },
    fill: async () => { bitmask = await matcher.getNextTokenBitmask(); },
    // mode 0: no preference, 1: every closing group, 2: the in-string groups; avoid: ids or null.
    pick: (mode, avoid) => pick(logits, V, bitmask,
      mode === 0 ? null : mode === 1 ? plan.groups : plan.inString.map((g) => plan.groups[g]),
      avoid ? new Set(avoid.toJs ? avoid.toJs() : avoid) : null),
    accept: (token) => matcher.acceptToken(token),
    finished: () => matcher.isTerminated(),
    step: async () => { logits = rows[++stepNo % ROWS]; },
  };
}

const PY_LOOP = `
from pyapp.generation.closing import AVOID_WINDOW, repeats, string_state
from pyapp.generation.loop import CHOICE_MAX
import bench_lm as lm
import time

async def decode(max_new, close_at, quotes, eos=frozenset({-1})):
    lm.start()
    out, choices, closed, text_state = [], [], False, (False, False)
    t0 = time.perf_counter()
    while len(out) < max_new:
        await lm.fill()
        if close_at is not None and not closed and (len(out) >= close_at or repeats(out)):
            closed = True
        mode = (2 if text_state[0] else 1) if closed else 0
        token, prob, allowed = lm.pick(mode, out[-AVOID_WINDOW:] if closed else None)
        if not lm.accept(token):
            raise RuntimeError("rejected")
        if 1 < allowed <= CHOICE_MAX:
            choices.append(prob)
        if token in eos:
            break
        out.append(token)
        text_state = string_state(text_state, quotes[token]) if token in quotes else (text_state[0], False)
        if lm.finished():
            break
        if len(out) >= max_new:
            break
        await lm.step(token)
    return (time.perf_counter() - t0) * 1000 / len(out), out
`;

function pyappFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? pyappFiles(path) : path.endsWith(".py") ? [path] : [];
  });
}

const pyodide = await loadPyodide();
for (const path of pyappFiles(join(root, "pyapp", "generation")).concat([join(root, "pyapp", "__init__.py")])) {
  const rel = relative(root, path);
  pyodide.FS.mkdirTree(`/home/pyodide/${dirname(rel)}`);
  pyodide.FS.writeFile(`/home/pyodide/${rel}`, readFileSync(path, "utf8"));
}
const planJson = JSON.parse(pyodide.runPython(`
import json, sys
sys.path.insert(0, "/home/pyodide")
from pyapp.generation.loop import decode_plan
vocab = [('"', 5), ('}', 9), ('"}', 8), ('},', 7), (',', 11)] + [(f"w{i}", 1000 + i) for i in range(50)]
json.dumps(decode_plan(vocab))`));
const plan = parsePlan(planJson);
pyodide.registerJsModule("bench_lm", jsPieces(plan));
pyodide.runPython(PY_LOOP);
const decodePy = pyodide.globals.get("decode");
const quotes = pyodide.toPy(new Map([...plan.quotes]));

const js = [], py = [];
for (let round = 0; round < ROUNDS; round++) {
  const a = await runJs(plan);
  const [ms, out] = (await decodePy(TOKENS, TOKENS - 64, quotes)).toJs();
  if (round === 0 && JSON.stringify(out) !== JSON.stringify(a.tokens)) throw new Error("the two loops chose different tokens");
  js.push(a.ms); py.push(ms);
}
const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
const extra = median(py) - median(js);
console.log(JSON.stringify({ tokens: TOKENS, rounds: ROUNDS, js_ms_per_token: +median(js).toFixed(4),
  py_ms_per_token: +median(py).toFixed(4), py_over_js_ms_per_token: +extra.toFixed(4),
  share_of_a_forward_pass: Object.fromEntries([20, 35, 60, 100].map((f) => [`${f}ms`, +(extra / f).toFixed(4)])) }));
