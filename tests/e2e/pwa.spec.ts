// Offline PWA and the verified model store, in real Chromium against the real server.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "@playwright/test";
import { test, expect, openApp, classify, swReady } from "./fixtures";

const CACHE = "edge-triage-models-v1";

test("after one visit the app reloads and classifies with the network off", async ({ app, context }) => {
  await openApp(app, "?prefetch=0");
  await swReady(app);
  await context.setOffline(true);
  await app.reload();
  const status = await app.evaluate(() => (window as any).edgeTriage.ready);
  expect(status.state).toBe("ready");
  expect(status.crossOriginIsolated).toBe(true);
  expect(status.modelFiles.downloaded).toBe(0);
  expect((await classify(app, "Filesystem /data is 99% full")).output.label).toBe("storage");
  await context.setOffline(false);
});

test("after one visit, extraction works offline too (the language model was fetched ahead)", async ({ app, context }) => {
  test.setTimeout(900_000);
  await openApp(app, "?backend=wasm");
  await swReady(app);
  await app.waitForFunction(() => (window as any).edgeTriage.status().lmCached === true, null, { timeout: 600_000 });
  await context.setOffline(true);
  await app.reload();
  await app.evaluate(() => (window as any).edgeTriage.ready);
  const result = await app.evaluate(() => (window as any).edgeTriage.run(
    "telemetry-extract", "Error: Fan speed threshold exceeded on Node 4B.", { escalate: false }));
  expect(result.valid).toBe(true);
  expect(Object.keys(result.output.record)).toEqual(["category", "severity", "component_kind", "summary", "component", "action_required"]);
  expect((await classify(app, "Link down on eth0")).output.label).toBe("network");
  await context.setOffline(false);
});

test("Chromium reports the app installable", async ({ baseURL, browserName }, testInfo) => {
  // Installability is never reported for incognito-like contexts: use a real profile.
  const launch = testInfo.project.use.launchOptions!;
  const profile = mkdtempSync(join(tmpdir(), "edge-triage-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: launch.executablePath, args: launch.args, baseURL,
  });
  const offOrigin: string[] = [];
  context.on("request", (r) => { if (new URL(r.url()).origin !== new URL(baseURL!).origin) offOrigin.push(r.url()); });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    await openApp(page, "?prefetch=0");
    await swReady(page);
    const cdp = await context.newCDPSession(page);
    const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
    expect(installabilityErrors).toEqual([]);
    const manifest = await cdp.send("Page.getAppManifest");
    expect(manifest.errors).toEqual([]);
    expect(offOrigin).toEqual([]);
  } finally {
    await context.close();
  }
});

test("a corrupted cached shard is discarded, fetched again and never used", async ({ app }) => {
  await openApp(app);
  const corrupted = await app.evaluate(async (name) => {
    const cache = await caches.open(name);
    const keys = (await cache.keys()).map((r) => r.url).filter((u) => u.includes("/shards/"));
    await cache.put(keys[1], new Response(new Uint8Array(1000).fill(7)));
    return keys[1];
  }, CACHE);
  await app.reload();
  const status = await app.evaluate(() => (window as any).edgeTriage.ready);
  expect(status.modelFiles.discarded).toBe(1);
  expect(status.modelFiles.downloaded).toBe(1);
  expect((await classify(app, "PSU 2 failed, running on redundant supply")).output.label).toBe("power");
  const repaired = await app.evaluate(async ([name, url]) => {
    const hit = await (await caches.open(name)).match(url);
    return (await hit!.arrayBuffer()).byteLength;
  }, [CACHE, corrupted]);
  expect(repaired).toBeGreaterThan(1000);
});

test("a shard corrupted on the network is refused with a clear error and not cached", async ({ app, context }) => {
  let served = 0;
  await context.route(/\/shards\/.*\.002$/, async (route) => {
    served++;
    await route.fulfill({ status: 200, body: Buffer.alloc(4096, 1), contentType: "application/octet-stream" });
  });
  await app.goto("/?backend=wasm");
  const error = await app.evaluate(() => (window as any).edgeTriage.ready.then(() => null, (e: Error) => e.message));
  expect(error).toContain("does not match its manifest");
  expect(served).toBe(2); // fetched, rejected, fetched again, rejected: never used
  await expect(app.locator("#error")).toContainText("discarded");
  const cached = await app.evaluate(async (name) =>
    (await (await caches.open(name)).keys()).map((r) => r.url).filter((u) => u.endsWith(".002")), CACHE);
  expect(cached).toEqual([]);
});

test("an interrupted download resumes from the shards already verified", async ({ app, context }) => {
  await context.route(/\/shards\/.*\.003$/, (route) => route.abort("connectionreset"));
  await app.goto("/?backend=wasm");
  const error = await app.evaluate(() => (window as any).edgeTriage.ready.then(() => null, (e: Error) => e.message));
  expect(error).toContain("Failed");
  await context.unroute(/\/shards\/.*\.003$/);
  const shardRequests: string[] = [];
  app.on("request", (r) => { if (r.url().includes("/shards/")) shardRequests.push(r.url()); });
  await app.reload();
  const status = await app.evaluate(() => (window as any).edgeTriage.ready);
  expect(status.modelFiles.downloaded).toBe(1);
  expect(status.modelFiles.fromCache).toBeGreaterThanOrEqual(5);
  expect((await classify(app, "Link down on eth0")).output.label).toBe("network");
});

test("the model's memory estimate is checked against the budget before download", async ({ app }) => {
  await app.route((url) => url.pathname === "/", async (route) => {
    const response = await route.fetch();
    const html = (await response.text()).replace(/"memoryBudgetBytes": \d+/, '"memoryBudgetBytes": 1000');
    await route.fulfill({ response, body: html });
  });
  await app.goto("/?backend=wasm");
  const error = await app.evaluate(() => (window as any).edgeTriage.ready.then(() => null, (e: Error) => e.message));
  expect(error).toContain("over this deployment's budget");
});

async function withBudget(page, bytes: number) {
  await page.route((url) => url.pathname === "/", async (route) => {
    const response = await route.fetch();
    const html = (await response.text()).replace(/"memoryBudgetBytes": \d+/, `"memoryBudgetBytes": ${bytes}`);
    await route.fulfill({ response, body: html });
  });
}

test("over budget, the smaller language-model variant is chosen", async ({ app, requests }) => {
  test.setTimeout(900_000);
  // The check counts the page (measured, or its encoders' estimates if more) plus the variant's
  // estimate (web/lm.js chooseVariant). A budget 1 MiB short of "encoders + q8" refuses q8
  // whatever the page measures; q4 (~100 MiB smaller, models/llm.py estimate_memory) then fits
  // while the page measures under "encoders + ~100 MiB" (~208 MiB; it measures ~140 MiB after
  // boot). The config is read without visiting the page, whose service worker would otherwise
  // serve the next visit past the budget's route.
  const html = await (await app.request.get("/")).text();
  const config = JSON.parse(html.match(/<script id="config" type="application\/json">(.*?)<\/script>/s)![1]);
  // The heads share one encoder: count each encoder once, as web/worker.js encoderMemory does.
  const heads = new Map((config.fieldHeads["telemetry-extract"] ?? [])
    .map((h: string) => config.taskEncoders[h]).filter(Boolean).map((e: any) => [e.model_id, e]));
  const encoders = [...heads.values()].reduce((sum: number, e: any) => sum + e.added_memory_bytes,
                                              config.encoder.estimated_memory_bytes);
  const q8 = config.lm.variants.find((v: any) => v.dtype === "q8").estimated_memory_bytes;
  const budget = encoders + q8 - 2 ** 20;
  await withBudget(app, budget);
  await openApp(app);
  // Cancel at the first streamed token: the variant is known by then, and q4 decodes slowly on Wasm.
  const result = await app.evaluate(() => (window as any).edgeTriage.run(
    "telemetry-extract", "PSU 2 failed, running on redundant supply",
    { escalate: false, onPartial: () => (window as any).edgeTriage.cancel() }));
  expect(result.output.stop_reason).toBe("cancelled");
  expect(requests.some((u) => /SmolLM2.*\/shards\/onnx__model_q4\.onnx\.\d{3}$/.test(u))).toBe(true);
  expect(requests.some((u) => /SmolLM2.*\/shards\/onnx__model_quantized\.codes\.\d{3}$/.test(u))).toBe(false);
});

test("when no language-model variant fits the budget, extraction is refused before download", async ({ app, requests }) => {
  await withBudget(app, 300_000_000);
  await openApp(app);
  const refusal = await app.evaluate(() => (window as any).edgeTriage.run(
    "telemetry-extract", "PSU 2 failed", { escalate: false }).then(() => null, (e: Error) => e.message));
  expect(refusal).toContain("over this deployment's budget");
  expect(requests.some((u) => /SmolLM2.*\/shards\//.test(u))).toBe(false);
});
