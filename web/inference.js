// The one JS module that touches transformers.js / onnxruntime-web, for both models: it pins
// transformers.js to our own origin (local models, local ORT wasm, never the Hugging Face hub or
// a CDN), loads the encoder pipeline's and the language model's sessions, and runs every
// inference call of either model one at a time (``serialised``). Python (in the worker) drives
// both; web/lm.js keeps the language model's decode state and calls back here to run it.

let verifiedFiles = new Map();

// Model files already verified by ShardedModelStore (pathname → bytes): transformers.js reads
// them through its custom-cache hook instead of fetching them again unverified.
export function useVerifiedFiles(files) {
  verifiedFiles = files;
}

// More verified files (the language model, loaded later by web/lm.js), keeping those already in use.
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

// One inference call at a time, whichever model: a classification asked for while an extraction
// decodes runs between two of its tokens instead of inside onnxruntime-web's single Wasm heap
// and thread pool at the same moment (the worker handles each message as it comes).
let lastRun = Promise.resolve();

export function serialised(job) {
  const run = lastRun.then(job, job);
  lastRun = run.then(() => {}, () => {});
  return run;
}

// The encoder: a transformers.js feature-extraction pipeline (pyapp/backends/browser.py).
export function embed(pipe, texts, options) {
  return serialised(() => pipe(texts, options));
}

// disable_quant_qdq: without it onnxruntime-web keeps the q8 file's DequantizeLinear nodes for its
// QDQ fusions and dequantises every weight on every call instead of once at load: 108-210 ms
// per text instead of 33-42 ms (ORT-web 1.31 Wasm, 1 thread, parity set).
const ENCODER_SESSION_OPTIONS = { extra: { session: { disable_quant_qdq: "1" } } };
const encoders = new Map();

// The encoder's pipeline, made once per model, dtype and device, and run once on a short text
// (onnxruntime's first call sets up its buffers). web/worker.js starts it as soon as the model's
// files are verified, while Pyodide boots; Python's load then gets the same one.
export function encoderPipeline(transformersEnv, modelId, { device, dtype }) {
  const key = `${modelId}|${dtype}|${device}`;
  if (!encoders.has(key)) {
    const ready = (async () => {
      const transformers = await configureTransformers(transformersEnv);
      const pipe = await serialised(() => transformers.pipeline("feature-extraction", modelId, {
        device, dtype, session_options: ENCODER_SESSION_OPTIONS,
      }));
      (await embed(pipe, ["warm up"], { pooling: "mean", normalize: true })).dispose?.();
      return pipe;
    })();
    ready.catch(() => encoders.delete(key));  // a failed start is retried by the next caller
    encoders.set(key, ready);
  }
  return encoders.get(key);
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
