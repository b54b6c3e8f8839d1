// The language-model bench's peer page (server/bench/wllama.py): wllama (llama.cpp built to Wasm,
// npm @wllama/wllama) on SmolLM2-135M-Instruct Q4_1, the GGUF our q8 ONNX file is built from.
// Everything comes from our origin: wllama's module and wasm and the GGUF under /bench/wllama/.
// window.wllamaBench.load(threads) → {threads, multithread}; .generate(prompt, opts) → timings.
import { Wllama } from "/bench/wllama/index.js";

const WASM = new URL("/bench/wllama/wllama.wasm", location.origin).href;
const GGUF = "/bench/wllama/model.gguf";
let gguf = null;
let wllama = null;

async function load(threads) {
  if (wllama) await wllama.exit();
  gguf ??= await (await fetch(GGUF)).blob();
  wllama = new Wllama({ default: WASM }, { suppressNativeLog: true });
  // n_gpu_layers 0: CPU (Wasm SIMD) only, as our page's wasm backend; n_ctx as models/llm.py.
  await wllama.loadModel([gguf], { n_threads: threads, n_ctx: 2048, n_gpu_layers: 0 });
  document.getElementById("state").textContent = "ready";
  return { threads: wllama.getNumThreads(), multithread: wllama.isMultithread(),
           crossOriginIsolated: self.crossOriginIsolated };
}

// One greedy raw completion of `prompt` (already in the chat format). `schema`: llama.cpp's own
// JSON-schema → GBNF grammar constrains it; `tokens` + `ignoreEos`: exactly that many tokens.
// Decode speed from the streamed chunks, as lm_page.mjs measures our page: (n - 1) tokens over
// the time from the first to the last; llama.cpp's own timings come back beside it.
async function generate(prompt, { schema = null, tokens = 160, ignoreEos = false } = {}) {
  let first = 0, last = 0, chunks = 0, text = "", timings = null;
  const started = performance.now();
  await wllama.createCompletion({
    prompt, max_tokens: tokens, temperature: 0, ignore_eos: ignoreEos, cache_prompt: true,
    ...(schema ? { json_schema: schema } : {}),
    stream: true,
    onData: (chunk) => {
      const piece = chunk.choices?.[0]?.text ?? "";
      if (piece) {
        last = performance.now();
        if (!first) first = last;
        chunks += 1;
        text += piece;
      }
      if (chunk.timings) timings = chunk.timings;
    },
  });
  const ms = performance.now() - started;
  const n = timings?.predicted_n ?? chunks;
  return { ms, tokens: n, chunks, text, first_token_ms: first - started,
           decode_tok_s: n > 1 && last > first ? (n - 1) / ((last - first) / 1000) : null,
           llama_decode_tok_s: timings?.predicted_per_second ?? null,
           prompt_tokens: timings ? timings.prompt_n + (timings.cache_n ?? 0) : null,
           cached_tokens: timings?.cache_n ?? null };
}

window.wllamaBench = { load, generate };
