// The page in real Chromium on Wasm: boot, classify, the JS API, bad input, isolation, origin.
import { test, expect, openApp, classify, classifyError, swReady } from "./fixtures";

test.describe.configure({ mode: "serial" });

test("boots Pyodide in a worker and classifies on Wasm with threads", async ({ app }) => {
  const status = await openApp(app);
  expect(status.state).toBe("ready");
  expect(status.backend).toBe("wasm");
  expect(status.crossOriginIsolated).toBe(true);
  expect(await app.evaluate(() => self.crossOriginIsolated)).toBe(true);
  expect(status.threads).toBeGreaterThan(1);

  const result = await classify(app, "Error: Fan speed threshold exceeded on Node 4B.");
  expect(result.task).toBe("telemetry-triage");
  expect(result.output.label).toBe("mechanical");
  expect(result.confidence).toBeGreaterThan(0);
  expect(result.confidence).toBeLessThanOrEqual(1);
  expect(["local", "escalated"]).toContain(result.route);
  expect(result.backend).toBe("wasm");
  expect(result.timings_ms.total).toBeGreaterThanOrEqual(result.timings_ms.inference);
  expect(Object.keys(result.output.scores).sort()).toEqual(
    ["mechanical", "network", "power", "sensor", "software", "storage", "thermal"]);
});

// The base encoder boots in a worker of its own and, on a page the service worker serves, moves
// into the inference worker after the first result (web/encoders.js bringHome): the same files
// and onnxruntime build, so the same numbers, bit for bit, before and after; its worker ends.
test("after the first result the base encoder moves into the inference worker, same scores", async ({ app }) => {
  await openApp(app);
  const first = await classify(app, "PSU 2 failed, running on redundant supply");
  await swReady(app);
  expect(await app.evaluate(() => (window as any).edgeTriage.status().encoderWorker)).toBeUndefined();  // first visit: stays
  await app.reload();
  await app.evaluate(() => (window as any).edgeTriage.ready);
  expect(await app.evaluate(() => !!navigator.serviceWorker.controller)).toBe(true);
  const texts = ["PSU 2 failed, running on redundant supply", "Link down on eth0", "Fan 2 stalled, rotor speed 0 RPM"];
  const encoderWorker = () => app.workers().some((w) => w.url().endsWith("/encoderworker.js"));
  expect(encoderWorker()).toBe(true);
  const before = [];
  for (const text of texts) before.push(await classify(app, text));
  await expect.poll(() => app.evaluate(() => (window as any).edgeTriage.status().encoderWorker),
                    { timeout: 60_000 }).toBe("ended");
  await expect.poll(encoderWorker).toBe(false);
  for (const [i, text] of texts.entries()) {
    const after = await classify(app, text);
    expect(after.output.label, text).toBe(before[i].output.label);
    expect(after.output.scores, text).toEqual(before[i].output.scores);
  }
  expect(before[0].output.scores).toEqual(first.output.scores);  // and as on the first visit
  expect(await app.evaluate(() => (window as any).edgeTriage.status().crashes ?? 0)).toBe(0);
});

test("the form shows label, confidence, latency and backend", async ({ app }) => {
  await openApp(app);
  await app.fill("#text", "UPS switched to battery after mains failure");
  await app.click("#run");
  await expect(app.locator("#label")).toHaveText("power");
  await expect(app.locator("#confidence")).toHaveText(/\d+\.\d%/);
  await expect(app.locator("#latency")).toHaveText(/ms/);
  await expect(app.locator("#result-backend")).toHaveText(/wasm, \d+ thread/);
  await expect(app.locator("#backend")).toHaveText(/wasm/);
  await expect(app.locator("#progress-box")).toBeHidden();
});

test("every request stays on our origin, worker traffic included", async ({ app, requests }) => {
  await openApp(app);
  await classify(app, "Link down on eth0");
  // Proof that the watch sees the worker's fetches: the runtime, model and ORT wasm.
  expect(requests.some((u) => u.endsWith("/pyodide/pyodide.asm.wasm"))).toBe(true);
  // The default encoder file on Wasm is the integer one (models/encoder.py), nothing of the other.
  expect(requests.some((u) => /\/models\/.+\/shards\/onnx__model_uint8\.onnx\.\d{3}$/.test(u))).toBe(true);
  expect(requests.some((u) => /model_quantized/.test(u))).toBe(false);
  // transformers.js reads the verified shards, never the unverified whole file.
  expect(requests.some((u) => /\/onnx\/model_uint8\.onnx$/.test(u))).toBe(false);
  // On Wasm, onnxruntime-web's plain Wasm build (server/runtime.py), not the asyncify one.
  expect(requests.some((u) => /\/ort-wasm\/ort-wasm-simd-threaded\.wasm$/.test(u))).toBe(true);
  expect(requests.some((u) => /\/ort\/ort-wasm-simd-threaded\.asyncify\.wasm$/.test(u))).toBe(false);
  expect(requests.some((u) => u.includes("pyodide-lock.json"))).toBe(true);
  // The fixture fails the test on any request to another origin.
});

test("empty and non-string input are rejected with a readable error", async ({ app }) => {
  await openApp(app);
  for (const text of ["", "   \n\t "]) {
    const err = await classifyError(app, text);
    expect(err).toEqual({ name: "InputError", message: "Text is empty: enter the text to triage." });
  }
  const notString = await classifyError(app, 42);
  expect(notString?.name).toBe("InputError");
  expect(notString?.message).toContain("must be a string");
  const unknown = await classifyError(app, "x", "no-such-task");
  expect(unknown?.message).toContain("Unknown task 'no-such-task'");
  // The page stays usable after errors.
  expect((await classify(app, "Filesystem /var is 97% full")).output.label).toBe("storage");
});

test("the form shows the validation message for empty text", async ({ app }) => {
  await openApp(app);
  await app.fill("#text", "   ");
  await app.click("#run");
  await expect(app.locator("#error")).toHaveText("Text is empty: enter the text to triage.");
  await expect(app.locator("#result")).toBeHidden();
});

test("100,000 characters are truncated with a visible notice", async ({ app }) => {
  await openApp(app);
  const text = "Fan 3 stalled at 0 RPM. ".repeat(4200).slice(0, 100_000);
  const result = await classify(app, text);
  expect(result.truncated).toBe(true);
  expect(result.notices.join(" ")).toContain("truncated to the model's 256 tokens");
  expect(result.output.label).toBe("mechanical");
  await app.fill("#text", text);
  await app.click("#run");
  await expect(app.locator("#notices")).toContainText("truncated");
});

test("control characters and lone surrogates are handled", async ({ app }) => {
  await openApp(app);
  const result = await classify(app, "disk\u0000 full \ud800 on /var\u001b");
  expect(result.output.label).toBe("storage");
  expect(result.notices.join(" ")).toContain("control character");
  expect(result.notices.join(" ")).toContain("U+FFFD");
});

test("the page stays responsive while Python works in the worker", async ({ app }) => {
  await openApp(app);
  const ticks = await app.evaluate(async () => {
    let count = 0;
    let running = true;
    const tick = () => { count++; if (running) setTimeout(tick, 0); };
    tick();
    const work = [];
    for (let i = 0; i < 10; i++) work.push((window as any).edgeTriage.run("telemetry-triage", `Fan ${i} stalled`));
    await Promise.all(work);
    running = false;
    return count;
  });
  // The main thread kept running its own tasks during inference (it would be ~0 if blocked).
  expect(ticks).toBeGreaterThan(20);
});

test("an unknown ?backend= value is a clear error", async ({ app }) => {
  await app.goto("/?backend=cuda");
  const err = await app.evaluate(() => (window as any).edgeTriage.ready.then(() => null, (e: Error) => e.message));
  expect(err).toContain("Unknown backend 'cuda'");
  await expect(app.locator("#error")).toContainText("Unknown backend");
});
