// WebGPU through SwiftShader (software): slow, so only a few texts; correctness, not speed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, expect, openApp, classify } from "./fixtures";

const TEXTS = [
  "Error: Fan speed threshold exceeded on Node 4B.",
  "UPS switched to battery after mains failure",
  "Filesystem /data is 99% full",
];

test("auto-selects WebGPU when an adapter exists and agrees with Wasm/CPython on labels", async ({ app }) => {
  const status = await openApp(app, "");
  expect(status.backend).toBe("webgpu");
  expect(status.deviceReason).toContain("WebGPU adapter");
  const batch = join(mkdtempSync(join(tmpdir(), "webgpu-")), "texts.json");
  writeFileSync(batch, JSON.stringify(TEXTS));
  const cpython = execFileSync(".venv/bin/edge-triage", ["run", "telemetry-triage", "--batch", batch],
    { encoding: "utf8" }).trim().split("\n").map((l) => JSON.parse(l));
  for (const [i, text] of TEXTS.entries()) {
    const result = await classify(app, text);
    expect(result.backend).toBe("webgpu");
    expect(result.output.label, text).toBe(cpython[i].output.label);
  }
  await expect(app.locator("#backend")).toHaveText(/webgpu/);
});

test("?backend=wasm overrides WebGPU", async ({ app }) => {
  const status = await openApp(app, "?backend=wasm");
  expect(status.backend).toBe("wasm");
  expect((await classify(app, TEXTS[0])).backend).toBe("wasm");
});
