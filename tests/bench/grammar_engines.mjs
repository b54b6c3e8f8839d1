// Browser grammar-engine candidates, measured side by side under Node with SmolLM2's tokenizer:
//   xgrammar  = @mlc-ai/web-xgrammar (Wasm, options of web/lm.js; the reference for CPython's
//               xgrammar 0.2.8, whose masks it reproduced in the README's random-walk comparison)
//   so-*      = @huggingface/transformers-structured-output (pure JS), public API
//               (StructuredOutputProcessor, a transformers.js logits processor), three ways:
//               so-default  the schema as given (free whitespace, any property order,
//                           JSON Schema's open objects);
//               so-compact  + root "x-guidance": {whitespace_flexible: false} (no free whitespace);
//               so-strict   + additionalProperties:false / items:false where the schema leaves
//                           them open (what xgrammar's strict mode does).
//
// Prints: (a) per-token constraint time along the same token sequences, (b) the fraction of the
// JSONSchemaBench dev schemas each loads (errors grouped) and what each does with keywords it cannot
// enforce (probes: refuses / enforces / silently ignores), (c) mask equality with xgrammar along
// seeded random walks through xgrammar's masks. Numbers only, nothing asserted: timings on a
// shared machine are noisy, compare the engines within one run.
//
//   node tests/bench/grammar_engines.mjs [--limit N] [--walk-schemas K] [--walks W] [--steps S]
//        [--seed N] [--repeat R]
//
// --limit N: first N schemas of each set (default all: 819 + 947). --walk-schemas K: random walks
// on the task schema + the first K schemas of each set that all engines load (default 6).

import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DATA = join(ROOT, "..", "shared", "data", "jsonschemabench");
const SETS = ["glaiveai2k_dev", "github_easy_dev"];

const args = process.argv.slice(2);
function opt(name, dflt) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}
const LIMIT = opt("limit", Infinity);
const WALK_SCHEMAS = opt("walk-schemas", 6);
const WALKS = opt("walks", 2);
const STEPS = opt("steps", 60);
const SEED = opt("seed", 1);
const REPEAT = opt("repeat", 5);

// The task's schema (pyapp/tasks/extraction.py telemetry_extract().schema) and a record an
// extraction could produce, for a model-like token sequence.
const TASK_SCHEMA = {"properties": {"category": {"description": "the subsystem the line is about", "enum": ["thermal", "power", "network", "storage", "mechanical", "sensor", "software"], "title": "Category", "type": "string"}, "severity": {"enum": ["info", "warning", "error", "critical"], "title": "Severity", "type": "string"}, "component": {"description": "the affected part, e.g. 'fan 2 on node 4B'", "maxLength": 48, "minLength": 1, "title": "Component", "type": "string"}, "action_required": {"title": "Action Required", "type": "boolean"}, "summary": {"description": "one short sentence", "maxLength": 160, "minLength": 1, "title": "Summary", "type": "string"}}, "required": ["category", "severity", "component", "action_required", "summary"], "title": "TelemetryRecord", "type": "object"};
const TASK_RECORD = {category: "thermal", severity: "critical", component: "fan 2 on node 4B",
  action_required: true, summary: "Fan speed threshold exceeded on node 4B; the fan needs inspection."};

// ---------------------------------------------------------------------------------------------
// Tokenizer and engines

const modelDir = readdirSync(join(ROOT, "build", "models")).find((d) => d.startsWith("SmolLM2-135M-Instruct-"));
if (!modelDir) throw new Error("build/models/SmolLM2-135M-Instruct-* not found: build the models first");
const MODEL = join(ROOT, "build", "models", modelDir);

const transformers = await import("@huggingface/transformers");
transformers.env.allowRemoteModels = false;
transformers.env.localModelPath = join(ROOT, "build", "models") + "/";
const tokenizer = await transformers.AutoTokenizer.from_pretrained(modelDir);
const { StructuredOutputProcessor } = await import("@huggingface/transformers-structured-output");
const soVersion = JSON.parse(readFileSync(join(ROOT, "node_modules/@huggingface/transformers-structured-output/package.json"), "utf8")).version;

const config = JSON.parse(readFileSync(join(MODEL, "config.json"), "utf8"));
const generation = JSON.parse(readFileSync(join(MODEL, "generation_config.json"), "utf8"));
const V = config.vocab_size;
const EOS = [generation.eos_token_id ?? 2].flat();
const WORDS = Math.ceil(V / 32);

// web-xgrammar's UMD bundle, run as CommonJS (its package says "type": "module", and the bundle
// needs require() under Node).
function loadXGrammar() {
  const file = join(ROOT, "node_modules/@mlc-ai/web-xgrammar/lib/index.js");
  const module = { exports: {} };
  const wrapped = vm.runInThisContext(
    `(function (exports, module, require, __filename, __dirname) {${readFileSync(file, "utf8")}\n})`, {
      filename: file,
      importModuleDynamically: vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER ?? ((spec) => import(spec)),
    });
  wrapped(module.exports, module, createRequire(file), file, dirname(file));
  return module.exports;
}
const xgr = loadXGrammar();
const xgrVersion = JSON.parse(readFileSync(join(ROOT, "node_modules/@mlc-ai/web-xgrammar/package.json"), "utf8")).version;

// The vocabulary exactly as web/lm.js load() gives it to xgrammar.
const tokJson = JSON.parse(readFileSync(join(MODEL, "tokenizer.json"), "utf8"));
const vocab = { ...tokJson.model.vocab };
for (const added of tokJson.added_tokens ?? []) if (!(added.content in vocab)) vocab[added.content] = added.id;
const encoded = new Array(V).fill("");
for (const [text, i] of Object.entries(vocab)) if (i < V) encoded[i] = text;
const byteLen = encoded.map((t) => [...t].length);  // byte-level: one character per byte

let t0 = performance.now();
const info = await xgr.TokenizerInfo.createTokenizerInfo(encoded, "byte_level", false, V, [...EOS].sort((a, b) => a - b));
const compiler = await xgr.GrammarCompiler.createGrammarCompiler(info);
const xgrSetupMs = performance.now() - t0;

// transformers-structured-output takes the EOS id from the tokenizer; this tokenizer_config says
// eos_token <|im_start|> (1) while generation stops on generation_config's <|im_end|> (2), as
// web/lm.js does, so it gets the same EOS as xgrammar through a tokenizer-like object.
const soTokenizer = { _tokenizerJSON: tokenizer._tokenizerJSON, eos_token_id: EOS[0] };
t0 = performance.now();
StructuredOutputProcessor.warmup(soTokenizer);
const soSetupMs = performance.now() - t0;

// A failed C++ check in the Wasm build prints "[FATAL] file:line: why" to stderr and throws
// "Aborted()"; the last such line is kept to group the errors by it.
let lastFatal = "";
for (const stream of [process.stderr]) {
  const write = stream.write.bind(stream);
  stream.write = (chunk, ...rest) => {
    const m = /\[FATAL\][^:]*:\d+: (.*)/.exec(String(chunk));
    if (m) lastFatal = m[1];
    return write(chunk, ...rest);
  };
}
const consoleError = console.error.bind(console);
console.error = (...xs) => {
  const m = /\[FATAL\][^:]*:\d+: (.*)/.exec(xs.join(" "));
  if (m) lastFatal = m[1];
  consoleError(...xs);
};

const XGR_OPTS = [false, -1, [",", ":"], true];  // web/lm.js compileSchema(): compact, strict
async function xgrCompile(schema) {
  return compiler.compileJSONSchema(JSON.stringify(schema), ...XGR_OPTS);
}

const SO_VARIANTS = {
  "so-default": (s) => s,
  "so-compact": (s) => compactSchema(s),
  "so-strict": (s) => compactSchema(closeSchema(s)),
};
function compactSchema(schema) {
  if (typeof schema !== "object" || schema === null) return schema;
  return { ...schema, "x-guidance": { item_separator: ",", key_separator: ":", whitespace_flexible: false } };
}
// xgrammar's strict mode: objects and tuples the schema leaves open are closed.
function closeSchema(schema) {
  if (Array.isArray(schema)) return schema.map(closeSchema);
  if (typeof schema !== "object" || schema === null) return schema;
  const out = {};
  for (const [key, value] of Object.entries(schema)) {
    out[key] = ["const", "enum", "default", "examples", "required"].includes(key) ? value
      : ["properties", "$defs", "definitions", "patternProperties", "dependentSchemas"].includes(key) && isObj(value)
        ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, closeSchema(v)]))
        : closeSchema(value);
  }
  const types = [schema.type ?? []].flat();
  if ((types.includes("object") || "properties" in schema) && !("additionalProperties" in schema)
      && !("patternProperties" in schema)) out.additionalProperties = false;
  if ("prefixItems" in schema && !("items" in schema)) out.items = false;
  return out;
}
function isObj(v) { return typeof v === "object" && v !== null && !Array.isArray(v); }

// One constraint step of each engine, with the work a decode step does: accept the previous
// token, compute the mask, apply it to the logits.
const logitsData = new Float32Array(V);
const logits = new transformers.Tensor("float32", logitsData, [1, V]);

function applyBitmask(data, mask) {  // as transformers-structured-output's applyMask
  for (let word = 0; word < WORDS; ++word) {
    const bits = mask[word] | 0;
    if (bits === -1) continue;
    const start = word << 5;
    if (bits === 0) data.fill(-Infinity, start, Math.min(start + 32, V));
    else for (let bit = 0; bit < 32 && start + bit < V; ++bit) if (!(bits & (1 << bit))) data[start + bit] = -Infinity;
  }
}

class XgrCursor {
  static async create(compiled) {
    const c = new XgrCursor();
    c.matcher = await xgr.GrammarMatcher.createGrammarMatcher(compiled, undefined, true);
    return c;
  }
  // Returns {mask (Uint32Array copy), ms, maskMs} for the next position, after accepting `prev`.
  async step(prev) {
    const t = performance.now();
    if (prev !== undefined && !this.matcher.acceptToken(prev)) throw new Error(`xgrammar rejected ${prev}`);
    const t1 = performance.now();
    const bitmask = await this.matcher.getNextTokenBitmask();
    const t2 = performance.now();
    logitsData.fill(0);
    const t3 = performance.now();
    applyBitmask(logitsData, bitmask);
    const t4 = performance.now();
    return { mask: new Uint32Array(bitmask.buffer, bitmask.byteOffset, WORDS).slice(), ms: (t1 - t) + (t2 - t1) + (t4 - t3), maskMs: t2 - t1 };
  }
  accept(token) { return this.matcher.acceptToken(token); }
  terminated() { return this.matcher.isTerminated(); }
  dispose() { this.matcher.dispose(); }
}

class SoCursor {
  constructor(schema) {
    this.processor = new StructuredOutputProcessor(soTokenizer, { type: "json_schema", json_schema: schema });
    this.ids = [1n];  // a one-token "prompt"; the processor commits what follows it
  }
  step(prev) {
    if (prev !== undefined) this.ids.push(BigInt(prev));
    logitsData.fill(0);
    const t = performance.now();
    this.processor([this.ids], logits);
    const ms = performance.now() - t;
    const mask = new Uint32Array(WORDS);
    for (let i = 0; i < V; ++i) if (logitsData[i] !== -Infinity) mask[i >>> 5] |= 1 << (i & 31);
    return { mask, ms };
  }
}

const has = (mask, id) => (mask[id >>> 5] >>> (id & 31)) & 1;
function popcount(mask) {
  let n = 0;
  for (let w of mask) { w >>>= 0; while (w) { w &= w - 1; n++; } }
  return n;
}
function relation(a, b) {  // a vs b: "equal" | "superset" | "subset" | "differs"
  let aExtra = false, bExtra = false;
  for (let i = 0; i < WORDS; ++i) {
    if (a[i] & ~b[i]) aExtra = true;
    if (b[i] & ~a[i]) bExtra = true;
  }
  return aExtra ? (bExtra ? "differs" : "superset") : (bExtra ? "subset" : "equal");
}
function sampleDiff(a, b, n = 6) {  // tokens in a and not in b
  const out = [];
  for (let i = 0; i < V && out.length < n; ++i) if (has(a, i) && !has(b, i)) out.push(JSON.stringify(tokenizer.decode([i])));
  return out.join(" ");
}

function quantile(xs, q) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "-");
const pct = (a, b) => `${a}/${b} (${b ? ((100 * a) / b).toFixed(1) : "-"}%)`;

// ---------------------------------------------------------------------------------------------
// The project's keyword gate (a port of pyapp/grammar/coverage.py check_schema): schemas using a
// keyword xgrammar 0.2.8 silently drops are refused before compiling.

const GATE_UNSUPPORTED = new Set(["not", "if", "then", "else", "uniqueItems", "contains", "minContains",
  "maxContains", "propertyNames", "dependencies", "dependentRequired", "dependentSchemas",
  "unevaluatedProperties", "unevaluatedItems", "additionalItems", "$dynamicRef", "$recursiveRef"]);
const GATE_FORMATS = new Set(["date-time", "date", "time", "duration", "email", "idn-email", "hostname",
  "idn-hostname", "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template",
  "json-pointer", "relative-json-pointer", "regex"]);
function gateHarmless(key, value) {
  const empty = isObj(value) && Object.keys(value).length === 0;
  if (key === "uniqueItems") return value === false;
  if (["additionalItems", "unevaluatedProperties", "unevaluatedItems", "propertyNames", "contains", "if",
       "then", "else"].includes(key)) return value === true || empty;
  if (["dependencies", "dependentRequired", "dependentSchemas"].includes(key)) return empty;
  return false;
}
function gate(schema, path = "#") {  // null, or why the project refuses the schema
  if (typeof schema === "boolean") return null;
  if (!isObj(schema)) return "<schema> not an object";
  for (const [key, value] of Object.entries(schema)) {
    if (key === "additionalItems" && !Array.isArray(schema.items)) continue;
    if (GATE_UNSUPPORTED.has(key) && !gateHarmless(key, value)) return `${key}`;
    if (key === "format" && !GATE_FORMATS.has(value)) return `format ${JSON.stringify(value)}`;
    if (key === "multipleOf" && schema.type !== "integer") return "multipleOf (non-integer)";
    if (key === "items" && Array.isArray(value)) return "items (tuple form)";
    if (key === "$ref" && typeof value === "string" && !value.startsWith("#")) return "$ref (remote)";
  }
  const subs = [];
  for (const k of ["additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames",
                   "unevaluatedProperties", "unevaluatedItems", "additionalItems"])
    if (k in schema && (isObj(schema[k]) || typeof schema[k] === "boolean")) subs.push([schema[k], `${path}/${k}`]);
  for (const k of ["anyOf", "oneOf", "allOf", "prefixItems"])
    if (Array.isArray(schema[k])) schema[k].forEach((s, i) => subs.push([s, `${path}/${k}/${i}`]));
  for (const k of ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"])
    if (isObj(schema[k])) for (const [n, s] of Object.entries(schema[k])) subs.push([s, `${path}/${k}/${n}`]);
  for (const [s, p] of subs) {
    const why = gate(s, p);
    if (why) return why;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// (b) Coverage: which schemas load (compile + first mask), errors grouped.

function errorKey(engine, e) {
  let m = String(e?.message ?? e).trim().split("\n")[0];
  if (/^Aborted\(/.test(m)) m = `Aborted: ${lastFatal.replace(/\d+/g, "N")}`;
  m = m.replace(/^\[[\d:. -]+\]\s*\S+:\s*/, "");  // xgrammar's "[time] file:line: "
  m = m.replace(/^\$[^:\s]*:\s*/, "").replace(/\$(\.schema\[\d+\])*/g, "$…");  // structured-output's paths
  m = m.replace(/"[^"]{24,}"/g, '"…"');
  return m.length > 110 ? m.slice(0, 110) + "…" : m;
}

const sets = {};
for (const name of SETS) {
  const rows = readFileSync(join(DATA, `${name}.jsonl`), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  sets[name] = rows.slice(0, Math.min(rows.length, LIMIT));
}

const engines = ["xgrammar", ...Object.keys(SO_VARIANTS)];
const coverage = {};   // set -> engine -> {ok, errors: Map, ms}
const loadable = {};   // set -> [schema rows all engines load]
const slowest = [];    // [ms, schema] of xgrammar loads
console.log(`# grammar engines, SmolLM2 vocabulary ${V} tokens, EOS ${EOS.join(",")}, node ${process.version}`);
console.log(`web-xgrammar ${xgrVersion}: tokenizer info + compiler ${f(xgrSetupMs, 0)} ms; ` +
            `transformers-structured-output ${soVersion}: warmup (token tries) ${f(soSetupMs, 0)} ms`);
const tAll = performance.now();
for (const [name, rows] of Object.entries(sets)) {
  coverage[name] = {};
  for (const e of [...engines, "xgrammar+gate"]) coverage[name][e] = { ok: 0, errors: new Map(), ms: 0 };
  loadable[name] = [];
  for (const [n, row] of rows.entries()) {
    if (n % 100 === 0) process.stderr.write(`  … ${name} ${n}/${rows.length}, ${f((performance.now() - tAll) / 1000, 0)} s\n`);
    let all = true;
    // xgrammar
    let t = performance.now();
    let xok = false;
    try {
      const compiled = await xgrCompile(row.schema);
      const c = await XgrCursor.create(compiled);
      const { mask } = await c.step();
      c.dispose();
      compiled.dispose();
      if (!popcount(mask)) throw new Error("empty first mask");
      xok = true;
      coverage[name].xgrammar.ok++;
    } catch (e) {
      const k = errorKey("xgrammar", e);
      lastFatal = "";
      coverage[name].xgrammar.errors.set(k, (coverage[name].xgrammar.errors.get(k) ?? 0) + 1);
      all = false;
    }
    coverage[name].xgrammar.ms += performance.now() - t;
    slowest.push([performance.now() - t, `${name}:${row.id}`]);
    const why = gate(row.schema);
    const gated = coverage[name]["xgrammar+gate"];
    if (xok && !why) gated.ok++;
    else {
      const k = xok ? `refused by gate: ${why}` : "xgrammar error";
      gated.errors.set(k, (gated.errors.get(k) ?? 0) + 1);
      all = false;
    }
    // structured-output variants (fresh copy: its mask cache is per schema object)
    for (const [variant, make] of Object.entries(SO_VARIANTS)) {
      t = performance.now();
      try {
        const c = new SoCursor(make(structuredClone(row.schema)));
        const { mask } = c.step();
        if (!popcount(mask)) throw new Error("empty first mask");
        coverage[name][variant].ok++;
      } catch (e) {
        const k = errorKey(variant, e);
        coverage[name][variant].errors.set(k, (coverage[name][variant].errors.get(k) ?? 0) + 1);
        all = false;
      }
      coverage[name][variant].ms += performance.now() - t;
    }
    if (all) loadable[name].push(row);
  }
}

console.log(`\n## (b) schemas loaded (compile + first mask); xgrammar+gate = also passes pyapp/grammar/coverage.py`);
console.log(`| engine | ${SETS.map((s) => `${s} (${sets[s].length})`).join(" | ")} | load ms/schema (mean) |`);
console.log(`|---|${SETS.map(() => "---").join("|")}|---|`);
for (const e of [...engines.slice(0, 1), "xgrammar+gate", ...engines.slice(1)]) {
  const ms = e === "xgrammar+gate" ? "" : f(SETS.reduce((a, s) => a + coverage[s][e].ms, 0) / SETS.reduce((a, s) => a + sets[s].length, 0), 1);
  console.log(`| ${e} | ${SETS.map((s) => pct(coverage[s][e].ok, sets[s].length)).join(" | ")} | ${ms} |`);
}
console.log(`slowest xgrammar loads: ${slowest.sort((a, b) => b[0] - a[0]).slice(0, 5).map(([ms, id]) => `${id} ${f(ms, 0)} ms`).join(", ")}`);
for (const e of ["xgrammar", "xgrammar+gate", "so-default", "so-strict"]) {
  const merged = new Map();
  for (const s of SETS) for (const [k, n] of coverage[s][e].errors) merged.set(k, (merged.get(k) ?? 0) + n);
  if (!merged.size) continue;
  console.log(`\n${e} errors (both sets, top 12 of ${merged.size} kinds):`);
  for (const [k, n] of [...merged].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${String(n).padStart(5)}  ${k}`);
}

// ---------------------------------------------------------------------------------------------
// (b) Keywords an engine cannot enforce: refused, enforced, or silently ignored? Each probe runs
// a schema-violating instance (and a valid one, as a sanity check) through the engine.

const PROBES = [
  ["uniqueItems", { type: "array", items: { type: "integer" }, uniqueItems: true }, [1, 1], [1, 2]],
  ["not", { type: "integer", not: { const: 3 } }, 3, 4],
  ["if/then", { type: "object", properties: { a: { type: "integer" }, b: { type: "string" } }, required: ["a"],
    if: { properties: { a: { const: 1 } }, required: ["a"] }, then: { required: ["b"] } }, { a: 1 }, { a: 1, b: "x" }],
  ["propertyNames", { type: "object", additionalProperties: { type: "integer" }, propertyNames: { maxLength: 2 } }, { abc: 1 }, { ab: 1 }],
  ["dependentRequired", { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } },
    dependentRequired: { a: ["b"] } }, { a: 1 }, { a: 1, b: 2 }],
  ["contains", { type: "array", items: { type: "integer" }, contains: { const: 5 } }, [1], [5]],
  ["multipleOf 0.5", { type: "number", multipleOf: 0.5 }, 0.3, 1.5],
  ["minimum 1.5", { type: "number", minimum: 1.5 }, 1.2, 2],
  ["maxProperties", { type: "object", additionalProperties: { type: "integer" }, maxProperties: 1 }, { a: 1, b: 2 }, { a: 1 }],
  ["oneOf (overlap)", { oneOf: [{ type: "integer" }, { type: "number", minimum: 0 }] }, 1, 2.5],
  ["maxLength", { type: "string", maxLength: 3 }, "abcd", "abc"],
  ["pattern", { type: "string", pattern: "^[a-z]+$" }, "A1", "ab"],
  ["pattern+minLength", { type: "string", pattern: "^[a-z]+$", minLength: 3 }, "ab", "abc"],
  ["format email", { type: "string", format: "email" }, "nope", "a@b.co"],
  ["format date-time", { type: "string", format: "date-time" }, "yesterday", "2024-01-02T03:04:05Z"],
  ["format (unknown) color", { type: "string", format: "color" }, null, "red"],
  ["open object (extra key)", { type: "object", properties: { a: { type: "integer" } } }, null, { a: 1, z: 2 }],
  ["property order", { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } }, required: ["a", "b"] }, null, { b: 2, a: 1 }],
];
const wrap = (s) => ({ type: "object", properties: { v: s }, required: ["v"], additionalProperties: false });

// true: the engine lets the whole instance (compact JSON) through and allows EOS after it.
async function passes(engine, schema, instance) {
  const ids = Array.from(tokenizer.encode(JSON.stringify({ v: instance }), { add_special_tokens: false }));
  if (engine === "xgrammar") {
    const compiled = await xgrCompile(schema);
    const c = await XgrCursor.create(compiled);
    try {
      for (const id of ids) if (!c.accept(id)) return false;
      return c.terminated();
    } finally { c.dispose(); compiled.dispose(); }
  }
  const c = new SoCursor(SO_VARIANTS[engine](schema));
  let prev;
  for (const id of ids) {
    if (!has(c.step(prev).mask, id)) return false;
    prev = id;
  }
  return has(c.step(prev).mask, EOS[0]) === 1;
}

console.log(`\n## (b) keywords: violating instance let through? (IGNORED = generated output can break the schema)`);
console.log(`| probe | gate | ${engines.join(" | ")} |`);
console.log(`|---|---|${engines.map(() => "---").join("|")}|`);
for (const [name, schema, bad, good] of PROBES) {
  const cells = [];
  for (const e of engines) {
    try {
      const s = wrap(schema);
      const goodOk = await passes(e, s, good);
      if (bad === null) { cells.push(goodOk ? "accepts" : "rejects"); continue; }
      const badOk = await passes(e, s, bad);
      cells.push(badOk ? "IGNORED" : goodOk ? "enforced" : "rejects valid too");
    } catch (err) {
      cells.push("refused");
    }
  }
  const why = gate(wrap(schema));
  console.log(`| ${name} | ${why ? "refused" : "-"} | ${cells.join(" | ")} |`);
}

// ---------------------------------------------------------------------------------------------
// (a) + (c): along the same token sequences, per-step time and mask equality with xgrammar.

function rng(seed) {  // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function allowedIds(mask) {
  const out = [];
  for (let i = 0; i < V; ++i) if (has(mask, i)) out.push(i);
  return out;
}

const times = { xgrammar: [], xgrammarMask: [] };
for (const v of Object.keys(SO_VARIANTS)) { times[v] = []; times[`${v} warm`] = []; }
const natural = { xgrammar: [], xgrammarMask: [] };
for (const v of Object.keys(SO_VARIANTS)) { natural[v] = []; natural[`${v} warm`] = []; }
const cmp = {};  // variant -> {equal, superset, subset, differs, rejected, examples: []}
for (const v of Object.keys(SO_VARIANTS)) cmp[v] = { equal: 0, superset: 0, subset: 0, differs: 0, rejected: 0, walks: 0, examples: [] };

// Runs one token sequence (fixed, or chosen by `choose` from xgrammar's mask) through xgrammar and
// every structured-output variant, comparing masks at each step.
async function runSequence(label, schema, { ids, choose, steps }, timesInto) {
  const compiled = await xgrCompile(schema);
  const xc = await XgrCursor.create(compiled);
  const so = {};
  for (const [v, make] of Object.entries(SO_VARIANTS)) so[v] = { schema: make(structuredClone(schema)) };
  for (const v of Object.keys(so)) so[v].cursor = new SoCursor(so[v].schema);
  const seq = [];
  let prev;
  for (let step = 0; step < steps; ++step) {
    if (xc.terminated()) break;
    const x = await xc.step(prev);
    timesInto.xgrammar.push(x.ms);
    timesInto.xgrammarMask.push(x.maskMs);
    const token = ids ? ids[step] : choose(x.mask);
    for (const [v, s] of Object.entries(so)) {
      if (!s.cursor) continue;
      const r = s.cursor.step(prev);
      timesInto[v].push(r.ms);
      const rel = relation(r.mask, x.mask);
      cmp[v][rel]++;
      if (rel !== "equal" && cmp[v].examples.filter((e) => e.rel === rel).length < 3
          && !cmp[v].examples.some((e) => e.rel === rel && e.label === label))
        cmp[v].examples.push({ label, step, rel, so: popcount(r.mask), x: popcount(x.mask),
          after: JSON.stringify(seq.length ? tokenizer.decode(seq).slice(-40) : ""),
          onlySo: sampleDiff(r.mask, x.mask), onlyX: sampleDiff(x.mask, r.mask) });
      if (token === undefined || !has(r.mask, token)) {
        if (token !== undefined) cmp[v].rejected++;
        s.cursor = null;
      }
    }
    if (token === undefined || EOS.includes(token)) break;
    seq.push(token);
    prev = token;
  }
  xc.dispose();
  compiled.dispose();
  for (const v of Object.keys(so)) cmp[v].walks++;
  // warm: the same sequence again, same schema objects (structured-output caches masks per schema
  // object and state, across requests).
  for (const [v, s] of Object.entries(so)) {
    let c;
    try { c = new SoCursor(s.schema); } catch { continue; }
    let p;
    for (const id of seq) {
      try { timesInto[`${v} warm`].push(c.step(p).ms); } catch { break; }
      p = id;
    }
  }
  return seq;
}

const walkSchemas = [{ id: "telemetry-extract (task)", schema: TASK_SCHEMA }];
for (const s of SETS) for (const row of loadable[s].slice(0, WALK_SCHEMAS)) walkSchemas.push({ id: `${s}:${row.id}`, schema: row.schema });

const tWalk = performance.now();
// The model-like sequence: the task record's compact JSON, as the tokenizer splits it.
const recordIds = Array.from(tokenizer.encode(JSON.stringify(TASK_RECORD), { add_special_tokens: false }));
for (let r = 0; r < REPEAT; ++r)
  await runSequence("task record", TASK_SCHEMA, { ids: [...recordIds, EOS[0]], steps: recordIds.length + 1 }, natural);

let walkSteps = 0, finished = 0;
for (const [k, { id, schema }] of walkSchemas.entries()) {
  for (let w = 0; w < WALKS; ++w) {
    const rand = rng(SEED * 1000003 + k * 101 + w);
    // Uniform over xgrammar's allowed tokens, but half the time only among the short ones (≤ 2
    // bytes: quotes, brackets, digits), so strings close and walks reach the structure.
    const choose = (mask) => {
      const ids = allowedIds(mask);
      const short = ids.filter((i) => byteLen[i] <= 2);
      const pool = rand() < 0.5 && short.length ? short : ids;
      return pool[Math.floor(rand() * pool.length)];
    };
    const seq = await runSequence(id, schema, { choose, steps: STEPS }, times);
    walkSteps += seq.length;
  }
}
const walkMs = performance.now() - tWalk;

console.log(`\n## (a) constraint time per token, ms (accept previous token + mask + apply to the ${V} logits)`);
console.log(`task record = the telemetry-extract schema along a ${recordIds.length}-token record, ${REPEAT}×; ` +
            `walks = ${walkSchemas.length} schemas × ${WALKS} seeded walks, ≤ ${STEPS} steps (${walkSteps} tokens). ` +
            `"warm" = same sequence again with the same schema object (structured-output's mask cache hit).`);
console.log(`| engine | task record median | p95 | walks median | p95 | mean | vs xgrammar (walk median) |`);
console.log(`|---|---|---|---|---|---|---|`);
const xMed = quantile(times.xgrammar, 0.5);
for (const k of Object.keys(times)) {
  const label = k === "xgrammarMask" ? "xgrammar (mask only)" : k;
  const mean = times[k].reduce((a, b) => a + b, 0) / times[k].length;
  console.log(`| ${label} | ${f(quantile(natural[k], 0.5), 3)} | ${f(quantile(natural[k], 0.95), 3)} | ` +
              `${f(quantile(times[k], 0.5), 3)} | ${f(quantile(times[k], 0.95), 3)} | ${f(mean, 3)} | ` +
              `${f(quantile(times[k], 0.5) / xMed, 2)}× |`);
}

console.log(`\n## (c) masks vs xgrammar at each step of the walks and the task record (structured-output mask ⊇/⊆ xgrammar's)`);
console.log(`| variant | steps | equal | superset | subset | differs | walk token refused |`);
console.log(`|---|---|---|---|---|---|---|`);
for (const [v, c] of Object.entries(cmp)) {
  const n = c.equal + c.superset + c.subset + c.differs;
  console.log(`| ${v} | ${n} | ${pct(c.equal, n)} | ${c.superset} | ${c.subset} | ${c.differs} | ${c.rejected} of ${c.walks} sequences |`);
}
for (const [v, c] of Object.entries(cmp)) {
  for (const e of c.examples)
    console.log(`  ${v} @ ${e.label} step ${e.step} after ${e.after}: ${e.rel}, ${e.so} vs ${e.x} allowed; ` +
                `only so: ${e.onlySo || "-"}; only xgrammar: ${e.onlyX || "-"}`);
}
console.log(`\nwalk schemas: ${walkSchemas.map((s) => s.id).join(", ")}`);
console.log(`wall: ${f((performance.now() - tAll) / 1000, 1)} s (walks ${f(walkMs / 1000, 1)} s)`);
