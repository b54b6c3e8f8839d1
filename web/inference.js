// The one JS module that touches transformers.js / onnxruntime-web, for both models: it pins
// transformers.js to our own origin (local models, local ORT wasm, never the Hugging Face hub or
// a CDN), loads the encoder pipeline's and the language model's sessions, and runs the
// inference calls of the worker it is loaded in one at a time (``serialised``). It is loaded in
// two workers: web/encoderworker.js (the base encoder) and web/worker.js (the language model,
// through web/lm.js, which keeps its decode state, and the task encoders); Python drives both.

import { fetchModelFiles } from "./modelstore.js";

// Model files verified by ShardedModelStore (pathname → bytes): transformers.js reads them
// through its custom-cache hook instead of fetching them again unverified.
let verifiedFiles = new Map();

// More verified files (a model about to be loaded), keeping those already in use.
export function addVerifiedFiles(files) {
  verifiedFiles = new Map([...verifiedFiles, ...files]);
}

// Files onnxruntime already holds (a loaded model's .onnx): their bytes stay in the model
// store (Cache API), not in the worker's memory.
export function forgetVerifiedFiles(paths) {
  for (const path of paths) verifiedFiles.delete(path);
}

const verifiedCache = {
  async match(request) {
    const url = typeof request === "string" ? request : request.url;
    const bytes = verifiedFiles.get(new URL(url, location.origin).pathname);
    if (!bytes) return undefined;
    return new Response(bytes, { headers: { "Content-Length": String(bytes.byteLength) } });
  },
  async put() {
    // Our store already holds the verified shards; nothing else is cached.
  },
};

export async function configureTransformers({ transformersUrl, modelsPath, ortUrl, threads }) {
  const transformers = await import(transformersUrl);
  const { env } = transformers;
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  // A path, not a URL: transformers.js 4 only looks for "local" files at non-http paths
  // (fetched from our origin all the same).
  env.localModelPath = modelsPath;
  // Belt and braces: were a remote load ever attempted, it would hit our own origin and 404.
  env.remoteHost = new URL("/no-remote/", location.origin).href;
  env.useBrowserCache = false;
  env.useCustomCache = true;
  env.customCache = verifiedCache;
  const wasm = env.backends.onnx.wasm;
  wasm.wasmPaths = ortUrl;
  wasm.numThreads = threads;
  wasm.proxy = false;
  return transformers;
}

// One inference call at a time in this worker's onnxruntime-web (one Wasm heap, one thread
// pool). The language model and the task encoders run in the Python worker; the base encoder
// boots in the encoder worker and, on Wasm, moves to the Python worker after the first result
// (web/encoders.js says why): from then on a classification asked for while an extraction
// decodes takes its turn between two of the extraction's forward passes.
let lastRun = Promise.resolve();

export function serialised(job) {
  const run = lastRun.then(job, job);
  lastRun = run.then(() => {}, () => {});
  return run;
}

// disable_quant_qdq: without it onnxruntime-web keeps the q8 file's DequantizeLinear nodes for its
// QDQ fusions and dequantises every weight on every call instead of once at load: 108-210 ms
// per text instead of 33-42 ms (ORT-web 1.31 Wasm, 1 thread, parity set).
const ENCODER_SESSION_OPTIONS = { extra: { session: { disable_quant_qdq: "1" } } };
const POOLING = { pooling: "mean", normalize: true };
// model|dtype|device → Promise<{pipe, stats}>
const encoders = new Map();

// An encoder (a transformers.js feature-extraction pipeline): its files downloaded and verified
// (or read from the model store), its session made and run once on a short text (onnxruntime's
// first call sets up its buffers). Once per model, dtype and device; a failed load is tried
// again by the next call. Resolves to {key, stats} (stats: the model store's counts).
export async function loadEncoder({ transformersEnv, modelsBase, encoder, device }, onProgress = () => {}) {
  const key = `${encoder.model_id}|${encoder.dtype}|${device}`;
  if (!encoders.has(key)) {
    const ready = (async () => {
      // transformers.js loads while the model's files download: neither needs the other. (The
      // ORT wasm is not fetched ahead as well: a fresh profile's in-memory HTTP cache did not keep
      // the 27 MB file, so onnxruntime downloaded it a second time: 130.8 MiB on a first visit
      // instead of 105.2.)
      const configured = configureTransformers(transformersEnv);
      configured.catch(() => {});  // awaited below
      const { files, stats } = await fetchModelFiles(modelsBase, encoder,
        (p) => onProgress({ modelId: encoder.model_id, ...p }));
      addVerifiedFiles(files);
      try {
        const transformers = await configured;
        const pipe = await serialised(() => transformers.pipeline("feature-extraction", encoder.model_id, {
          device, dtype: encoder.dtype, session_options: ENCODER_SESSION_OPTIONS,
        }));
        (await serialised(() => pipe(["warm up"], POOLING))).dispose?.();
        // The integer file quantises activations with one scale per tensor, so in a padded batch
        // a text's embedding would depend on its neighbours: one text per run, as CPython does
        // (the config's per_text, from models/cpython/encoder.py PER_TEXT_DTYPES).
        return { pipe, stats, perText: Boolean(encoder.per_text) };
      } finally {
        forgetVerifiedFiles(files.keys());  // onnxruntime holds the weights now
      }
    })();
    ready.catch(() => encoders.delete(key));
    encoders.set(key, ready);
  }
  const { stats } = await encoders.get(key);
  return { key, stats };
}

// Mean-pooled, normalised embeddings of `texts` from a loaded encoder: {dims, data: Float32Array}
// and, when `counted` is a string, tokens: its token count without truncation (the caller's
// truncation check, in the same call).
export async function embedTexts({ key, texts, counted = null }) {
  const { pipe, perText } = await encoders.get(key);
  const value = { dims: [0, 0], data: new Float32Array(0) };
  const batches = perText ? texts.map((t) => [t]) : texts.length ? [texts] : [];
  const rows = [];
  for (const batch of batches) {
    const tensor = await serialised(() => pipe(batch, POOLING));
    try {
      rows.push({ dims: tensor.dims, data: Float32Array.from(tensor.data) });
    } finally {
      tensor.dispose?.();  // frees the ORT tensor now rather than at garbage collection
    }
  }
  if (rows.length) {
    const data = new Float32Array(rows.reduce((n, r) => n + r.data.length, 0));
    let at = 0;
    for (const r of rows) {
      data.set(r.data, at);
      at += r.data.length;
    }
    Object.assign(value, { dims: [texts.length, rows[0].dims[1]], data });
  }
  if (typeof counted === "string") value.tokens = pipe.tokenizer.encode(counted).length;
  return value;
}

// The language model (web/lm.js): tokenizer, causal LM and its session, and the Tensor class.
// externalData: [{path, data}] for a graph whose weights are external data (the q8 variant's,
// built by web/lmweights.js): onnxruntime copies each tensor straight from it into its heap.
export async function loadCausalLM(transformersEnv, modelId, { dtype, device, externalData }) {
  const transformers = await configureTransformers(transformersEnv);
  const tokenizer = await transformers.AutoTokenizer.from_pretrained(modelId);
  // disable_quant_qdq: fold any DequantizeLinear of constant weights into float weights once at
  // load (as models/cpython/lm.py does) instead of keeping them for int8 kernels, which would
  // re-quantise activations and round differently from native onnxruntime.
  const session_options = { extra: { session: { disable_quant_qdq: "1" } } };
  if (externalData) session_options.externalData = externalData;
  const model = await serialised(() => transformers.AutoModelForCausalLM.from_pretrained(modelId, {
    dtype, device, session_options,
  }));
  return { tokenizer, model, session: model.sessions.model, Tensor: transformers.Tensor };
}

// One forward pass of the language model's session.
export function runSession(session, feeds) {
  return serialised(() => session.run(feeds));
}
