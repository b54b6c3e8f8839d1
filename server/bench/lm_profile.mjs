// Where our page's decode time goes, per generated token: Chromium's sampling profiler (CDP
// Profiler.start/stop) in the inference worker while the page extracts records, self time summed
// by where the code comes from (ORT's wasm, Pyodide's wasm, web-xgrammar, web/pick.js, ...).
// Usage: node server/bench/lm_profile.mjs URL < {"texts": [...], "repeats": N}
// → one JSON object on stdout: {tokens, wall_ms, categories: {name: ms}, top: [[fn, ms]]}.
import { assertOwnOrigin, launchChromium, ownOriginPage } from "../chromium.mjs";

const [url] = process.argv.slice(2);
let input = "";
for await (const chunk of process.stdin) input += chunk;
const { texts, repeats } = JSON.parse(input);
const log = (line) => process.stderr.write(`${line}\n`);

// Which part of the page a profile node belongs to, by script URL (then function name).
function category(frame) {
  const u = frame.url || "";
  if (/ort-wasm/.test(u)) return "onnxruntime (wasm + glue)";
  if (/pyodide\.asm/.test(u)) return "pyodide (Python interpreter)";
  if (/web-xgrammar/.test(u)) return "web-xgrammar (grammar mask)";
  if (/\/pick\.js/.test(u)) return "web/pick.js (pick)";
  if (/\/lm\.js/.test(u)) return "web/lm.js";
  if (/transformers/.test(u)) return "transformers.js";
  if (/\/worker\.js/.test(u)) return "web/worker.js";
  if (/\/inference\.js/.test(u)) return "web/inference.js";
  if (frame.functionName === "(idle)" || frame.functionName === "(program)" ||
      frame.functionName === "(garbage collector)") return frame.functionName;
  return u ? `other: ${u.split("/").pop()}` : `native: ${frame.functionName || "(anonymous)"}`;
}

const browser = await launchChromium();
try {
  const page = await ownOriginPage(browser, url);
  const cdp = await page.context().newCDPSession(page);
  const sessions = [];
  const pending = new Map();
  let nextId = 1;
  cdp.on("Target.attachedToTarget", (e) => { if (e.targetInfo.type === "worker") sessions.push(e.sessionId); });
  cdp.on("Target.receivedMessageFromTarget", (e) => {
    const msg = JSON.parse(e.message);
    if (msg.id && pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); }
  });
  const send = (sessionId, method, params = {}) => new Promise((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    cdp.send("Target.sendMessageToTarget", { sessionId, message: JSON.stringify({ id, method, params }) });
  });
  await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  await page.goto(url);
  await page.evaluate(() => window.edgeTriage.ready);
  const run = (text) => page.evaluate(async (t) => {
    let n = 0;
    await window.edgeTriage.run("telemetry-extract", t, { escalate: false, onPartial: ({ tokens }) => { n = tokens; } });
    return n;
  }, text);
  // Every text once first: loads the language model, compiles each record's narrowed grammar
  // and fills the prefix cache, so the profile below is the warm extraction.
  for (const t of texts) await run(t);
  if (!sessions.length) throw new Error("no worker target to profile");
  const worker = sessions[0];
  // Wasm compiled from bytes (web-xgrammar's embedded module) shows as "wasm://wasm/<hash>"
  // ("other: <hash>" below): the debugger gives no file name for it either.
  await send(worker, "Profiler.enable");
  await send(worker, "Profiler.setSamplingInterval", { interval: 200 });
  await send(worker, "Profiler.start");
  let tokens = 0;
  const started = Date.now();
  for (let i = 0; i < repeats; i++) for (const t of texts) tokens += await run(t);
  const wall = Date.now() - started;
  const { result } = await send(worker, "Profiler.stop");
  assertOwnOrigin(page);
  const { nodes, samples, timeDeltas } = result.profile;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const self = new Map();
  samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (timeDeltas[i] ?? 0) / 1000));
  const categories = {}, functions = {};
  for (const [id, ms] of self) {
    const frame = byId.get(id).callFrame;
    const c = category(frame);
    categories[c] = (categories[c] ?? 0) + ms;
    const f = `${frame.functionName || "(anonymous)"} ${(frame.url || "").split("/").pop()}`;
    functions[f] = (functions[f] ?? 0) + ms;
  }
  const top = Object.entries(functions).sort((a, b) => b[1] - a[1]).slice(0, 25);
  process.stdout.write(JSON.stringify({ tokens, wall_ms: wall, categories, top }) + "\n");
} finally {
  await browser.close();
}
