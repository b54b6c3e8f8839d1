// Browser (Pyodide + transformers.js on Wasm) and CPython (onnxruntime) give the same answers.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test, expect, openApp } from "./fixtures";

const TEXTS: string[] = JSON.parse(readFileSync("tests/data/parity_texts.json", "utf8"));

function cpythonResults() {
  const out = execFileSync(".venv/bin/edge-triage",
    ["run", "telemetry-triage", "--batch", "tests/data/parity_texts.json"], { encoding: "utf8" });
  return out.trim().split("\n").map((line) => JSON.parse(line));
}

// The default encoder file is integer (uint8) with its float ops made exact in both runtimes
// (models/weightquant.py), so the scores agree to float32 rounding of the pooling, not only to
// the 5e-3: 1e-5 catches a rewrite that stops being exact.
test("same labels and confidences within 1e-5 for every parity text", async ({ app }) => {
  expect(TEXTS.length).toBeGreaterThanOrEqual(50);
  const expected = cpythonResults();
  await openApp(app, "?backend=wasm");
  const actual = await app.evaluate(async (texts) => {
    const results = [];
    for (const t of texts) results.push(await (window as any).edgeTriage.run("telemetry-triage", t));
    return results;
  }, TEXTS);
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  actual.forEach((browser: any, i: number) => {
    const cpy = expected[i];
    expect(browser.output.label, TEXTS[i]).toBe(cpy.output.label);
    expect(browser.route, TEXTS[i]).toBe(cpy.route);
    for (const [label, p] of Object.entries(cpy.output.scores)) {
      const d = Math.abs((browser.output.scores as any)[label] - (p as number));
      worst = Math.max(worst, d);
      expect(d, `${TEXTS[i]} / ${label}`).toBeLessThan(1e-5);
    }
  });
  console.log(`parity: ${TEXTS.length} texts, max |Δscore| = ${worst.toExponential(2)}`);
});

// The CLINC150 pack routes with two thresholds (scope, then intent) computed in pure Python from
// the artifact: the same code in Pyodide, so the routes must agree wherever the embeddings do.
const CLINC_TEXTS: string[] = JSON.parse(readFileSync("tests/data/clinc_parity_texts.json", "utf8"));

test("clinc150-intent: same labels, routes and scope decisions in both runtimes", async ({ app }) => {
  const out = execFileSync(".venv/bin/edge-triage",
    ["run", "clinc150-intent", "--batch", "tests/data/clinc_parity_texts.json"], { encoding: "utf8" });
  const expected = out.trim().split("\n").map((line) => JSON.parse(line));
  await openApp(app, "?backend=wasm");
  const actual = await app.evaluate(async (texts) => {
    const results = [];
    for (const t of texts) results.push(await (window as any).edgeTriage.run("clinc150-intent", t));
    return results;
  }, CLINC_TEXTS);
  expect(actual.length).toBe(expected.length);
  // Both routes must occur, or the test would not exercise the scope threshold.
  expect(new Set(expected.map((r: any) => r.route))).toEqual(new Set(["local", "escalated"]));
  actual.forEach((browser: any, i: number) => {
    const cpy = expected[i];
    expect(browser.output.label, CLINC_TEXTS[i]).toBe(cpy.output.label);
    expect(browser.route, CLINC_TEXTS[i]).toBe(cpy.route);
    const scoped = (r: any) => r.reasons.some((x: string) => x.includes("out of scope"));
    expect(scoped(browser), CLINC_TEXTS[i]).toBe(scoped(cpy));
    expect(Math.abs(browser.confidence - cpy.confidence), CLINC_TEXTS[i]).toBeLessThan(1e-3);
  });
});
