// The benchmark's peer page (server/bench/classify.py): what a developer writes from the
// transformers.js README: pipeline("feature-extraction") with mean pooling, on the standard export
// of the same MiniLM, same ORT build and thread count as our page. Files come from our origin.
// window.plain.ready → {threads}; window.plain.run(text) → {ms, dims}.
const params = new URLSearchParams(location.search);
const runtime = params.get("runtime");
const threads = Number(params.get("threads") ?? 1);

async function load() {
  const { env, pipeline } = await import(`${runtime}transformers/transformers.min.js`);
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = params.get("models");
  // transformers.js' own browser cache: the plain page's repeat visit reads the model from it.
  env.useBrowserCache = true;
  env.backends.onnx.wasm.wasmPaths = `${location.origin}${runtime}ort/`;
  env.backends.onnx.wasm.numThreads = threads;
  env.backends.onnx.wasm.proxy = false;
  const extractor = await pipeline("feature-extraction", params.get("model"), { device: "wasm", dtype: "q8" });
  document.getElementById("state").textContent = "ready";
  return extractor;
}

const extractor = load();
window.plain = {
  ready: extractor.then(() => ({ threads })),
  async run(text) {
    const started = performance.now();
    const tensor = await (await extractor)(text, { pooling: "mean", normalize: true });
    const result = { ms: performance.now() - started, dims: tensor.dims };
    tensor.dispose?.();
    return result;
  },
};
