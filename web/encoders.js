// Where each encoder runs, for Python (pyapp/backends/browser.py, as the module
// `edge_triage_encoders`) and web/worker.js: load an encoder, embed texts.
//
// The base encoder runs in web/encoderworker.js, a worker of its own, so it loads while Pyodide
// boots (cold start to the first result: 7.5-8.0 s in one worker, 4.9-5.3 s with the Pyodide
// snapshot and this). After the first result on Wasm, web/worker.js calls `bringHome`: the
// encoder is loaded again here and that worker ends, so each classification no longer crosses
// to it and back (README "Where the time goes"). Task encoders, loaded on a task's first use,
// run here in the Python worker, in the same onnxruntime heap as the language model: a Wasm
// heap never shrinks, and the heads' encoder, loaded after the language model, fits into what
// the model's load left free (page memory with all three models: 1,134 MiB with it on the
// encoder worker, 1,021 MiB beside the language model). `args.local` says which.

import { embedTexts, loadEncoder } from "./inference.js";

// How long the encoder worker may leave a call unanswered without a word (no answer, no download
// progress) before this worker stops waiting for it: it ends that worker and runs its encoders
// here instead, as if they had been local from the start. A worker whose script or onnxruntime's
// thread never loads sends no error, so without this a boot would wait forever. Its slowest
// silent step, onnxruntime's session, takes 1-3 s here; a download reports every shard.
export const SILENCE_MS = 60_000;

let worker = null;
let nextId = 0;
const pending = new Map();  // id → {resolve, reject, op, args, sent}
const loads = new Map();    // model|dtype|device → its load's promise (one load per encoder)
const local = new Set();    // keys of the encoders loaded here
const remote = new Map();   // key → load args, of the encoders sent to the encoder worker
let onProgress = () => {};
let heard = 0;              // when the encoder worker last sent anything
let watchdog = null;
let silenceMs = SILENCE_MS;
let retiring = false;       // bringHome: end the encoder worker once its last call is answered

// Starts the encoder worker (once). progress({modelId, done, total, fraction}) while a model's
// files download.
export function start(progress, { silence = SILENCE_MS } = {}) {
  onProgress = progress;
  silenceMs = silence;
  if (worker) return;
  worker = new Worker(new URL("./encoderworker.js", import.meta.url), { type: "module" });
  worker.onmessage = ({ data }) => {
    heard = Date.now();
    if (data.type === "progress") {
      onProgress(data);
      return;
    }
    const call = pending.get(data.id);
    pending.delete(data.id);
    if (data.ok) call.resolve(data.value);
    else call.reject(Object.assign(new Error(data.error.message), { name: data.error.name }));
    if (retiring && !pending.size) endWorker();
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
    pending.set(id, { resolve, reject, op, args, sent: Date.now() });
    worker.postMessage({ id, op, args });
    watchdog ??= setInterval(checkSilence, Math.min(5_000, silenceMs / 4));
  });
}

function checkSilence() {
  if (!pending.size) {
    clearInterval(watchdog);
    watchdog = null;
    return;
  }
  const oldest = Math.min(...[...pending.values()].map((c) => c.sent));
  if (Date.now() - Math.max(heard, oldest) >= silenceMs) abandonWorker();
}

function endWorker() {
  clearInterval(watchdog);
  watchdog = null;
  worker.terminate();
  worker = null;
  retiring = false;
}

// Moves the encoder worker's encoders into this worker: each is loaded here (its files from the
// model store, verified, not downloaded again) while that worker goes on answering; then new
// calls run here and the worker ends once the calls it has are answered. Resolves to the number
// of encoders moved (0 when there is no encoder worker). A failed load here leaves everything
// where it was. Same files, same onnxruntime build and options: the same numbers.
export async function bringHome() {
  if (!worker || retiring) return 0;
  const moving = [...remote];
  // No progress: the page's bar is for the boot, and these files are read from the store.
  await Promise.all(moving.map(([, args]) => loadEncoder(args)));
  if (!worker) return 0;  // abandoned meanwhile: abandonWorker moved them already
  for (const [key] of moving) {
    local.add(key);
    remote.delete(key);
  }
  if (remote.size) return moving.length;  // one loading there meanwhile: keep the worker
  retiring = true;
  if (!pending.size) endWorker();
  return moving.length;
}

// The encoder worker went silent: end it, load its encoders here (from the model store: what it
// had verified is not fetched again) and answer the calls it left waiting from here.
function abandonWorker() {
  console.warn(`The encoder worker did not answer for ${silenceMs / 1000} s: its encoders now run in the inference worker.`);
  endWorker();
  for (const [key, args] of remote) {
    const loading = loadEncoder(args, onProgress);
    loading.catch(() => loads.delete(key));
    loads.set(key, loading);
    local.add(key);
  }
  remote.clear();
  for (const waiting of pending.values()) {
    const answer = waiting.op === "load" ? loads.get(keyOf(waiting.args)) : embedTexts(waiting.args);
    answer.then(waiting.resolve, waiting.reject);
  }
  pending.clear();
}

const keyOf = (args) => `${args.encoder.model_id}|${args.encoder.dtype}|${args.device}`;

// Loads an encoder: args = {transformersEnv, modelsBase, encoder, device, local} (a JSON
// string from Python). Resolves to {key, stats}; the same encoder again gets the same promise.
export function load(args) {
  if (typeof args === "string") args = JSON.parse(args);
  const key = keyOf(args);
  if (!loads.has(key)) {
    const here = args.local || !worker || retiring;
    const loading = here ? loadEncoder(args, onProgress) : call("load", args);
    loading.catch(() => loads.delete(key));
    loads.set(key, loading);
    if (here) local.add(key);
    else remote.set(key, args);
  }
  return loads.get(key);
}

// {dims, data: Float32Array of the mean-pooled, normalised embeddings, tokens?}: tokens is the
// token count of `counted` when given.
export function embed(key, texts, counted = null) {
  const args = { key, texts: [...texts], counted };
  return local.has(key) ? embedTexts(args) : call("embed", args);
}
