// The one JS module that touches transformers.js / onnxruntime-web. Python (in the worker)
// drives inference through transformers-js-py; this module only pins transformers.js to our own
// origin: local models, local ORT wasm, never the Hugging Face hub or a CDN.

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
