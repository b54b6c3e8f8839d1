// The page: starts the worker, shows load progress, and exposes window.edgeTriage:
//   edgeTriage.ready            Promise resolved with status() once the model is loaded
//   edgeTriage.run(task, text, {escalate = true} = {})
//                               Promise<{task, output, confidence, route, reasons, backend,
//                               threads, timings_ms: {total, inference}, notices, truncated,
//                               escalation?: {key, status}}>; an escalated result is stored in
//                               the outbox before the promise resolves. Rejects with an Error
//                               whose message is readable and whose name says which kind it was
//                               onPartial({text, tokens}) is called as an extraction task's
//                               output streams in (the result panel shows it too)
//   edgeTriage.cancel()         stops a running extraction within one token; its run() resolves
//                               with valid: false, stop_reason "cancelled" (escalated)
//   edgeTriage.status()         {state, stage, backend, threads, crossOriginIsolated, ...}
//   edgeTriage.outbox()         Promise<[{key, task, text, status, answer, attempts, ...}]>
//   edgeTriage.memoryUse()      Promise<bytes | null>: the page's measured memory, workers included
//                               (web/memory.js), null where the page is not cross-origin isolated
import { requestedBackend } from "./env.js";
import { memoryMeter } from "./memory.js";
import { EscalationOutbox, SYNC_TAG, answerText } from "./outbox.js";

const config = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);

const state = { state: "loading", stage: "start", fraction: 0, error: null };
const pending = new Map();
let nextId = 1;

function setProgress(stage, fraction, detail) {
  Object.assign(state, { stage, fraction });
  $("progress").value = Math.round(fraction * 100);
  $("progress-label").textContent = detail;
  // After boot, what a run loads first (the language model: ~20 s on its first extraction; a
  // task's own encoder) shows here too, while that run waits; the box had been hidden at boot
  // and the page showed nothing. Only the language model's stage is a fraction of its load;
  // the others' are the boot's scale, so the bar runs without a value and the label counts.
  if (state.state === "ready") {
    $("progress-box").hidden = pending.size === 0;
    if (stage !== "lm") $("progress").removeAttribute("value");
  }
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

// On a static host without COOP/COEP the service worker supplies them after one reload; booting
// the runtime before that reload would be wasted work.
const reloadingForIsolation = !self.crossOriginIsolated && "serviceWorker" in navigator
  && !sessionStorage.getItem("edge-triage-isolation-reload");

let worker;
// The boot's background downloads (the language model prefetch) have finished, or failed, or
// were skipped: a new service worker takes over only after them (registerServiceWorker). Capped,
// so a download stuck on a slow network does not hold an update back for the whole visit.
let downloadsDone;
const afterDownloads = Promise.race([
  new Promise((resolve) => { downloadsDone = resolve; }),
  new Promise((resolve) => setTimeout(resolve, 120_000)),
]);
// A new worker (and a new `ready`) after a crash: see worker.onerror.
let ready = startWorker();

function startWorker() {
  return new Promise((resolve, reject) => {
    if (reloadingForIsolation) {
      setProgress("isolation", 0, "Enabling cross-origin isolation…");
      return;
    }
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
      else if (data.type === "lm-cached") state.lmCached = true;
      else if (data.type === "downloads-done") downloadsDone();
      else if (data.type === "lm-loaded") Object.assign(state, { lmDtype: data.dtype, lmEstimatedMemoryBytes: data.estimatedMemoryBytes });
      else if (data.type === "encoder-home") state.encoderWorker = "ended";
      else if (data.type === "encoder-loaded") {
        state.taskEncoderMemoryBytes = (state.taskEncoderMemoryBytes ?? 0) + data.estimatedMemoryBytes;
      }
      else if (data.type === "ready") {
        Object.assign(state, data.status, { state: "ready" });
        $("progress-box").hidden = true;
        $("run").disabled = false;
        $("backend").textContent = `${data.status.backend} · ${data.status.threads} thread(s)`;
        resolve(status());
        showMemory();
      } else if (data.type === "failed") {
        fail(data.error);
        reject(new Error(data.error));
      } else if (data.type === "partial") {
        const entry = pending.get(data.id);
        state.partial = { text: data.text, tokens: data.tokens };
        showPartial(data.text);
        entry?.onPartial?.({ text: data.text, tokens: data.tokens });
      } else if (data.type === "result") {
        const entry = pending.get(data.id);
        pending.delete(data.id);
        if (pending.size === 0) $("progress-box").hidden = true;
        if (!entry) return;
        if (data.ok) {
          data.result.timings_ms.total = performance.now() - entry.started;
          entry.resolve(data.result);
          if (data.result.output?.record !== undefined) showMemory();  // a language model run
        } else {
          const err = new Error(data.error.message);
          err.name = data.error.type;
          entry.reject(err);
        }
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      if (state.state !== "ready") {
        fail(`Worker error: ${event.message}`);
        reject(new Error(event.message));
        return;
      }
      restartAfterCrash(event.message);
    };
    const params = new URLSearchParams(location.search);
    const prefetch = params.get("prefetch") !== "0";
    // ?encoderworker=keep: the base encoder stays in its own worker after the first result
    // (web/worker.js moveEncoderHome; for comparisons).
    const keepEncoderWorker = params.get("encoderworker") === "keep";
    // Served by the service worker (a repeat visit): the workers' files come from its cache.
    const swControlled = Boolean(navigator.serviceWorker?.controller);
    worker.postMessage({ type: "init", config: { ...config, backend, prefetch, keepEncoderWorker, swControlled } });
  });
}

// The worker died mid-run (an uncaught error or a Wasm trap): every run waiting on it rejects
// with a message saying so, instead of never settling, and a fresh worker loads the models again
// (from the cache) so the same text can simply be run again; the form keeps it.
function restartAfterCrash(reason) {
  const message = `The inference worker crashed (${reason}). Nothing was lost: the model is `
    + "reloading, then run the text again.";
  for (const entry of pending.values()) {
    const err = new Error(message);
    err.name = "WorkerCrashError";
    entry.reject(err);
  }
  pending.clear();
  worker.terminate();
  Object.assign(state, { state: "loading", crashes: (state.crashes ?? 0) + 1 });
  $("progress-box").hidden = false;
  $("run").disabled = true;
  showError(message);
  ready = startWorker();
  // Once reloaded the message stays (a user who looked away must still learn that the run
  // failed) but says the page is usable again; the next run clears it.
  ready.then(() => showError(`The inference worker crashed (${reason}) and has restarted: `
    + "run the text again (it is still in the form)."), () => {});
}

// --- offline: the service worker --------------------------------------------------------------
async function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) {
    if (!self.crossOriginIsolated) notice("This browser has no service worker: running single-threaded and online only.");
    return;
  }
  navigator.serviceWorker.addEventListener("message", ({ data }) => {
    if (data?.type !== "sw-activated" || !data.version) return;
    const previous = localStorage.getItem("edge-triage-version");
    localStorage.setItem("edge-triage-version", data.version);
    if (data.version !== config.siteVersion) {
      // This page is older than the deployment the new worker installed.
      notice(`A new version of edge-triage (${data.version}) is installed. Reload to use it.`, true);
    } else if (previous && previous !== data.version) {
      notice(`edge-triage was updated to version ${data.version}; the previous version's files were removed.`);
    }
  });
  // The site version in the script URL makes every deployment install a new worker, which
  // precaches the new files and deletes the old ones.
  const registration = await navigator.serviceWorker.register(
    `${config.base}sw.js?v=${config.siteVersion}`, { scope: config.base, type: "module" });
  state.serviceWorker = "registered";
  // A new version installs beside the one running and takes over once this page has booted: a
  // worker swap while the page's workers start (the encoder worker and onnxruntime's threads are
  // workers started by workers, their scripts served by the service worker) is where, once in a
  // full test run, the update test's boot took 72 s: the encoder watchdog's 60 s (web/encoders.js).
  // It also waits for the boot's background downloads: asked to take over while the language
  // model prefetch's requests were going through the old worker, Chromium left the new one
  // `installed` for good (the export update test: 6 of 10 runs; after the downloads: 10 of 10).
  const activateAfterBoot = (sw) => ready.catch(() => {}).then(() => afterDownloads)
    .then(() => sw.postMessage({ type: "activate-now" }));
  // The install may have begun before register() resolved (its updatefound already fired).
  const onceInstalled = (sw) => sw?.addEventListener("statechange", () => {
    if (sw.state === "installed" && navigator.serviceWorker.controller) activateAfterBoot(sw);
  });
  registration.addEventListener("updatefound", () => onceInstalled(registration.installing));
  onceInstalled(registration.installing);
  if (registration.waiting) activateAfterBoot(registration.waiting);
  if (!navigator.serviceWorker.controller) $("offline").textContent = "offline use: installing…";
  await navigator.serviceWorker.ready;
  state.serviceWorker = "ready";
  $("offline").textContent = "available offline";
  // A static host without COOP/COEP: the service worker adds them, but only to pages it serves.
  if (!self.crossOriginIsolated && !sessionStorage.getItem("edge-triage-isolation-reload")) {
    sessionStorage.setItem("edge-triage-isolation-reload", "1");
    location.reload();
  }
  return registration;
}

function notice(message, withReload = false) {
  const box = $("site-notice");
  box.textContent = message + " ";
  if (withReload) {
    const button = document.createElement("button");
    button.textContent = "Reload";
    button.onclick = () => location.reload();
    box.append(button);
  }
  box.hidden = false;
}

if (!self.crossOriginIsolated && sessionStorage.getItem("edge-triage-isolation-reload")) {
  notice("This host does not allow cross-origin isolation: inference runs single-threaded.");
}
// An install downloads and verifies every runtime file (~45 MB, in the service worker): it waits
// until the models are loaded, so it does not compete with the boot for the same cores, unless the
// page needs it now for cross-origin isolation. On a repeat visit the registration is also where a
// new deployment's worker starts installing, so that too happens after the boot.
const installAfterBoot = self.crossOriginIsolated;
const serviceWorker = (installAfterBoot ? ready.catch(() => {}) : Promise.resolve()).then(registerServiceWorker).catch((err) => {
  state.serviceWorker = `failed: ${err.message}`;
});

// Only available to cross-origin isolated pages; may take a while (it waits for a GC).
const measuredMemory = memoryMeter(() => performance.measureUserAgentSpecificMemory());
async function memoryUse() {
  if (!self.crossOriginIsolated || !performance.measureUserAgentSpecificMemory) return null;
  return measuredMemory();
}

function status() {
  return { ...state, config: { version: config.version, tasks: config.tasks } };
}

function showPartial(text) {
  $("result").hidden = false;
  $("partial").hidden = false;
  $("partial").textContent = text;
}

function cancel() {
  worker?.postMessage({ type: "cancel" });
}

async function run(task, text, { escalate = true, onPartial = null } = {}) {
  await ready;
  if (typeof text !== "string") {
    const err = new Error(`Text must be a string, got ${text === null ? "null" : typeof text}.`);
    err.name = "InputError";
    throw err;
  }
  const result = await new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject, onPartial, started: performance.now() });
    // The page's measured memory (last measurement): the worker budgets the language model
    // against it when this run is the one that loads it (web/lm.js chooseVariant).
    worker.postMessage({ type: "run", id, task, text, measuredBytes: state.measuredMemoryBytes ?? null });
  });
  if (escalate && result.route === "escalated") {
    let record;
    try {
      record = await outbox.add({ task, text, localResult: result.output, reasons: result.reasons });
    } catch (err) {
      throw outboxError(err);
    }
    result.escalation = { key: record.key, status: record.status };
    requestBackgroundSync();
  }
  return result;
}

// The case could not be stored, so it is not escalated: say so plainly (storage full is the
// likely cause) rather than report an escalation that does not exist.
function outboxError(err) {
  const full = err?.name === "QuotaExceededError";
  const out = new Error(full
    ? "Storage is full: this escalated case could not be saved to the outbox, so it was not sent. "
      + "Free space in this browser or allow storage for this site, then run the text again."
    : `This escalated case could not be saved to the outbox (${err?.message ?? err}); run the text again.`);
  out.name = full ? "StorageQuotaError" : "OutboxError";
  return out;
}

// Where the browser has Background Sync, the service worker sends the outbox when the network
// returns even if this tab is gone; the page's own retries cover every other browser.
async function requestBackgroundSync() {
  try {
    const registration = await navigator.serviceWorker?.ready;
    await registration?.sync?.register(SYNC_TAG);
  } catch {
    // Not supported or not permitted: the page's retry loop still sends.
  }
}

const outbox = new EscalationOutbox(config.escalation ?? { url: null, token: null });
window.addEventListener("online", () => outbox.kick({ now: true }));
outbox.kick();

window.edgeTriage = {
  get ready() { return ready; },  // replaced when the worker is restarted after a crash
  run, cancel, status, memoryUse, serviceWorker,
  outbox: () => outbox.list(), flushOutbox: () => outbox.kick({ now: true }),
  resendRefused: () => outbox.resendRefused(),
};
ready.catch(() => {});

// Called at boot and after each language-model run. A measurement waits for a garbage
// collection (up to a minute, web/memory.js), so an earlier call's reading can arrive after a
// later call started: only the latest call writes, or the page would show the memory of before
// the language model loaded as if it were now (it showed 151 MiB after an extraction).
let memorySeq = 0;
async function showMemory() {
  const seq = ++memorySeq;
  // Every model this page has loaded: the base encoder, tasks' own encoders, the language model.
  const estimate = (state.estimatedMemoryBytes ?? 0) + (state.taskEncoderMemoryBytes ?? 0)
    + (state.lmEstimatedMemoryBytes ?? 0);
  const label = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  $("memory").textContent = estimate ? `models' estimate ${label(estimate)}` : "";
  try {
    const bytes = await memoryUse();
    if (seq !== memorySeq) return;
    if (bytes) state.measuredMemoryBytes = bytes;
    if (bytes) $("memory").textContent = `page memory ${label(bytes)} (measured) · models' estimate ${label(estimate)}`;
  } catch {
    // Not measurable here; the estimate stays.
  }
}

// --- the outbox panel -----------------------------------------------------------------------
let renderSeq = 0;
async function renderOutbox() {
  // Changes arrive in bursts; only the newest render may paint, or an older read of the
  // outbox that finishes last would show a stale state.
  const seq = ++renderSeq;
  const records = await outbox.list();
  if (seq !== renderSeq) return;
  const counts = { pending: 0, sent: 0, answered: 0, failed: 0 };
  for (const r of records) counts[r.status]++;
  $("outbox-summary").textContent = records.length
    ? Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(" · ")
    : "empty";
  $("outbox-resend").hidden = !records.some((r) => r.status === "failed" && !r.server_id);
  const rows = records.slice(-20).reverse().map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.key = r.key;
    tr.dataset.status = r.status;
    const answer = answerText(r.answer);
    for (const value of [r.created_at.slice(11, 19), r.task, r.text.slice(0, 60), r.status, answer || r.last_error || ""]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    if (r.answer) tr.lastChild.title = JSON.stringify(r.answer, null, 2);  // the whole answer on hover
    return tr;
  });
  $("outbox-rows").replaceChildren(...rows);
}
outbox.addEventListener("change", () => renderOutbox());
renderOutbox();
$("outbox-resend").addEventListener("click", () => outbox.resendRefused());

// --- the form -------------------------------------------------------------------------------
function render(result) {
  const { output } = result;
  $("result").hidden = false;
  // Classification: the label; extraction: the record (or why there is none).
  $("partial").hidden = true;
  $("label").textContent = output.label ?? (output.record ? "record" : `no record (${output.stop_reason})`);
  $("confidence-bar").value = result.confidence;
  $("confidence").textContent = `${(result.confidence * 100).toFixed(1)}%`;
  $("route").textContent = result.route + (result.reasons.length ? ` (${result.reasons.join("; ")})` : "")
    + (result.escalation ? " — saved to the outbox" : "");
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
  $("cancel").hidden = !(config.lmTasks ?? []).includes($("task").value);
  try {
    render(await run($("task").value, $("text").value));
  } catch (err) {
    $("result").hidden = true;
    showError(err.message);
  } finally {
    $("run").disabled = state.state !== "ready";
    $("cancel").hidden = true;
  }
});

$("cancel").addEventListener("click", cancel);

for (const name of config.tasks) {
  const option = document.createElement("option");
  option.value = option.textContent = name;
  option.selected = name === config.defaultTask;
  $("task").append(option);
}
