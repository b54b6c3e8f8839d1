// Where each encoder runs, for Python (pyapp/backends/browser.py, as the module
// `edge_triage_encoders`) and web/worker.js: load an encoder, embed texts.
//
// The base encoder runs in web/encoderworker.js, a worker of its own, so it loads while Pyodide
// boots (cold start to the first result: 7.5-8.0 s in one worker, 4.9-5.3 s with the Pyodide
// snapshot and this). Task encoders, loaded on a task's first use, run here in the Python
// worker, in the same onnxruntime heap as the language model: a Wasm heap never shrinks, and
// the heads' encoder, loaded after the language model, fits into what the model's load left free
// (page memory with all three models: 1,134 MiB with it on the encoder worker, 1,021 MiB beside
// the language model). `args.local` says which.

import { embedTexts, loadEncoder } from "./inference.js";

let worker = null;
let nextId = 0;
const pending = new Map();  // id → {resolve, reject}
const loads = new Map();    // model|dtype|device → its load's promise (one load per encoder)
const local = new Set();    // keys of the encoders loaded here
let onProgress = () => {};

// Starts the encoder worker (once). progress({modelId, done, total, fraction}) while a model's
// files download.
export function start(progress) {
  onProgress = progress;
  if (worker) return;
  worker = new Worker(new URL("./encoderworker.js", import.meta.url), { type: "module" });
  worker.onmessage = ({ data }) => {
    if (data.type === "progress") {
      onProgress(data);
      return;
    }
    const call = pending.get(data.id);
    pending.delete(data.id);
    if (data.ok) call.resolve(data.value);
    else call.reject(Object.assign(new Error(data.error.message), { name: data.error.name }));
  };
  // An uncaught error there (a Wasm trap) also reaches this worker's own error handler, and so
  // the page's, which restarts both; the calls waiting on it end with the error meanwhile.
  worker.addEventListener("error", (event) => {
    for (const call of pending.values()) call.reject(new Error(`The encoder worker crashed (${event.message}).`));
    pending.clear();
  });
}

function call(op, args) {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, op, args });
  });
}

// Loads an encoder: args = {transformersEnv, modelsBase, encoder, device, local} (a JSON
// string from Python). Resolves to {key, stats}; the same encoder again gets the same promise.
export function load(args) {
  if (typeof args === "string") args = JSON.parse(args);
  const key = `${args.encoder.model_id}|${args.encoder.dtype}|${args.device}`;
  if (!loads.has(key)) {
    const loading = args.local ? loadEncoder(args, onProgress) : call("load", args);
    loading.catch(() => loads.delete(key));
    loads.set(key, loading);
    if (args.local) local.add(key);
  }
  return loads.get(key);
}

// {dims, data: Float32Array of the mean-pooled, normalised embeddings, tokens?}: tokens is the
// token count of `counted` when given.
export function embed(key, texts, counted = null) {
  const args = { key, texts: [...texts], counted };
  return local.has(key) ? embedTexts(args) : call("embed", args);
}
