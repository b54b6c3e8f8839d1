// The language-model sections of the bench in headless system Chromium (server/bench/lm.py).
// Usage: node server/bench/lm_page.mjs URL < {"texts": [...], "repeats": N, "tokens": T}
// → one JSON object on stdout: our page's extraction timings and decode speed, the page's
// measured memory with both models, and plain transformers.js `generate` on our q8 file in a page
// of its own on the same origin (same transformers.js + ORT build, same thread count).
import { assertOwnOrigin, launchChromium, ownOriginPage } from "../chromium.mjs";

const [url] = process.argv.slice(2);
let input = "";
for await (const chunk of process.stdin) input += chunk;
const { texts, repeats, tokens, prompt: extractionPrompt = null } = JSON.parse(input);
const log = (line) => process.stderr.write(`${line}\n`);

const browser = await launchChromium();
try {
  const page = await ownOriginPage(browser, url);
  page.on("console", (m) => { if (m.type() === "error") log(`page: ${m.text()}`); });
  await page.goto(url);
  const status = await page.evaluate(() => window.edgeTriage.ready);
  log(`page ready: ${status.backend}, ${status.threads} thread(s)`);

  // Ours: the page's extraction (Python task code + web/lm.js), first run (loads the model)
  // then warm runs; decode speed from the streamed tokens.
  const ours = await page.evaluate(async ([texts, repeats]) => {
    const one = async (text) => {
      let first = 0, last = 0, n = 0;
      const started = performance.now();
      const r = await window.edgeTriage.run("telemetry-extract", text, {
        escalate: false,
        onPartial: ({ tokens }) => { last = performance.now(); if (!first) first = last; n = tokens; },
      });
      return { ms: performance.now() - started, tokens: n, first_token_ms: first - started,
               decode_tok_s: n > 1 ? (n - 1) / ((last - first) / 1000) : null, valid: r.valid,
               record: r.output?.record ?? null, text: r.output?.text ?? null,
               generation: r.output?.record !== undefined ? r.timings_ms : null };
    };
    const cold = await one(texts[0]);
    const warm = [];
    for (let i = 0; i < repeats; i++) for (const t of texts) warm.push(await one(t));
    return { cold, warm };
  }, [texts, repeats]);
  log(`ours: ${ours.warm.length} warm extractions`);

  // Measured memory with both models: a classification loads nothing new (the encoder is in).
  await page.evaluate(() => window.edgeTriage.run("telemetry-triage", "Link down on eth0", { escalate: false }));
  const memory = await page.evaluate(async () => ({
    lm_dtype: window.edgeTriage.status().lmDtype ?? null,  // the variant the page chose
    measured_bytes: await window.edgeTriage.memoryUse(),
    estimated_bytes: window.edgeTriage.status().estimatedMemoryBytes + (window.edgeTriage.status().taskEncoderMemoryBytes ?? 0) +
      (window.edgeTriage.status().lmEstimatedMemoryBytes ?? 0),
  }));
  log(`memory: ${JSON.stringify(memory)}`);

  // Plain transformers.js generate on our q8 file, after the memory measurement, in the main
  // thread of a page of its own (our page navigated away, its workers gone: run inside our page,
  // beside its three onnxruntime instances, it decoded at 14 tok/s instead of 30): greedy,
  // unconstrained, `tokens` new tokens after the first text's rendered extraction prompt
  // (`prompt`, from Python), so that both decode at the same context length (the KV cache our
  // page copies per step grows with it).
  const cfg = await page.evaluate(() => JSON.parse(document.getElementById("config").textContent));
  await page.goto(new URL("/api/health", url).href);  // cross-origin isolated like every response
  const plain = await page.evaluate(async ([tokens, repeats, threads, extractionPrompt, cfg]) => {
    const t = await import(new URL(`${cfg.runtimeBase}transformers/transformers.min.js`, location.origin).href);
    t.env.allowRemoteModels = false;
    t.env.allowLocalModels = true;
    t.env.localModelPath = cfg.modelsBase;
    t.env.useBrowserCache = false;
    t.env.backends.onnx.wasm.wasmPaths = new URL(`${cfg.runtimeBase}ort/`, location.origin).href;
    t.env.backends.onnx.wasm.numThreads = threads;
    const id = cfg.lm.model_id;
    const tokenizer = await t.AutoTokenizer.from_pretrained(id);
    // Our q8 graph's float weights are external data folded from the GGUF codes beside it
    // (web/lmweights.js, as the page does): handed to onnxruntime through session_options.
    const base = new URL(`${cfg.modelsBase}${id}/onnx/`, location.origin);
    const plan = await (await fetch(new URL("model_quantized.fold.json", base))).json();
    const codes = new Uint8Array(await (await fetch(new URL(plan.codes, base))).arrayBuffer());
    const { externalData } = await import(new URL(`${cfg.base}static/lmweights.js`, location.origin).href);
    const model = await t.AutoModelForCausalLM.from_pretrained(id, {
      dtype: "q8", device: "wasm", session_options: {
        extra: { session: { disable_quant_qdq: "1" } },
        externalData: [{ path: plan.data, data: externalData(plan, codes) }],
      },
    });
    const prompt = extractionPrompt ?? "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" +
      "<|im_start|>user\nDescribe what to check when a server fan fails: Error: Fan speed threshold exceeded on Node 4B.<|im_end|>\n<|im_start|>assistant\n";
    const inputs = tokenizer(prompt, { add_special_tokens: false });
    const time = async (n) => {
      const s = performance.now();
      await model.generate({ ...inputs, max_new_tokens: n, min_new_tokens: n, do_sample: false });
      return performance.now() - s;
    };
    await time(2);  // warm-up
    const rates = [];
    for (let i = 0; i < repeats; i++) {
      const one = await time(1);
      const many = await time(tokens + 1);
      rates.push(tokens / ((many - one) / 1000));
    }
    return { decode_tok_s: rates, prompt_tokens: inputs.input_ids.dims[1] };
  }, [tokens, repeats, status.threads, extractionPrompt, cfg]);
  log(`plain transformers.js: ${JSON.stringify(plain)}`);
  assertOwnOrigin(page);
  process.stdout.write(JSON.stringify({ status: { backend: status.backend, threads: status.threads },
                                        ours, memory, plain }) + "\n");
} finally {
  await browser.close();
}
