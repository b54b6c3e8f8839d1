// WebGPU through SwiftShader (software): slow, so only a few texts; correctness, not speed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, expect, openApp, classify, swReady } from "./fixtures";

const TEXTS = [
  "Error: Fan speed threshold exceeded on Node 4B.",
  "UPS switched to battery after mains failure",
  "Filesystem /data is 99% full",
];

// WebGPU has no float64, so its pages run the encoder's q8 file, with the heads the build fitted
// on q8 embeddings: CPython on the same file must give the same label and confidence.
test("auto-selects WebGPU when an adapter exists and agrees with CPython on the same file", async ({ app }) => {
  const status = await openApp(app, "");
  expect(status.backend).toBe("webgpu");
  expect(status.deviceReason).toContain("WebGPU adapter");
  const batch = join(mkdtempSync(join(tmpdir(), "webgpu-")), "texts.json");
  writeFileSync(batch, JSON.stringify(TEXTS));
  const cpython = execFileSync(".venv/bin/edge-triage", ["run", "telemetry-triage", "--batch", batch],
    { encoding: "utf8", env: { ...process.env, EDGE_TRIAGE_ENCODER_DTYPE: "q8" } })
    .trim().split("\n").map((l) => JSON.parse(l));
  for (const [i, text] of TEXTS.entries()) {
    const result = await classify(app, text);
    expect(result.backend).toBe("webgpu");
    expect(result.output.label, text).toBe(cpython[i].output.label);
    console.log(`webgpu vs CPython q8: |Δconfidence| ${Math.abs(result.confidence - cpython[i].confidence).toExponential(2)} (${text})`);
    expect(Math.abs(result.confidence - cpython[i].confidence), text).toBeLessThanOrEqual(5e-3);
  }
  await expect(app.locator("#backend")).toHaveText(/webgpu/);
});

test("?backend=wasm overrides WebGPU", async ({ app }) => {
  const status = await openApp(app, "?backend=wasm");
  expect(status.backend).toBe("wasm");
  expect((await classify(app, TEXTS[0])).backend).toBe("wasm");
});

// On a software adapter (SwiftShader: isFallbackAdapter) the page picks WebGPU for the encoder
// but keeps the language model on Wasm, ~100× faster there (env.js languageModelDevice). Run
// offline after the first visit's background download: that download must have fetched the
// heads' encoder in the file WebGPU runs (`q8`: the integer file's float64 ops have no WebGPU
// kernels), not in the Wasm page's `uint8`.
test("auto mode on a software WebGPU adapter: classification on WebGPU, extraction on Wasm, offline", async ({ app, context }) => {
  test.setTimeout(600_000);
  const status = await openApp(app, "");
  expect(status.backend).toBe("webgpu");
  await swReady(app);
  await app.waitForFunction(() => (window as any).edgeTriage.status().lmCached === true, null, { timeout: 400_000 });
  const stored = await app.evaluate(async () =>
    (await (await caches.open("edge-triage-models-v1")).keys()).map((r) => new URL(r.url).pathname));
  const headShards = stored.filter((p) => /\/models\/[^/]*-telemetry-[^/]*\/shards\/onnx__/.test(p));
  expect(headShards.some((p) => p.includes("model_quantized")), headShards.join(", ")).toBe(true);
  expect(headShards.filter((p) => p.includes("model_uint8"))).toEqual([]);
  await context.setOffline(true);
  await app.reload();
  expect((await app.evaluate(() => (window as any).edgeTriage.ready)).backend).toBe("webgpu");
  const result = await app.evaluate(async (text) => (window as any).edgeTriage.run("telemetry-extract", text,
    { escalate: false }), TEXTS[2]);
  expect(result.backend).toBe("wasm");
  expect(result.valid).toBe(true);
  expect(["eos", "grammar"]).toContain(result.output.stop_reason);
  expect(result.output.record.category).toBe("storage");
  await context.setOffline(false);
});

// SmolLM2 on onnxruntime-web's WebGPU EP, asked for by name (SwiftShader here): ~6 min to the
// first token and ~20 s a token on this 2-core machine, so a whole record (~50 tokens) would take
// ~20 min. The run is cancelled once the category value (the first token the model chooses among
// several) is out, and that greedy prefix is compared with CPython's; full records are checked on
// Wasm. Tagged @full: it runs in `make test-full` only; `make test` keeps WebGPU inference (the
// encoder tests above) and greedy extraction parity with CPython (on Wasm, extraction.spec.ts).
test("extraction runs on WebGPU: greedy prefix equals CPython's up to the category, then cancel @full", async ({ app }) => {
  test.setTimeout(900_000);
  const batch = join(mkdtempSync(join(tmpdir(), "webgpu-")), "texts.json");
  writeFileSync(batch, JSON.stringify([TEXTS[0]]));
  const [cpython] = execFileSync(".venv/bin/edge-triage", ["run", "telemetry-extract", "--batch", batch],
    { encoding: "utf8" }).trim().split("\n").map((l) => JSON.parse(l));
  const status = await openApp(app, "?backend=webgpu&prefetch=0");
  expect(status.backend).toBe("webgpu");
  const run = await app.evaluate(async (text) => {
    const api = (window as any).edgeTriage;
    const started = performance.now();
    const stamps: number[] = [];
    const result = await api.run("telemetry-extract", text, {
      escalate: false,
      onPartial: ({ text: partial }: any) => {
        stamps.push(performance.now());
        if (/^\{"category":"[a-z]+",/.test(partial)) api.cancel();
      },
    });
    return { result, firstTokenMs: stamps[0] - started, stamps };
  }, TEXTS[0]);
  const { result, stamps } = run;
  const decode = (stamps.length - 1) / ((stamps[stamps.length - 1] - stamps[0]) / 1000);
  console.log(`WebGPU extraction: LM load + prefill to the first token ${(run.firstTokenMs / 1000).toFixed(0)} s; ` +
    `decode ${decode.toFixed(3)} tok/s over ${stamps.length} tokens; text ${result.output.text}`);
  expect(result.backend).toBe("webgpu");
  expect(result.output.stop_reason).toBe("cancelled");
  expect(result.valid).toBe(false);
  expect(result.output.text).toMatch(/^\{"category":"[a-z]+",/);
  expect(cpython.output.text.startsWith(result.output.text), `${result.output.text} vs ${cpython.output.text}`).toBe(true);
});
