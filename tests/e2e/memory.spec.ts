// Measured memory is the budget (issue 11 point 2): the page with both models loaded — the
// encoder after a classification, the language model after two extractions — measured with
// performance.measureUserAgentSpecificMemory() (the page is cross-origin isolated), against the
// seed's 1.2 GB, and against the manifests' estimates (which come from this measurement).
import { test, expect, openApp, classify } from "./fixtures";

const BUDGET = 1_200_000_000;
const MiB = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function measure(page: any): Promise<number> {
  return page.evaluate(() => (window as any).edgeTriage.memoryUse());
}

// @full: ~4 minutes on the loaded 2-core machine (both models, two extractions), so it runs in
// `make test-full`, not `make test`. Measured ~0.93 GiB (README "Memory (measured)").
test("both models loaded: measured page memory within the budget and near the estimates @full", async ({ app }) => {
  // Slow: loads both models and runs two extractions.
  test.setTimeout(1_200_000);
  const status = await openApp(app);
  expect(status.crossOriginIsolated).toBe(true);
  const boot = await measure(app);
  expect((await classify(app, "Link down on eth0")).output.label).toBe("network");
  const extractions = [];
  for (const text of ["Error: Fan speed threshold exceeded on Node 4B.", "Disk /dev/sda2 at 97% capacity."]) {
    extractions.push(await app.evaluate((t) => (window as any).edgeTriage.run("telemetry-extract", t, { escalate: false }), text));
  }
  for (const r of extractions) expect(r.valid).toBe(true);
  const both = await measure(app);
  const config = await app.evaluate(() => (window as any).edgeTriage.status());
  const lmEstimate = config.lmEstimatedMemoryBytes;
  // The telemetry heads run on an encoder of their own, loaded with the first extraction.
  const headsEstimate = config.taskEncoderMemoryBytes ?? 0;
  expect(headsEstimate).toBeGreaterThan(0);
  const estimate = config.estimatedMemoryBytes + headsEstimate + lmEstimate;
  console.log(`measured page memory: after boot ${MiB(boot)}, with both models ${MiB(both)}; ` +
              `estimates: encoder ${MiB(config.estimatedMemoryBytes)} + heads' encoder ${MiB(headsEstimate)} + ` +
              `language model ${MiB(lmEstimate)} = ${MiB(estimate)}`);
  // The estimates the budget check uses are within 25 % of what the page measures.
  expect(Math.abs(estimate - both) / both).toBeLessThanOrEqual(0.25);
  expect(both, `measured ${MiB(both)} with both models, budget ${MiB(BUDGET)}`).toBeLessThanOrEqual(BUDGET);
});
