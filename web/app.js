// The page: starts the worker, shows load progress, and exposes window.edgeTriage:
//   edgeTriage.ready            Promise resolved with status() once the model is loaded
//   edgeTriage.run(task, text)  Promise<{task, output, confidence, route, backend, threads,
//                               timings_ms: {total, inference}, notices, truncated, ...}>;
//                               rejects with an Error whose message is readable (bad input,
//                               unknown task) and whose name says which kind it was
//   edgeTriage.status()         {state, stage, backend, threads, crossOriginIsolated, ...}
import { requestedBackend } from "./env.js";

const config = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);

const state = { state: "loading", stage: "start", fraction: 0, error: null };
const pending = new Map();
let nextId = 1;

function setProgress(stage, fraction, detail) {
  Object.assign(state, { stage, fraction });
  $("progress").value = Math.round(fraction * 100);
  $("progress-label").textContent = detail;
}

function fail(message) {
  Object.assign(state, { state: "failed", error: message });
  $("progress-label").textContent = "Failed to load";
  showError(message);
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

let worker;
const ready = new Promise((resolve, reject) => {
  let backend;
  try {
    backend = requestedBackend(location.search);
  } catch (err) {
    fail(err.message);
    reject(err);
    return;
  }
  worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  worker.onmessage = ({ data }) => {
    if (data.type === "progress") setProgress(data.stage, data.fraction, data.detail);
    else if (data.type === "ready") {
      Object.assign(state, data.status, { state: "ready" });
      $("progress-box").hidden = true;
      $("run").disabled = false;
      $("backend").textContent = `${data.status.backend} · ${data.status.threads} thread(s)`;
      resolve(status());
    } else if (data.type === "failed") {
      fail(data.error);
      reject(new Error(data.error));
    } else if (data.type === "result") {
      const entry = pending.get(data.id);
      pending.delete(data.id);
      if (!entry) return;
      if (data.ok) {
        data.result.timings_ms.total = performance.now() - entry.started;
        entry.resolve(data.result);
      } else {
        const err = new Error(data.error.message);
        err.name = data.error.type;
        entry.reject(err);
      }
    }
  };
  worker.onerror = (event) => {
    fail(`Worker error: ${event.message}`);
    reject(new Error(event.message));
  };
  worker.postMessage({ type: "init", config: { ...config, backend } });
});

function status() {
  return { ...state, config: { version: config.version, tasks: config.tasks } };
}

async function run(task, text) {
  await ready;
  if (typeof text !== "string") {
    const err = new Error(`Text must be a string, got ${text === null ? "null" : typeof text}.`);
    err.name = "InputError";
    throw err;
  }
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject, started: performance.now() });
    worker.postMessage({ type: "run", id, task, text });
  });
}

window.edgeTriage = { ready, run, status };
ready.catch(() => {});

// --- the form -------------------------------------------------------------------------------
function render(result) {
  const { output } = result;
  $("result").hidden = false;
  $("label").textContent = output.label;
  $("confidence-bar").value = result.confidence;
  $("confidence").textContent = `${(result.confidence * 100).toFixed(1)}%`;
  $("route").textContent = result.route + (result.reasons.length ? ` (${result.reasons.join("; ")})` : "");
  $("latency").textContent = `${result.timings_ms.total.toFixed(1)} ms (inference ${result.timings_ms.inference.toFixed(1)} ms)`;
  $("result-backend").textContent = `${result.backend}, ${result.threads} thread(s)`;
  $("notices").textContent = result.notices.join(" ");
  $("notices").hidden = result.notices.length === 0;
  $("json").textContent = JSON.stringify(output, null, 2);
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  $("run").disabled = true;
  try {
    render(await run($("task").value, $("text").value));
  } catch (err) {
    $("result").hidden = true;
    showError(err.message);
  } finally {
    $("run").disabled = state.state !== "ready";
  }
});

for (const name of config.tasks) {
  const option = document.createElement("option");
  option.value = option.textContent = name;
  option.selected = name === config.defaultTask;
  $("task").append(option);
}
