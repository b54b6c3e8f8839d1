// A model brought with `edge-triage models import` runs in the page: SmolLM2 as a Hugging Face
// folder (tests/models/imported_lm.py: imported through the built-in pipeline, cached by
// content), chosen with EDGE_TRIAGE_BROWSER_LM by a server of its own; the page downloads that
// model (not the built-in one) from our origin and gives the record CPython gives with it.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { test, expect, openApp } from "./fixtures";

const PORT = Number(process.env.E2E_PORT ?? 8766) + 31;
const TEXT = "Link down on eth0 of switch sw-3, port flapping";
let modelId = "";
let server: ChildProcess | null = null;

test.use({ baseURL: `http://127.0.0.1:${PORT}` });

test.beforeAll(async () => {
  test.setTimeout(1_200_000);
  // Cached after the first run (pytest's import test builds it in `make test`); ~5 min otherwise.
  modelId = execFileSync(".venv/bin/python", ["-m", "tests.models.imported_lm"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim().split("\n").at(-1)!;
  // The page's default memory budget (1.2 GB): the imported model measures ~835 MB.
  const env = { ...process.env, EDGE_TRIAGE_BROWSER_LM: modelId };
  delete env.EDGE_TRIAGE_MEMORY_BUDGET_BYTES;
  server = spawn(".venv/bin/edge-triage", ["serve", "--port", String(PORT), "--log-level", "warning"],
    { env, stdio: "inherit" });
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${PORT}/api/health`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("the server with the imported model did not come up");
});

test.afterAll(() => server?.kill());

test("an imported Hugging Face model is the page's language model and matches CPython", async ({ app, requests }) => {
  test.setTimeout(900_000);
  const expected = JSON.parse(execFileSync(".venv/bin/edge-triage", ["run", "telemetry-extract", TEXT],
    { encoding: "utf8", env: { ...process.env, EDGE_TRIAGE_BROWSER_LM: modelId }, maxBuffer: 2 ** 24 }));
  await openApp(app);
  const config = await app.evaluate(() => (window as any).edgeTriage.status());
  const result = await app.evaluate(([t]) => (window as any).edgeTriage.run("telemetry-extract", t, { escalate: false }), [TEXT]);
  expect(result.valid).toBe(true);
  // The 8-bit variant CPython runs (it fits the budget by its measured memory).
  expect((await app.evaluate(() => (window as any).edgeTriage.status())).lmDtype).toBe("q8");
  // Same fields, and the same text up to, at most, a near-tie late in the summary: the two
  // runtimes' logits differ by ~1e-6 (float summation order), which flips a greedy choice only
  // where two tokens tie. Measured on a fresh clone (2026-11-30): identical up to the summary's
  // last two characters (", ," vs ",,") after a degenerate run of digits. Exact parity on 20
  // inputs of the built-in model is extraction.spec.ts's check.
  for (const field of ["category", "severity", "component_kind", "component", "action_required"]) {
    expect(result.output.record?.[field], field).toEqual(expected.output.record?.[field]);
  }
  const [ours, theirs] = [result.output.text, expected.output.text];
  let same = 0;
  while (same < Math.min(ours.length, theirs.length) && ours[same] === theirs[same]) same++;
  expect(same, `identical for ${same} of ${theirs.length} characters`).toBeGreaterThanOrEqual(0.9 * theirs.length);
  expect(result.output.stop_reason).toBe(expected.output.stop_reason);
  const lmFiles = requests.filter((u) => /\/models\/SmolLM2[^/]*\//.test(new URL(u).pathname));
  expect(lmFiles.length).toBeGreaterThan(0);
  // Every language-model file came from the imported folder, none from the built-in one.
  for (const url of lmFiles) expect(new URL(url).pathname).toContain(`/models/${modelId}/`);
  console.log(`imported ${modelId}: ${lmFiles.length} files; record ${result.output.text}; status ${JSON.stringify(config.state)}`);
});
