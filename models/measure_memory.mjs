// Peak memory of a language model in onnxruntime-web (the browser's engine, run under Node):
// load the file as the page does (one buffer, disable_quant_qdq), run one forward pass over a
// short prompt, and print the process's peak resident set less what it held before loading.
// Used by `edge-triage models import` (models/importer.py) to measure, not estimate, what a
// model needs. Usage: node models/measure_memory.mjs MODEL.onnx CONFIG.json [PROMPT_TOKENS]
import { readFile } from "node:fs/promises";
import * as ort from "onnxruntime-web";

const [modelPath, configPath, promptTokens = "64"] = process.argv.slice(2);
const config = JSON.parse(await readFile(configPath, "utf8"));
ort.env.wasm.numThreads = 1;
const kb = () => process.resourceUsage().maxRSS * 1024;
const before = process.memoryUsage().rss;
const session = await ort.InferenceSession.create(await readFile(modelPath), {
  executionProviders: ["wasm"],
  extra: { session: { disable_quant_qdq: "1" } },
});
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
console.log(JSON.stringify({ before, peak: kb(), measured: kb() - before, vocab }));
