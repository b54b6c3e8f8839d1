// The language model in the worker: SmolLM2 through the transformers.js module that
// web/inference.js configures (our origin only), the grammar from @mlc-ai/web-xgrammar (Wasm,
// the same C++ engine as PyPI xgrammar), and the pieces pyapp/generation/loop.py's decode loop
// drives from Python (pyapp/backends/browser_decode.py): a step model keeping the logits and the
// KV cache here, the grammar cursor, and the pick kernel (web/pick.js), so that per token only a
// token id and (token, probability, allowed count) cross into Python. Python
// (pyapp/backends/browser_lm.py) builds the prompt, tokenises it through encode(), runs the loop
// and builds the Generation; everything is the same task code as under CPython.
//
// Loaded lazily, the first time an extraction task runs: classification never pays for it.

import { addVerifiedFiles, forgetVerifiedFiles, loadCausalLM, runSession } from "./inference.js";
import { externalData as externalDataOf } from "./lmweights.js";
import { ShardedModelStore } from "./modelstore.js";
import { forced as onlyAllowed, pick as pickAllowed } from "./pick.js";

let lm = null;
let cancelRequested = false;
let onToken = null;
const grammars = new Map();

// Called by the worker when a run starts, and when the page asks to cancel.
export function resetCancel() { cancelRequested = false; }
export function cancel() { cancelRequested = true; }
// fn({tokens, text}) after every generated token (streaming to the page).
export function setTokenListener(fn) { onToken = fn; }

// options: {modelsBase, lm: {model_id, dtype, variants, max_tokens}, transformersEnv,
// xgrammarUrl, device}; onProgress(fraction, detail). Returns JSON of what Python needs.
// The language model's files (the variant in use only), downloaded and verified into the model
// store; returns them. Also used ahead of time so extraction works offline after one visit.
export async function fetchFiles(modelsBase, { model_id, dtype }, onProgress = () => {}) {
  const response = await fetch(`${modelsBase}${model_id}/manifest.json`);
  if (!response.ok) throw new Error(`LM manifest: HTTP ${response.status}`);
  const manifest = await response.json();
  // Only the variant in use: the other variants' files (<stem>.onnx and any <stem>.* beside it,
  // such as the q8 variant's codes) are never downloaded.
  const wanted = manifest.variants?.[dtype];
  const others = Object.values(manifest.variants ?? {}).filter((p) => p !== wanted);
  const otherVariant = (path) => others.some((p) => path === p || path.startsWith(p.replace(/\.onnx$/, ".")));
  const subset = { ...manifest, files: manifest.files.filter((f) => !otherVariant(f.path) && !f.path.startsWith("checks/")) };
  const store = new ShardedModelStore({
    onProgress: ({ done, total, fraction }) =>
      onProgress(fraction, `Language model ${(done / 2 ** 20).toFixed(0)} / ${(total / 2 ** 20).toFixed(0)} MiB`),
  });
  return store.ensure(modelsBase, subset);
}

// The first variant whose memory estimate fits, next to what the page already uses, within the
// budget; a clear refusal, before any download, when none does. What the page uses is its
// measured memory (performance.measureUserAgentSpecificMemory, passed in by the page) when
// known, and never less than the estimates of every encoder the page holds when the model runs
// (encoderMemoryBytes: worker.js encoderMemory).
export function chooseVariant({ lm, encoderMemoryBytes = 0, memoryBudgetBytes: budget, measuredMemoryBytes: measured = null }) {
  const variants = lm.variants?.length ? lm.variants : [{ dtype: lm.dtype, estimated_memory_bytes: lm.estimated_memory_bytes }];
  const used = Math.max(measured ?? 0, encoderMemoryBytes);
  const pick = variants.find((v) => !budget || used + v.estimated_memory_bytes <= budget);
  if (pick) return { ...lm, dtype: pick.dtype, estimated_memory_bytes: pick.estimated_memory_bytes };
  const need = Math.min(...variants.map((v) => v.estimated_memory_bytes)) + used;
  const mib = (b) => (b / 2 ** 20).toFixed(0);
  throw new Error(`The language model needs about ${mib(need)} MiB of memory with what the page already uses${measured ? " (measured)" : ""}, over this deployment's budget of ${mib(budget)} MiB; no smaller variant fits.`);
}

export async function load(optionsJson, onProgress = () => {}) {
  if (lm) return lm.info;
  const options = JSON.parse(optionsJson);
  const { modelsBase, device } = options;
  const chosen = chooseVariant(options);
  const { model_id, dtype } = chosen;
  const files = await fetchFiles(modelsBase, chosen, (fraction, detail) => onProgress(0.8 * fraction, detail));
  addVerifiedFiles(files);
  onProgress(0.85, "Language model: loading");
  // The q8 variant's float weights, folded here from its GGUF codes (web/lmweights.js) and
  // handed to onnxruntime as external data: its heap then holds them once (README "Memory").
  const planPath = [...files.keys()].find((path) => path.endsWith(".fold.json"));
  let externalData;
  if (planPath) {
    const plan = JSON.parse(new TextDecoder().decode(files.get(planPath)));
    const codes = files.get(planPath.replace(/[^/]*$/, plan.codes));
    externalData = [{ path: plan.data, data: externalDataOf(plan, codes) }];
  }
  const { tokenizer, model, session, Tensor } = await loadCausalLM(options.transformersEnv, model_id, { dtype, device, externalData });
  // The model's bytes are in onnxruntime's heap now: another copy in JS is waste (the graph, the
  // codes and the float weights built from them: ~0.8 GB).
  forgetVerifiedFiles([...files.keys()].filter((path) => /\.(onnx|codes)$/.test(path)));
  for (const file of externalData ?? []) file.data = null;
  for (const path of [...files.keys()]) if (/\.(onnx|codes)$/.test(path)) files.delete(path);
  const config = model.config;
  const layers = config.num_hidden_layers;
  const kvHeads = config.num_key_value_heads ?? config.num_attention_heads;
  const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  const vocabSize = config.vocab_size;
  const generation = JSON.parse(new TextDecoder().decode(files.get(pathOf(modelsBase, model_id, "generation_config.json"))));
  const eos = [generation.eos_token_id ?? 2].flat();

  onProgress(0.95, "Grammar engine (XGrammar)");
  await import(options.xgrammarUrl);  // UMD bundle: defines globalThis.xgrammar
  const xgr = globalThis.xgrammar;
  // The vocabulary as models/cpython/xgrammar_engine.py gives it to xgrammar under CPython.
  const tok = JSON.parse(new TextDecoder().decode(files.get(pathOf(modelsBase, model_id, "tokenizer.json"))));
  const vocab = { ...tok.model.vocab };
  for (const added of tok.added_tokens ?? []) if (!(added.content in vocab)) vocab[added.content] = added.id;
  const encoded = new Array(vocabSize).fill("");
  for (const [text, i] of Object.entries(vocab)) if (i < vocabSize) encoded[i] = text;
  // Special tokens as empty strings, never allowed inside the JSON (as models/cpython/xgrammar_engine.py).
  for (const added of tok.added_tokens ?? []) if (added.special && added.id < vocabSize) encoded[added.id] = "";
  const info = await xgr.TokenizerInfo.createTokenizerInfo(encoded, "byte_level", false, vocabSize, [...eos].sort((a, b) => a - b));
  const compiler = await xgr.GrammarCompiler.createGrammarCompiler(info);

  const empty = new Tensor("float32", new Float32Array(0), [1, kvHeads, 0, headDim]).ort_tensor;
  lm = {
    tokenizer, model, session, layers, vocabSize, eos: new Set(eos), xgr, compiler, Tensor, empty,
    vocabTexts: encoded,
    info: JSON.stringify({ vocab_size: vocabSize, eos_ids: eos, model_id, dtype, max_tokens: options.lm.max_tokens,
                           estimated_memory_bytes: chosen.estimated_memory_bytes,
                           device, threads: options.transformersEnv.threads ?? 1 }),
  };
  onProgress(1, "Language model ready");
  return lm.info;
}

// What load() resolved with (JSON), or null before.
export function loadedInfo() {
  return lm?.info ?? null;
}

function pathOf(modelsBase, modelId, file) {
  return new URL(`${modelsBase}${modelId}/${file}`, location.origin).pathname;
}

// Compiled once per schema, with the options of models/cpython/xgrammar_engine.py
// (compact JSON: no free whitespace, no indent, "," and ":" separators, strict).
export async function compileSchema(schemaJson) {
  if (!grammars.has(schemaJson)) {
    const compiled = await lm.compiler.compileJSONSchema(schemaJson, false, -1, [",", ":"], true);
    grammars.set(schemaJson, compiled);
  }
  return schemaJson;
}

export function encode(text) {
  return JSON.stringify(Array.from(lm.tokenizer.encode(text, { add_special_tokens: false })));
}

export function decode(idsJson) {
  return lm.tokenizer.decode(JSON.parse(idsJson), { skip_special_tokens: true });
}

// An output's values on the CPU. On WebGPU transformers.js asks for present.* on the GPU
// ("gpu-buffer", fed back as the next past without a copy) and logits stay on the CPU; a GPU
// tensor is downloaded here in case a build of transformers.js places logits there too.
async function readable(tensor) {
  return tensor.location === "gpu-buffer" ? tensor.getData() : tensor.data;
}

// Prefilled shared prompt prefixes (a task's instructions): ids joined → {past, length}, as
// OnnxCausalLM.start_after in models/cpython/lm.py. A few tasks' worth, ~46 KB a token.
const prefixes = new Map();
const PREFIX_CACHE_SIZE = 4;

async function prefixState(prefix) {
  const key = prefix.join(",");
  let state = prefixes.get(key);
  if (!state) {
    state = { ...(await forward(prefix, null, 0)), logits: null, cached: true };
    prefixes.set(key, state);
    for (const [old, entry] of prefixes) {
      if (prefixes.size <= PREFIX_CACHE_SIZE) break;
      prefixes.delete(old);
      for (const tensor of entry.past) tensor.dispose?.();
    }
  }
  prefixes.delete(key);
  prefixes.set(key, state);  // most recently used last
  return state;
}

// One forward pass: feeds as OnnxCausalLM._run in models/cpython/lm.py. ``past`` is
// freed afterwards unless it is a cached prefix's (``keepPast``).
async function forward(ids, past, offset, keepPast = false) {
  const { Tensor, session, layers, vocabSize } = lm;
  const n = ids.length;
  const feeds = {
    input_ids: new Tensor("int64", BigInt64Array.from(ids, BigInt), [1, n]).ort_tensor,
    attention_mask: new Tensor("int64", new BigInt64Array(offset + n).fill(1n), [1, offset + n]).ort_tensor,
    position_ids: new Tensor("int64", BigInt64Array.from({ length: n }, (_, i) => BigInt(offset + i)), [1, n]).ort_tensor,
  };
  for (let i = 0; i < layers; i++) {
    feeds[`past_key_values.${i}.key`] = past ? past[2 * i] : lm.empty;
    feeds[`past_key_values.${i}.value`] = past ? past[2 * i + 1] : lm.empty;
  }
  const out = await runSession(session, feeds);
  const width = out.logits.dims[2];
  // The last position's row only (a copy of one vocabulary vector, then the output is freed).
  const all = await readable(out.logits);
  const logits = all.slice((n - 1) * width, (n - 1) * width + vocabSize);
  out.logits.dispose?.();
  const present = [];
  for (let i = 0; i < layers; i++) present.push(out[`present.${i}.key`], out[`present.${i}.value`]);
  if (past && !keepPast) for (const t of past) t.dispose?.();
  return { logits, past: present, length: offset + n };
}

// The vocabulary as the grammar sees it (token texts by id), for pyapp/generation/closing.py.
export function vocabulary() {
  return JSON.stringify(lm.vocabTexts);
}

// One decode at a time, driven step by step by pyapp.generation.loop.decode_greedy_async: the
// last logits row, the KV cache, the grammar matcher and its bitmask, the tokens so far.
let run = null;
let closingGroups = [];

// ``prefix``: how many leading ids are a task's fixed prompt (pyapp.generation.prompt
// reusable_prefix); their KV cache is prefilled once and reused, so only the rest is run.
export async function start(idsJson, prefix = 0) {
  release();
  const ids = JSON.parse(idsJson);
  run = { state: null, matcher: null, bitmask: null, out: [] };
  if (prefix > 0 && prefix < ids.length) {
    const cached = await prefixState(ids.slice(0, prefix));
    run.state = await forward(ids.slice(prefix), cached.past, cached.length, true);
  } else {
    run.state = await forward(ids, null, 0);
  }
}

// A turn of the worker's event loop without a timer: Chromium clamps a setTimeout(0) that is
// nested five deep (as one per token is) to 4 ms, ~10 % of a decode step here. A message on
// our own channel queues behind messages already sent to the worker (a cancel) and is not
// clamped.
const yielder = new MessageChannel();
const yielded = [];
yielder.port1.onmessage = () => yielded.shift()?.();
const yieldToMessages = () => new Promise((resolve) => { yielded.push(resolve); yielder.port2.postMessage(null); });

async function advance(ids) {
  // Let a cancel message in before the forward pass; the loop stops at its next cancel check.
  await yieldToMessages();
  if (cancelRequested) return;
  run.state = await forward(ids, run.state.past, run.state.length);
}

export const step = (token) => advance([token]);
// Several tokens in one forward pass: the grammar's forced tokens (pyapp/generation/loop.py).
export const extend = (idsJson) => advance(JSON.parse(idsJson));

// terminateWithoutStopToken: isTerminated() once the JSON value is closed, which is when
// xgrammar's is_completed() says so under CPython (the stop token is never run).
export async function fillBitmask(grammar) {
  run.matcher ??= await lm.xgr.GrammarMatcher.createGrammarMatcher(grammars.get(grammar), undefined, true);
  run.bitmask = await run.matcher.getNextTokenBitmask();
}
export function acceptToken(token) { return run.matcher.acceptToken(token); }
export function isTerminated() { return run.matcher.isTerminated(); }

// Closing mode's token groups (pyapp/generation/closing.py), sent once; pick() names them by index.
export function setGroups(groupsJson) {
  closingGroups = JSON.parse(groupsJson).map((ids) => Int32Array.from(ids));
}

// [token, probability renormalised over the allowed tokens, number allowed] (web/pick.js).
export function pick(preferJson, avoidJson, onlyJson) {
  const prefer = preferJson ? JSON.parse(preferJson).map((g) => closingGroups[g]) : null;
  const avoid = avoidJson ? new Set(JSON.parse(avoidJson)) : null;
  const only = onlyJson ? new Set(JSON.parse(onlyJson)) : null;
  return pickAllowed(run.state.logits, lm.vocabSize, run.bitmask, prefer, avoid, only);
}

// The one token the grammar allows now, or -1 (web/pick.js).
export function forced() { return onlyAllowed(run.bitmask, lm.vocabSize); }

export function isCancelled() { return cancelRequested; }

// Streaming: the page sees the text so far after every generated token.
export function emitToken(token) {
  run.out.push(token);
  if (onToken) onToken({ tokens: run.out.length, text: lm.tokenizer.decode(run.out, { skip_special_tokens: true }) });
}

// The end of a decode (also after an error): the matcher and the KV cache are freed.
export function release() {
  if (!run) return;
  run.matcher?.dispose();
  for (const tensor of run.state?.past ?? []) tensor.dispose?.();
  run = null;
}
