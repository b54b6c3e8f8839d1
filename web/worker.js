// The inference worker: boots Pyodide from our origin, installs our wheels through our own
// pyodide-lock.json, and hands every request to Python (pyapp.backends.browser.BrowserApp).
// Messages in: {type: "init", config} | {type: "run", id, task, text}; out: progress/ready/result.

import { detectDevice, threadCount } from "./env.js";
import * as host from "./inference.js";

let app = null;

function progress(stage, fraction, detail = "") {
  postMessage({ type: "progress", stage, fraction, detail });
}

async function init(config) {
  const base = new URL(config.runtimeBase, location.origin).href;
  const started = performance.now();
  const { device, reason } = await detectDevice(config.backend);
  const threads = threadCount();

  progress("runtime", 0.05, "Python runtime (Pyodide)");
  const { loadPyodide } = await import(`${base}pyodide/pyodide.mjs`);
  const pyodide = await loadPyodide({
    indexURL: `${base}pyodide/`,
    lockFileURL: `${base}wheels/pyodide-lock.json`,
    // Also where Pyodide would look for any package it cannot find: our origin, never a CDN.
    packageBaseUrl: `${base}wheels/`,
    stdout: (line) => console.log(`[py] ${line}`),
    stderr: (line) => console.warn(`[py] ${line}`),
  });

  progress("packages", 0.35, "Python packages (pyapp, pydantic)");
  await pyodide.loadPackage(["edge-triage-pyapp"], { messageCallback: () => {}, checkIntegrity: true });
  pyodide.registerJsModule("edge_triage_host", host);

  progress("model", 0.55, `Model ${config.encoder.model_id} on ${device}`);
  const appConfig = {
    ...config,
    device,
    threads,
    transformersUrl: `${base}transformers/transformers.min.js`,
    transformersEnv: {
      transformersUrl: `${base}transformers/transformers.min.js`,
      modelsPath: config.modelsBase,
      ortUrl: `${base}ort/`,
      threads,
    },
  };
  // Prototypes computed at build time (same numbers as computing them here; see parity tests).
  appConfig.artifacts = {};
  for (const [name, url] of Object.entries(config.taskArtifacts ?? {})) {
    const response = await fetch(url);
    if (response.ok) appConfig.artifacts[name] = await response.json();
  }
  const { BrowserApp } = pyodide.pyimport("pyapp.backends.browser");
  app = BrowserApp(JSON.stringify(appConfig));
  progress("tasks", 0.8, "Preparing tasks");
  await app.load();
  const status = JSON.parse(app.status());
  progress("ready", 1, "Ready");
  postMessage({
    type: "ready",
    status: { ...status, deviceReason: reason, crossOriginIsolated: self.crossOriginIsolated,
              bootMs: performance.now() - started },
  });
}

onmessage = async ({ data }) => {
  if (data.type === "init") {
    try {
      await init(data.config);
    } catch (err) {
      postMessage({ type: "failed", error: String(err?.message ?? err) });
    }
    return;
  }
  if (data.type === "run") {
    try {
      const reply = JSON.parse(await app.run(data.task, data.text));
      postMessage({ type: "result", id: data.id, ...reply });
    } catch (err) {
      postMessage({ type: "result", id: data.id, ok: false,
                    error: { type: "RuntimeError", message: String(err?.message ?? err) } });
    }
  }
};
