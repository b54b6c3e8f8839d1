// The inference worker: boots Pyodide from our origin, installs our wheels through our own
// pyodide-lock.json, and hands every request to Python (pyapp.backends.browser.BrowserApp).
// Messages in: {type: "init", config} | {type: "run", id, task, text} | {type: "cancel"};
// out: progress/ready/result, {type: "partial", id, text, tokens} while an extraction runs, and
// {type: "lm-loaded", dtype, estimatedMemoryBytes} once the language model is loaded.

import { detectDevice, languageModelDevice, threadCount } from "./env.js";
import * as host from "./inference.js";
import * as lm from "./lm.js";
import { ShardedModelStore, requestPersistentStorage } from "./modelstore.js";

let app = null;
let pyodideInstance = null;
let appConfig = null;
// Extraction tasks run on the language model, loaded the first time one of them is run.
let lmApp = null;

function progress(stage, fraction, detail = "") {
  postMessage({ type: "progress", stage, fraction, detail });
}

async function init(config) {
  const base = new URL(config.runtimeBase, location.origin).href;
  const started = performance.now();
  const detected = await detectDevice(config.backend);
  const { device, reason } = detected;
  const lmDevice = languageModelDevice(detected, config.backend);
  const threads = threadCount();

  const encoder = chooseWithinBudget(config.encoderVariants ?? [config.encoder], config.memoryBudgetBytes);
  // Everything independent loads at once while Python boots: the model's shards, the task
  // artifacts and the transformers.js module (Python's import then finds it already evaluated).
  const download = downloadModel(config, encoder);
  download.catch(() => {});
  const artifacts = fetchArtifacts(config.taskArtifacts ?? {});
  artifacts.catch(() => {});
  const transformersUrl = `${base}transformers/transformers.min.js`;
  import(transformersUrl).catch(() => {});
  // The encoder's onnxruntime session starts as soon as its files are verified, while Pyodide
  // boots (Python's load gets the same pipeline). Both still share this worker's thread: cold
  // start measured 7.8 s vs 8.1 s before (one run each), so most of it did not overlap.
  const transformersEnv = { transformersUrl, modelsPath: config.modelsBase, ortUrl: `${base}ort/`, threads };
  download.then(({ files }) => {
    host.useVerifiedFiles(files);
    return host.encoderPipeline(transformersEnv, encoder.model_id, { device, dtype: encoder.dtype });
  }).catch(() => {});  // Python's load starts it again and reports the error

  progress("runtime", 0.05, "Python runtime (Pyodide)");
  const pyodide = await bootPyodide(base);

  progress("packages", 0.35, "Python packages (pyapp, pydantic)");
  await pyodide.loadPackage(["edge-triage-pyapp"], { messageCallback: () => {}, checkIntegrity: true });
  pyodide.registerJsModule("edge_triage_host", host);
  pyodide.registerJsModule("edge_triage_lm", lm);
  pyodideInstance = pyodide;

  const { files, stats } = await download;
  host.useVerifiedFiles(files);
  progress("model", 0.55, `Model ${encoder.model_id} on ${device}`);
  appConfig = {
    ...config,
    encoder,
    device,
    lmDevice,
    threads,
    transformersUrl,
    transformersEnv,
  };
  // Heads computed at build time (same numbers as computing them here; see parity tests).
  appConfig.artifacts = await artifacts;
  const { BrowserApp } = pyodide.pyimport("pyapp.backends.browser");
  const lmTasks = new Set(config.lmTasks ?? []);
  app = BrowserApp(JSON.stringify({ ...appConfig, tasks: config.tasks.filter((t) => !lmTasks.has(t)) }));
  progress("tasks", 0.8, "Preparing tasks");
  await app.load();
  const status = JSON.parse(app.status());
  progress("ready", 1, "Ready");
  postMessage({
    type: "ready",
    status: { ...status, deviceReason: reason, crossOriginIsolated: self.crossOriginIsolated,
              bootMs: performance.now() - started, modelFiles: stats,
              estimatedMemoryBytes: encoder.estimated_memory_bytes },
  });
  prefetchLM(config);
}

// Pyodide, booted from our origin. A boot that fails (a cut download) is tried once more before
// it is reported.
async function bootPyodide(base) {
  const { loadPyodide } = await import(`${base}pyodide/pyodide.mjs`);
  const options = {
    indexURL: `${base}pyodide/`,
    lockFileURL: `${base}wheels/pyodide-lock.json`,
    // Also where Pyodide would look for any package it cannot find: our origin, never a CDN.
    packageBaseUrl: `${base}wheels/`,
    stdout: (line) => console.log(`[py] ${line}`),
    stderr: (line) => console.warn(`[py] ${line}`),
  };
  let failure = null;
  for (const attempt of [1, 2]) {
    try {
      return await failingOnWasmError(loadPyodide({ ...options }));  // a copy: loadPyodide adds to it
    } catch (err) {
      failure = err;
      console.warn(`Pyodide boot failed (${err?.message ?? err})${attempt === 1 ? ": trying again" : ""}`);
    }
  }
  throw new Error(`Could not start the Python runtime (${failure?.message ?? failure}). Reload to try again.`);
}

// Pyodide 314's loader catches a failed pyodide.asm.wasm download (a connection cut off, e.g.
// ERR_CONTENT_LENGTH_MISMATCH through the faults spec's throttle), logs "wasm instantiation
// failed!" and then waits forever. This turns that line into an error.
function failingOnWasmError(booting) {
  const warn = console.warn;
  let fail;
  const failed = new Promise((_, reject) => { fail = reject; });
  console.warn = (...args) => {
    warn.apply(console, args);
    if (args[0] === "wasm instantiation failed!") fail(new Error("pyodide.asm.wasm did not load: its download failed"));
  };
  return Promise.race([booting, failed]).finally(() => { console.warn = warn; });
}

async function fetchArtifacts(urls) {
  const entries = await Promise.all(Object.entries(urls).map(async ([name, url]) => {
    const response = await fetch(url);
    return response.ok ? [name, await response.json()] : null;
  }));
  return Object.fromEntries(entries.filter(Boolean));
}

// Over the memory budget: take the first variant that fits, else refuse before downloading.
function chooseWithinBudget(variants, budget) {
  const fits = variants.filter((m) => !budget || m.estimated_memory_bytes <= budget);
  if (fits.length) return fits[0];
  const need = Math.min(...variants.map((m) => m.estimated_memory_bytes));
  throw new Error(`The model needs about ${mib(need)} MiB of memory, over this deployment's budget of ${mib(budget)} MiB; no smaller variant fits.`);
}

const mib = (bytes) => (bytes / 2 ** 20).toFixed(0);

async function downloadModel(config, encoder, { quiet = false } = {}) {
  const manifestUrl = `${config.modelsBase}${encoder.model_id}/manifest.json`;
  const response = await fetch(manifestUrl);
  if (!response.ok) throw new Error(`Model manifest ${manifestUrl}: HTTP ${response.status}`);
  const all = await response.json();
  // One dtype's weights: the manifest also lists the other encoder variants' files.
  const skip = new Set(encoder.skipFiles ?? []);
  const manifest = { ...all, files: all.files.filter((f) => !skip.has(f.path)) };
  await requestPersistentStorage();
  const store = new ShardedModelStore({
    onProgress: ({ done, total, fraction }) => quiet ||
      progress("download", 0.1 + 0.4 * fraction, `Model ${mib(done)} / ${mib(total)} MiB (${Math.round(fraction * 100)}%)`),
  });
  const files = await store.ensure(config.modelsBase, manifest);
  // Keep every model this deployment uses, whichever one this call downloaded (a task's own
  // encoder, loaded later, must not evict the base encoder or the language model).
  const taskEncoders = Object.values(config.taskEncoders ?? {}).map((e) => e.model_id);
  await store.prune(config.modelsBase, [config.encoder.model_id, encoder.model_id, ...taskEncoders,
    ...(config.lm ? [config.lm.model_id] : [])]);
  return { files, stats: store.stats };
}

// Online, after boot: fetch the language model's files, and those of the encoder its tasks'
// heads run on, into the verified store (not into memory), so extraction also works after the
// network goes. ?prefetch=0 skips it.
async function prefetchLM(config) {
  if (!config.lm || !config.lmTasks?.length || !config.prefetch || !navigator.onLine) return;
  try {
    const encoderMemoryBytes = Math.max(...config.lmTasks.map(encoderMemory));
    await lm.fetchFiles(config.modelsBase, lm.chooseVariant({ ...config, encoderMemoryBytes }));
    for (const encoder of headEncoders(config).values()) await downloadModel(config, encoder, { quiet: true });
    postMessage({ type: "lm-cached" });
  } catch (err) {
    console.warn(`language model prefetch: ${err.message}`);
  }
}

async function loadLM(measuredBytes, encoderBytes) {
  const { BrowserLMApp } = pyodideInstance.pyimport("pyapp.backends.browser_lm");
  const instance = BrowserLMApp(JSON.stringify({
    // The page's device (WebGPU when the page runs on it), except on a software adapter
    // (env.js languageModelDevice).
    ...appConfig,
    device: appConfig.lmDevice.device,
    lmDeviceReason: appConfig.lmDevice.reason,
    measuredMemoryBytes: measuredBytes ?? null,
    encoderMemoryBytes: encoderBytes,
    xgrammarUrl: `${new URL(appConfig.runtimeBase, location.origin).href}transformers/web-xgrammar.js`,
  }));
  await instance.load((fraction, detail) => progress("lm", fraction, detail));
  return instance;
}

// The encoders the heads of extraction tasks run on (config.fieldHeads: extraction task → the
// classification heads that fill its closed-set fields): model_id → encoder config.
function headEncoders(config, tasks = Object.keys(config.fieldHeads ?? {})) {
  const heads = tasks.flatMap((t) => config.fieldHeads?.[t] ?? []);
  return new Map(heads.map((h) => config.taskEncoders?.[h]).filter(Boolean).map((e) => [e.model_id, e]));
}

// Estimated memory of the encoders the page will hold once `task` runs: the base encoder, every
// task encoder loaded so far and those of the task's heads. The language model's budget check
// counts them (lm.chooseVariant) before anything is downloaded for it.
function encoderMemory(task) {
  const added = new Map([...loadedEncoders, ...[...headEncoders(appConfig, [task]).values()]
    .map((e) => [e.model_id, e.added_memory_bytes])]);
  return [...added.values()].reduce((a, b) => a + b, appConfig.encoder.estimated_memory_bytes);
}

let lmLoading = null;
// A task on an encoder of its own (config.taskEncoders: a pack's fine-tuned encoder) loads it
// the first time that task, or an extraction it fills fields of, is run: model_id → the
// loading promise.
const encoderLoading = new Map();
// Task encoders loaded: model_id → the memory each adds to the page (its estimate).
const loadedEncoders = new Map();

async function ensureTaskEncoder(task) {
  const pending = app.pending_encoder(task);
  if (!pending) return;
  const encoder = JSON.parse(pending);
  if (!encoderLoading.has(encoder.model_id)) {
    encoderLoading.set(encoder.model_id, (async () => {
      const { files } = await downloadModel(appConfig, encoder);
      host.addVerifiedFiles(files);
      await app.load_task_encoder(task);
      loadedEncoders.set(encoder.model_id, encoder.added_memory_bytes);
      postMessage({ type: "encoder-loaded", modelId: encoder.model_id, estimatedMemoryBytes: encoder.added_memory_bytes });
    })());
  }
  try {
    await encoderLoading.get(encoder.model_id);
  } catch (err) {
    encoderLoading.delete(encoder.model_id);
    throw err;
  }
}

async function runClassification(data) {
  await ensureTaskEncoder(data.task);
  return app.run(data.task, data.text);
}

async function runExtraction(data) {
  lm.resetCancel();
  lmLoading ??= loadLM(data.measuredBytes, encoderMemory(data.task));
  try {
    const first = !lmApp;
    lmApp = await lmLoading;
    if (first) {
      const info = JSON.parse(lm.loadedInfo());
      postMessage({ type: "lm-loaded", dtype: info.dtype, estimatedMemoryBytes: info.estimated_memory_bytes });
    }
  } catch (err) {
    lmLoading = null;
    throw err;
  }
  // Hybrid extraction tasks take their closed-set fields from encoder heads (tasks/hybrid.py),
  // which may run on an encoder of their own (loaded after the language model: its budget
  // check, which counts this encoder, refuses before either is downloaded).
  const heads = appConfig.fieldHeads?.[data.task] ?? [];
  for (const head of heads) await ensureTaskEncoder(head);
  if (heads.length) app.attach_heads_to(lmApp.engine);
  lm.setTokenListener(({ text, tokens }) => postMessage({ type: "partial", id: data.id, text, tokens }));
  try {
    return await lmApp.run(data.task, data.text);
  } finally {
    lm.setTokenListener(null);
  }
}

onmessage = async ({ data }) => {
  if (data.type === "init") {
    try {
      await init(data.config);
    } catch (err) {
      postMessage({ type: "failed", error: String(err?.message ?? err) });
    }
    return;
  }
  if (data.type === "cancel") {
    lm.cancel();
    return;
  }
  if (data.type === "run") {
    try {
      const reply = JSON.parse(await (appConfig.lmTasks?.includes(data.task)
        ? runExtraction(data) : runClassification(data)));
      postMessage({ type: "result", id: data.id, ...reply });
    } catch (err) {
      postMessage({ type: "result", id: data.id, ok: false,
                    error: { type: "RuntimeError", message: String(err?.message ?? err) } });
    }
  }
};
