// Classification benchmark driver (server/bench/classify.py): our page vs the plain
// transformers.js page, in one headless system Chromium. Job (stdin JSON):
//   {origin, ours, plain, texts, repeats, first}
// Prints {start: {ours: [visits], plain: [visits]}, latency: {...}} on stdout; progress on stderr.
import { assertOwnOrigin, launchChromium, watchOrigin } from "../chromium.mjs";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const job = JSON.parse(input);
const log = (line) => process.stderr.write(`${line}\n`);

const browser = await launchChromium();

async function bytesSent() {
  return (await fetch(`${job.origin}/bench/bytes`)).json();
}

// A visit: open the URL, wait for the first result; the time is from navigation start.
async function visit(context, url, kind) {
  const page = await context.newPage();
  page.on("pageerror", (err) => log(`${kind}: page error ${err.message}`));
  await page.goto(url);
  const ms = await page.evaluate(async ([kind, text]) => {
    if (kind === "ours") {
      await window.edgeTriage.ready;
      await window.edgeTriage.run("telemetry-triage", text, { escalate: false });
      const took = performance.now();
      // The service worker's precache finishes before it activates: wait for it, so the next
      // visit's byte count is that visit's own.
      await navigator.serviceWorker.ready;
      return took;
    }
    await window.plain.ready;
    await window.plain.run(text);
    return performance.now();
  }, [kind, job.first]);
  return { page, ms };
}

// A fresh profile; its off-origin requests fail the run (server/chromium.mjs watchOrigin).
const contexts = [];
async function fresh() {
  const context = await browser.newContext();
  watchOrigin(context, job.origin, context);
  contexts.push(context);
  return context;
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

try {
  // Cold (fresh profile) and warm (second visit) start, `repeats` times per page, the order of
  // the two pages swapped every repeat: the first visit in a just-launched browser pays for
  // the browser's own start, and one visit each moved the ratio by ±0.5 between runs.
  const start = { ours: [], plain: [] };
  const pages = {};
  for (let r = 0; r < job.repeats; r++) {
    // The last repeat's pages stay open for the latency runs; earlier ones close first.
    for (const kind of Object.keys(pages)) await pages[kind].context().close();
    for (const kind of r % 2 ? ["plain", "ours"] : ["ours", "plain"]) {
      const context = await fresh();
      await bytesSent();
      const cold = await visit(context, job[kind], kind);
      const coldBytes = await bytesSent();
      await cold.page.close();
      const warm = await visit(context, job[kind], kind);
      const warmBytes = await bytesSent();
      start[kind].push({ cold_ms: cold.ms, warm_ms: warm.ms, cold_bytes: coldBytes, warm_bytes: warmBytes });
      pages[kind] = warm.page;
      log(`start ${r + 1}/${job.repeats} ${kind}: cold ${cold.ms.toFixed(0)} ms, warm ${warm.ms.toFixed(0)} ms`);
    }
  }
  // Warm latency, the two pages interleaved repeat by repeat so load on the machine hits both.
  // For ours also where each call went (timings_ms.inference: the encoder's call and the task
  // head, timed in the worker): per repeat the p50 of it and of the rest, call by call.
  const latency = { ours: [], plain: [], ours_inference: [], ours_rest: [] };
  const runAll = (page, kind, texts) => page.evaluate(async ([kind, texts]) => {
    const out = [];
    for (const text of texts) {
      const started = performance.now();
      if (kind === "ours") {
        const r = await window.edgeTriage.run("telemetry-triage", text, { escalate: false });
        out.push({ ms: performance.now() - started, inference: r.timings_ms.inference });
      } else {
        await window.plain.run(text);
        out.push({ ms: performance.now() - started });
      }
    }
    return out;
  }, [kind, texts]);
  // After its first result our page moves the base encoder into the Python worker (a second
  // onnxruntime session built in the background, web/worker.js moveEncoderHome): wait until it
  // is done (the warm visit is one the service worker controls, so the move happens; 30 s at
  // most). Then a whole pass of the texts on each page, not counted: measured right after the
  // start visits, the first repeat of both pages ran at 2-3x the others.
  await pages.ours.evaluate(async () => {
    for (let waited = 0; waited < 30_000 && window.edgeTriage.status().encoderWorker !== "ended"; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
  for (const kind of ["ours", "plain"]) await runAll(pages[kind], kind, job.texts);
  for (let r = 0; r < job.repeats; r++) {
    for (const kind of ["ours", "plain"]) {
      const runs = await runAll(pages[kind], kind, job.texts);
      const ms = runs.map((x) => x.ms);
      latency[kind].push({ p50: quantile(ms, 0.5), p95: quantile(ms, 0.95) });
      if (kind === "ours") {
        latency.ours_inference.push(quantile(runs.map((x) => x.inference), 0.5));
        latency.ours_rest.push(quantile(runs.map((x) => x.ms - x.inference), 0.5));
      }
      log(`repeat ${r + 1}/${job.repeats} ${kind}: p50 ${quantile(ms, 0.5).toFixed(1)} ms, p95 ${quantile(ms, 0.95).toFixed(1)} ms`);
    }
  }
  for (const context of contexts) assertOwnOrigin(context);
  process.stdout.write(JSON.stringify({ start, latency }));
} finally {
  await browser.close();
}
