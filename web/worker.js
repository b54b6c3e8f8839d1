// The inference worker: boots Pyodide from our origin, installs our wheels through our own
// pyodide-lock.json, and hands every request to Python (pyapp.backends.browser.BrowserApp).
// The base encoder runs in a worker of its own (web/encoderworker.js, through web/encoders.js),
// started first, so it loads while Pyodide boots; the language model and the task encoders run
// here.
// Messages in: {type: "init", config} | {type: "run", id, task, text} | {type: "cancel"};
// out: progress/ready/result, {type: "partial", id, text, tokens} while an extraction runs, and
// {type: "lm-loaded", dtype, estimatedMemoryBytes} once the language model is loaded.

import { detectDevice, languageModelDevice, threadCount } from "./env.js";
import * as encoders from "./encoders.js";
import * as lm from "./lm.js";
import { ShardedModelStore, fetchModelFiles } from "./modelstore.js";

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

  // Off Wasm the encoders run their `gpu` files (onDevice) with the heads made for those.
  const gpuFiles = device !== "wasm";
  const encoder = chooseWithinBudget((config.encoderVariants ?? [config.encoder]).map((e) => onDevice(e, gpuFiles)),
                                     config.memoryBudgetBytes);
  // Everything independent loads at once while Python boots: the encoder (download, verify,
  // onnxruntime session, in the encoder worker) and the task artifacts. Python's load of the
  // same encoder gets the same promise.
  const transformersUrl = `${base}transformers/transformers.min.js`;
  // On the Wasm backend, onnxruntime-web's plain Wasm build (server/runtime.py: the integer
  // encoder file needs its float64 kernels); on WebGPU, the asyncify build that has both.
  const ortUrl = gpuFiles ? `${base}ort/` : `${base}ort-wasm/`;
  const transformersEnv = { transformersUrl, modelsPath: config.modelsBase, ortUrl, threads };
  encoders.start(({ done, total, fraction }) =>
    progress("download", 0.1 + 0.4 * fraction, `Model ${mib(done)} / ${mib(total)} MiB (${Math.round(fraction * 100)}%)`));
  const encoderLoad = encoders.load({ transformersEnv, modelsBase: config.modelsBase, encoder, device });
  encoderLoad.catch(() => {});  // awaited below, where its error is reported
  const artifacts = fetchArtifacts((gpuFiles && config.gpuTaskArtifacts) || config.taskArtifacts || {});
  artifacts.catch(() => {});

  progress("runtime", 0.05, "Python runtime (Pyodide)");
  const pyodide = await bootPyodide(base);

  progress("packages", 0.35, "Python packages (pyapp, pydantic)");
  const failed = [];
  await pyodide.loadPackage(["edge-triage-pyapp"], { messageCallback: () => {}, errorCallback: (m) => failed.push(m),
                                                    checkIntegrity: true });
  if (!pyodide.loadedPackages["edge-triage-pyapp"]) {
    // Pyodide reports a package it could not fetch and carries on; the import would then fail.
    throw new Error(`Could not load the app's Python packages (${failed.join("; ") || "unknown error"}): `
      + "the server or the network went away. Reload to try again.");
  }
  pyodide.registerJsModule("edge_triage_encoders", encoders);
  pyodide.registerJsModule("edge_triage_lm", lm);
  pyodideInstance = pyodide;

  progress("model", 0.55, `Model ${encoder.model_id} on ${device}`);
  appConfig = {
    ...config,
    encoder,
    taskEncoders: Object.fromEntries(Object.entries(config.taskEncoders ?? {}).map(([t, e]) => [t, onDevice(e, gpuFiles)])),
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
  // The encoder's load reports its own error (a download that failed is not tried twice).
  const { stats } = await encoderLoad;
  await app.load();
  await pruneModels(config, [encoder.model_id]);
  const status = JSON.parse(app.status());
  progress("ready", 1, "Ready");
  postMessage({
    type: "ready",
    status: { ...status, deviceReason: reason, crossOriginIsolated: self.crossOriginIsolated,
              bootMs: performance.now() - started, modelFiles: stats,
              estimatedMemoryBytes: encoder.estimated_memory_bytes },
  });
  prefetchLM(appConfig);
}

// Pyodide, restored from the heap of a booted interpreter (server/pysnapshot.mjs: ~0.8 s
// instead of ~4 s here) or, where that cannot be read or restored, booted from scratch. A boot
// that fails (a cut download) is tried once more, without the snapshot, before it is reported.
async function bootPyodide(base) {
  const snapshot = fetch(`${base}pyodide/snapshot.bin.gz`).then((response) => {
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return new Response(response.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
  });
  snapshot.catch(() => {});
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
  for (const useSnapshot of [true, false]) {
    const restored = useSnapshot ? await snapshot.catch((err) => {
      console.warn(`Pyodide snapshot not used (${err?.message ?? err}): booting from scratch`);
      return null;
    }) : null;
    try {
      return await failingOnWasmError(loadPyodide(restored ? { ...options, _loadSnapshot: restored } : options));
    } catch (err) {
      failure = err;
      console.warn(`Pyodide boot failed (${err?.message ?? err})${useSnapshot ? ": trying again without the snapshot" : ""}`);
    }
  }
  throw new Error(`Could not start the Python runtime (${failure?.message ?? failure}). Reload to try again.`);
}

// Pyodide 314's loader catches a failed pyodide.asm.wasm download (a connection cut off:
// ERR_CONTENT_LENGTH_MISMATCH, seen through the faults spec's throttle), logs "wasm
// instantiation failed!" and then waits forever. This turns that line into an error.
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

// An encoder's config for this device: off Wasm (`gpuFiles`), its `gpu` entry (the
// float-arithmetic q8 file, server/site.py) replaces the integer one, whose float64 ops neither
// WebGPU nor the asyncify build's CPU kernels have.
function onDevice(encoder, gpuFiles) {
  return gpuFiles && encoder?.gpu ? { ...encoder, ...encoder.gpu } : encoder;
}

// Over the memory budget: take the first variant that fits, else refuse before downloading.
function chooseWithinBudget(variants, budget) {
  const fits = variants.filter((m) => !budget || m.estimated_memory_bytes <= budget);
  if (fits.length) return fits[0];
  const need = Math.min(...variants.map((m) => m.estimated_memory_bytes));
  throw new Error(`The model needs about ${mib(need)} MiB of memory, over this deployment's budget of ${mib(budget)} MiB; no smaller variant fits.`);
}

const mib = (bytes) => (bytes / 2 ** 20).toFixed(0);

// Frees the model store of models this deployment no longer uses (a replaced version). Keeps
// every model it does use, whichever one was just loaded (a task's own encoder, loaded later,
// must not evict the base encoder or the language model).
async function pruneModels(config, loaded) {
  const taskEncoders = Object.values(config.taskEncoders ?? {}).map((e) => e.model_id);
  await new ShardedModelStore().prune(config.modelsBase, [config.encoder.model_id, ...loaded, ...taskEncoders,
    ...(config.lm ? [config.lm.model_id] : [])]);
}

// Online, after boot: fetch the language model's files, and those of the encoder its tasks'
// heads run on, into the verified store (not into memory), so extraction also works after the
// network goes. ?prefetch=0 skips it. `config` is this device's (appConfig): off Wasm the heads'
// encoder runs its `gpu` file, and that is the one to have when offline.
async function prefetchLM(config) {
  try {
    if (!config.lm || !config.lmTasks?.length || !config.prefetch || !navigator.onLine) return;
    const encoderMemoryBytes = Math.max(...config.lmTasks.map(encoderMemory));
    await lm.fetchFiles(config.modelsBase, lm.chooseVariant({ ...config, encoderMemoryBytes }));
    for (const encoder of headEncoders(config).values()) await fetchModelFiles(config.modelsBase, encoder);
    postMessage({ type: "lm-cached" });
  } catch (err) {
    console.warn(`language model prefetch: ${err.message}`);
  } finally {
    postMessage({ type: "downloads-done" });
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
      await app.load_task_encoder(task);  // the encoder worker downloads and verifies its files
      await pruneModels(appConfig, [encoder.model_id]);
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

// Python in two synchronous calls around the encoder's (BrowserApp.plan / finish: a coroutine
// awaiting the encoder's promise would resume only in a later task of Pyodide's event loop).
// The reply's `inference` then counts the encoder's call (its `total` the page sets).
async function runClassification(data) {
  await ensureTaskEncoder(data.task);
  const plan = JSON.parse(app.plan(data.task, data.text));
  if (plan.reply) return plan.reply;
  const { key, texts, counted } = plan.embed;
  const embedStarted = performance.now();
  const embedded = await encoders.embed(key, texts, counted);
  const embedMs = performance.now() - embedStarted;
  const reply = JSON.parse(app.finish(data.task, data.text, embedded));
  if (reply.ok) reply.result.timings_ms.inference += embedMs;
  return reply;
}

// After the first classification on Wasm, the base encoder moves into this worker and its own
// worker ends (web/encoders.js bringHome): its worker is what lets it load beside Pyodide's boot,
// and after the boot it only adds a round trip to every classification and a second onnxruntime
// instance to the page. The move runs once the first result is out, so it does not delay it. On
// WebGPU the encoder stays where it is (its device is the encoder worker's). Only on a page the
// service worker serves (a repeat visit): on a first visit this worker's onnxruntime would
// download its 14 MB wasm again (the bench's fresh profiles did not keep it in the HTTP cache:
// first visit 107.9 → 121.5 MiB).
let movedHome = false;
function moveEncoderHome() {
  if (movedHome || appConfig.device !== "wasm" || appConfig.keepEncoderWorker || !appConfig.swControlled) return;
  movedHome = true;
  encoders.bringHome().then((moved) => {
    if (moved) postMessage({ type: "encoder-home" });
  }, (err) => console.warn(`The base encoder stays in its own worker: ${err?.message ?? err}`));
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
      const extraction = appConfig.lmTasks?.includes(data.task);
      const reply = extraction ? JSON.parse(await runExtraction(data)) : await runClassification(data);
      postMessage({ type: "result", id: data.id, ...reply });
      if (!extraction) moveEncoderHome();
    } catch (err) {
      postMessage({ type: "result", id: data.id, ok: false,
                    error: { type: "RuntimeError", message: String(err?.message ?? err) } });
    }
  }
};
