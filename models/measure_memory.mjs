// Peak memory of a language model in onnxruntime-web (the browser's engine, run under Node):
// load the file as the page does (web/lm.js: the graph, its weights folded from the GGUF codes
// by web/lmweights.js as external data when a <stem>.fold.json is beside it), run one forward
// pass over a short prompt, and print the size of onnxruntime's Wasm heap then.
// Used by `edge-triage models import` (models/importer.py) to measure, not estimate, what a
// model needs. Usage: node models/measure_memory.mjs MODEL.onnx CONFIG.json [PROMPT_TOKENS]
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import * as ort from "onnxruntime-web";
import { externalData } from "../web/lmweights.js";

// The Wasm heap: every WebAssembly.Memory onnxruntime-web creates or its module exports. It
// never shrinks, so its size after the forward pass is what the page keeps paying for.
const memories = [];
const NativeMemory = WebAssembly.Memory;
WebAssembly.Memory = new Proxy(NativeMemory, {
  construct(target, args) { const m = new target(...args); memories.push(m); return m; },
});
for (const name of ["instantiate", "instantiateStreaming"]) {
  const native = WebAssembly[name];
  WebAssembly[name] = async (...args) => {
    const result = await native.apply(WebAssembly, args);
    const instance = result.instance ?? result;
    for (const v of Object.values(instance.exports ?? {})) if (v instanceof NativeMemory) memories.push(v);
    return result;
  };
}
const wasmHeap = () => Math.max(0, ...memories.map((m) => m.buffer.byteLength));

const [modelPath, configPath, promptTokens = "64"] = process.argv.slice(2);
const config = JSON.parse(await readFile(configPath, "utf8"));
ort.env.wasm.numThreads = 1;
const kb = () => process.resourceUsage().maxRSS * 1024;
const before = process.memoryUsage().rss;  // for peak_rss
const options = { executionProviders: ["wasm"], extra: { session: { disable_quant_qdq: "1" } } };
const planPath = modelPath.replace(/\.onnx$/, ".fold.json");
if (existsSync(planPath)) {
  const plan = JSON.parse(await readFile(planPath, "utf8"));
  const codes = await readFile(new URL(plan.codes, `file://${planPath}`));
  options.externalData = [{ path: plan.data, data: externalData(plan, new Uint8Array(codes)) }];
}
const session = await ort.InferenceSession.create(await readFile(modelPath), options);
delete options.externalData;
const n = Number(promptTokens);
const layers = config.num_hidden_layers;
const heads = config.num_key_value_heads ?? config.num_attention_heads;
const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
const ids = BigInt64Array.from({ length: n }, (_, i) => BigInt(1 + (i % 100)));
const feeds = {
  input_ids: new ort.Tensor("int64", ids, [1, n]),
  attention_mask: new ort.Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]),
};
if (session.inputNames.includes("position_ids")) {
  feeds.position_ids = new ort.Tensor("int64", BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), [1, n]);
}
for (let i = 0; i < layers; i++) {
  for (const kv of ["key", "value"]) {
    feeds[`past_key_values.${i}.${kv}`] = new ort.Tensor("float32", new Float32Array(0), [1, heads, 0, headDim]);
  }
}
const out = await session.run(feeds);
const vocab = out.logits.dims.at(-1);
// What stays is the Wasm heap (the fold's JS buffers are garbage after load: a transient peak,
// reported as peak_rss); the page's measureUserAgentSpecificMemory counts the heap whole.
console.log(JSON.stringify({ measured: wasmHeap(), peak_rss: kb() - before, vocab }));
