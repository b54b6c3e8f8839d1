// Faults in the browser, each ending in a clear message and a way to retry, with no case lost:
// the server killed mid-download, a throttled network, the worker crashing mid-extraction, and
// storage full. A server of our own per test (own port, own SQLite queue), reached through a TCP
// proxy we can slow down, so the faults are real: a dead process, slow sockets.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, expect, openApp, classify, swReady } from "./fixtures";

const BASE_PORT = Number(process.env.E2E_PORT ?? 8766);
const SERVER_PORT = BASE_PORT + 40;  // the app server
const PROXY_PORT = BASE_PORT + 41;   // what the browser talks to
const TOKEN = "faults-test-token";
const MODEL_CACHE = "edge-triage-models-v1";
const OOS = "what will the weather be like tomorrow in Lisbon";

test.describe.configure({ mode: "serial" });
test.use({ baseURL: `http://127.0.0.1:${PROXY_PORT}` });

let server: ChildProcess | null = null;
const db = join(mkdtempSync(join(tmpdir(), "edge-triage-faults-")), "queue.sqlite3");

async function startServer() {
  server = spawn(".venv/bin/edge-triage", ["serve", "--port", String(SERVER_PORT), "--log-level", "warning"], {
    stdio: "ignore",
    env: { ...process.env, EDGE_TRIAGE_SQLITE_PATH: db, EDGE_TRIAGE_ESCALATION_TOKEN: TOKEN,
           EDGE_TRIAGE_WORKER_POLL_S: "0.2" },
  });
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${SERVER_PORT}/api/health`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("fault-test server did not start");
}

async function killServer() {
  const s = server!;
  if (s.exitCode !== null || s.signalCode !== null) return;  // already gone
  const exited = new Promise((r) => s.once("exit", r));
  s.kill("SIGKILL");
  await exited;
}

// A TCP relay; `bytesPerSecond` and `latencyMs` throttle the server → browser direction, and
// `beforeRequest(path)` sees each request's path on its way to the server (browser → server),
// holding it until it resolves; "refuse" closes the connection instead. Faults keyed on requests
// live here, not in Playwright routes: with the page's workers, unrouting a route whose requests
// had failed waited forever, and so did a reload after one (the first and last tests below).
const throttle = { bytesPerSecond: 0, latencyMs: 0 };
let beforeRequest: ((path: string) => Promise<"refuse" | void> | "refuse" | void) | null = null;
const proxy = net.createServer((client) => {
  const upstream = net.connect(SERVER_PORT, "127.0.0.1");
  client.on("data", async (chunk) => {
    const paths = [...chunk.toString("latin1").matchAll(/^[A-Z]+ (\S+) HTTP\/1\.[01]\r?$/gm)].map((m) => m[1]);
    if (beforeRequest && paths.length) {
      client.pause();
      for (const path of paths) {
        if ((await beforeRequest?.(path)) === "refuse") return close();
      }
      client.resume();
    }
    upstream.write(chunk);
  });
  let first = true;  // the latency is paid once per connection, the bandwidth per byte
  upstream.on("data", async (chunk) => {
    if (!throttle.bytesPerSecond && !throttle.latencyMs) return client.write(chunk);
    upstream.pause();
    const wait = (first ? throttle.latencyMs : 0) + (throttle.bytesPerSecond ? (chunk.length / throttle.bytesPerSecond) * 1000 : 0);
    first = false;
    await new Promise((r) => setTimeout(r, wait));
    client.write(chunk, () => upstream.resume());
  });
  const close = () => { client.destroy(); upstream.destroy(); };
  client.on("error", close); upstream.on("error", close);
  client.on("close", close); upstream.on("close", close);
});

test.beforeAll(async () => {
  await new Promise<void>((r) => proxy.listen(PROXY_PORT, "127.0.0.1", r));
  await startServer();
});

test.afterAll(async () => {
  await killServer();
  proxy.close();
});

async function serverKeys(): Promise<Set<string>> {
  const listing = await (await fetch(`http://127.0.0.1:${SERVER_PORT}/api/escalations?limit=1000`, {
    headers: { Authorization: `Bearer ${TOKEN}` } })).json();
  return new Set(listing.cases.map((c) => c.idempotency_key));
}

async function serverCount(key: string): Promise<number> {
  const listing = await (await fetch(`http://127.0.0.1:${SERVER_PORT}/api/escalations?limit=1000`, {
    headers: { Authorization: `Bearer ${TOKEN}` } })).json();
  return listing.cases.filter((c) => c.idempotency_key === key).length;
}

async function escalateOffline(page, context) {
  await context.setOffline(true);
  const result = await classify(page, OOS);
  await context.setOffline(false);
  expect(result.route).toBe("escalated");
  return result.escalation.key as string;
}

async function dropModelCache(page) {
  await page.evaluate((name) => caches.delete(name), MODEL_CACHE);
}

async function readyError(page) {
  return page.evaluate(() => (window as any).edgeTriage.ready.then(() => null, (e: Error) => e.message));
}

test("the server killed mid-download: a clear message, then the reload resumes and the case is sent", async ({ app, context }) => {
  await openApp(app);
  await swReady(app);  // with the server gone, the reload boots from the service worker's runtime
  const key = await escalateOffline(app, context);  // a case waiting while the server dies
  await dropModelCache(app);
  let shards = 0;
  beforeRequest = async (path) => {
    // Four shards download at once: the fifth is asked for once one is verified and stored,
    // so the server dies with some shards kept and others in flight.
    if (/^\/models\/.*\/shards\//.test(path) && ++shards === 5) await killServer();
  };
  await app.reload();
  const error = await readyError(app);
  expect(error).toMatch(/Could not download \/models\/.* the server or the network went away/);
  await expect(app.locator("#error")).toContainText("Reload to try again");
  const records = await app.evaluate(() => (window as any).edgeTriage.outbox());
  expect(records.map((r) => r.key)).toContain(key);  // nothing lost while the server was gone

  beforeRequest = null;
  expect(shards).toBeGreaterThanOrEqual(5);  // the server died during the model's download
  await startServer();
  await app.reload();
  const status = await app.evaluate(() => (window as any).edgeTriage.ready);
  expect(status.modelFiles.fromCache).toBeGreaterThanOrEqual(1);  // resumed, not restarted
  expect((await classify(app, "PSU 2 failed, running on redundant supply")).output.label).toBe("power");
  await app.evaluate(() => (window as any).edgeTriage.flushOutbox());
  await expect.poll(async () => (await serverKeys()).has(key), { timeout: 60_000 }).toBe(true);
});

test("a throttled network: the download shows its progress, finishes, and the case is sent", async ({ app, context }) => {
  test.setTimeout(300_000);
  await openApp(app);
  await swReady(app);  // the runtime comes from the service worker: only the model goes through the throttle
  await dropModelCache(app);
  try {
    // The case is escalated offline and the network comes back already slow, so it is sent
    // through the throttle (and the reload below may cut its POST off half way: the page then
    // sends it again under the same key).
    await context.setOffline(true);
    const escalated = await classify(app, OOS);
    expect(escalated.route).toBe("escalated");
    const key = escalated.escalation.key as string;
    Object.assign(throttle, { bytesPerSecond: 2 ** 20, latencyMs: 300 });  // 1 MiB/s a connection, 300 ms to start
    await context.setOffline(false);
    await app.reload();
    // Sampled in the page, every animation frame, so no label is missed between two polls.
    const labels: string[] = await app.evaluate(() => new Promise((resolve, reject) => {
      const seen = new Set<string>();
      const tick = () => {
        const { state } = (window as any).edgeTriage.status();
        seen.add(document.getElementById("progress-label")!.textContent ?? "");
        if (state === "failed") reject(new Error((window as any).edgeTriage.status().error));
        else if (state === "ready") resolve([...seen]);
        else requestAnimationFrame(tick);
      };
      tick();
    }));
    const status = await app.evaluate(() => (window as any).edgeTriage.status());
    expect(status.modelFiles.downloaded).toBeGreaterThanOrEqual(1);  // really fetched, through the throttle
    const downloads = labels.filter((l) => /MiB/.test(l) && /%/.test(l));
    expect(downloads.length, labels.join(" | ")).toBeGreaterThanOrEqual(2);  // it moved
    await app.evaluate(() => (window as any).edgeTriage.flushOutbox());
    await expect.poll(async () => (await serverKeys()).has(key), { timeout: 60_000 }).toBe(true);
    expect(await serverCount(key)).toBe(1);  // sent twice at most, stored once
  } finally {
    Object.assign(throttle, { bytesPerSecond: 0, latencyMs: 0 });
  }
});

// What a user gets when the worker dies mid-run: the run fails with a message saying so and the
// text stays in the form to run again (no automatic retry: an input that crashed the worker
// could crash it again, in a loop); the worker restarts by itself.
test("the worker crashes mid-extraction: the run says so, the worker restarts, running again works", async ({ app }) => {
  test.setTimeout(600_000);
  await openApp(app);
  const text = "Error: Fan speed threshold exceeded on Node 4B.";
  await app.locator("#task").selectOption("telemetry-extract");
  await app.locator("#text").fill(text);
  // At the first streamed token, an uncaught error in the inference worker (as a Wasm trap would be).
  let fired = false;
  await app.exposeFunction("crashNow", async () => {
    if (fired) return;
    fired = true;
    const worker = app.workers().find((w) => w.url().endsWith("/worker.js"))!;
    await worker.evaluate(() => setTimeout(() => { throw new Error("simulated crash"); }, 0));
  });
  const crashed = app.evaluate(([t, x]) => new Promise((resolve) => {
    (window as any).edgeTriage.run(t, x, { onPartial: () => (window as any).crashNow() })
      .then(() => resolve(null), (e: Error) => resolve({ name: e.name, message: e.message }));
  }), ["telemetry-extract", text]);
  const failure: any = await crashed;
  expect(failure?.name).toBe("WorkerCrashError");
  expect(failure.message).toContain("The inference worker crashed");
  await expect(app.locator("#error")).toContainText("run the text again");
  await expect(app.locator("#text")).toHaveValue(text);  // the input is still there
  await app.evaluate(() => (window as any).edgeTriage.ready);
  await expect(app.locator("#error")).toContainText("has restarted: run the text again");
  await app.locator("#run").click();
  await expect(app.locator("#error")).toBeHidden();
  await expect(app.locator("#label")).toHaveText("record", { timeout: 300_000 });
  expect(await app.evaluate(() => (window as any).edgeTriage.status().crashes)).toBe(1);
});

// The base encoder runs in a worker of its own (web/encoderworker.js), started by the inference
// worker: its crash must reach the page's crash handling too, not leave Python waiting forever.
test("the encoder worker crashes: the page says so, the workers restart, classifying works again", async ({ app }) => {
  await openApp(app);
  const encoder = app.workers().find((w) => w.url().endsWith("/encoderworker.js"))!;
  await encoder.evaluate(() => setTimeout(() => { throw new Error("simulated crash"); }, 0));
  await expect(app.locator("#error")).toContainText("The inference worker crashed");
  await app.evaluate(() => (window as any).edgeTriage.ready);
  expect(await app.evaluate(() => (window as any).edgeTriage.status().crashes)).toBe(1);
  expect((await classify(app, "PSU 2 failed, running on redundant supply")).output.label).toBe("power");
});

// A worker stuck on a promise that never settles (a script or onnxruntime thread that never
// loads) sends no error at all: here the encoder worker stops answering after boot. The
// inference worker stops waiting after web/encoders.js SILENCE_MS (60 s), loads the base encoder
// itself and answers the waiting call, instead of leaving the run (or a boot) waiting forever.
test("an encoder worker that stops answering: the encoder moves to the inference worker", async ({ app }) => {
  test.setTimeout(300_000);
  const messages: string[] = [];
  app.on("console", (m) => messages.push(m.text()));
  app.on("worker", (w) => w.on("console", (m) => messages.push(m.text())));
  await openApp(app);
  const encoder = app.workers().find((w) => w.url().endsWith("/encoderworker.js"))!;
  await encoder.evaluate(() => { self.onmessage = () => {}; });  // alive, silent
  const started = Date.now();
  expect((await classify(app, "PSU 2 failed, running on redundant supply")).output.label).toBe("power");
  expect(Date.now() - started).toBeGreaterThanOrEqual(60_000);
  expect(messages.join("\n")).toContain("The encoder worker did not answer for 60 s");
  await expect.poll(() => app.workers().some((w) => w.url().endsWith("/encoderworker.js"))).toBe(false);  // ended
  expect(await app.evaluate(() => (window as any).edgeTriage.status().crashes ?? 0)).toBe(0);  // no restart: not a crash
  expect((await classify(app, "Fan 2 stalled, rotor speed 0 RPM")).output.label).toBe("mechanical");
});

// Pyodide's own loader waits forever when pyodide.asm.wasm's download fails (web/worker.js
// failingOnWasmError): the first request for it is cut here, and the boot must try again.
test("the Python runtime's download cut off: the boot tries again and finishes", async ({ app, context }) => {
  let requests = 0;
  await context.route(/\/pyodide\.asm\.wasm$/, (route) => (requests++ ? route.continue() : route.abort("connectionreset")));
  const status = await openApp(app);
  expect(requests).toBe(2);
  expect(status.state).toBe("ready");
  expect((await classify(app, "PSU 2 failed, running on redundant supply")).output.label).toBe("power");
});

test("storage full: a clear message, the outbox keeps its case, and with space back it all works", async ({ app, context }) => {
  await openApp(app);
  // The server refuses connections for now, so the cases stay pending through the fault (an
  // online page would otherwise send them at once and the test would prove nothing).
  beforeRequest = (path) => (path.startsWith("/api/escalations") ? "refuse" : undefined);
  const kept = (await classify(app, OOS)).escalation.key as string;
  const cdp = await context.newCDPSession(app);
  const origin = new URL(app.url()).origin;
  await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 1024 });

  // Full while running (the model already in memory): Chromium sometimes lets this small
  // IndexedDB write through and sometimes refuses it (QuotaExceededError), from one run to the
  // next. Either the case is stored like any other, or run() says plainly that it was not saved
  // (so it was never reported as escalated, and the caller still has the text): never a silent loss.
  const during = await app.evaluate((t) => (window as any).edgeTriage.run("telemetry-triage", t).then(
    (r) => ({ key: r.escalation?.key as string }), (e: Error) => ({ name: e.name, message: e.message })),
    `${OOS} and in Porto`);
  console.log(`escalation while storage is full: ${during.key ? "stored" : "refused"}`);
  if (!during.key) {
    expect(during.name).toBe("StorageQuotaError");
    expect(during.message).toContain("could not be saved to the outbox, so it was not sent");
  }
  const keys = during.key ? [kept, during.key] : [kept];

  // Full at start: the model cannot be stored.
  await dropModelCache(app);
  await app.reload();
  const error = await readyError(app);
  expect(error).toContain("Not enough storage for the model");
  await expect(app.locator("#error")).toContainText("free space in this browser");
  const records = await app.evaluate(() => (window as any).edgeTriage.outbox());
  for (const key of keys) {  // stored before (and during) the fault, still waiting
    expect(records.find((r) => r.key === key)?.status).toBe("pending");
  }

  await cdp.send("Storage.overrideQuotaForOrigin", { origin });  // space is back
  beforeRequest = null;
  await app.reload();
  await app.evaluate(() => (window as any).edgeTriage.ready);
  expect((await classify(app, "Link down on eth0")).output.label).toBe("network");
  await app.evaluate(() => (window as any).edgeTriage.flushOutbox());
  await expect.poll(async () => {
    const onServer = await serverKeys();
    return keys.every((k) => onServer.has(k));
  }, { timeout: 60_000 }).toBe(true);
});
