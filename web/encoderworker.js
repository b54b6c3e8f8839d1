// The encoder worker: the base encoder (web/inference.js loadEncoder / embedTexts) on a thread of
// its own, started by web/worker.js before Pyodide boots. Why: in the Python worker, Pyodide's
// boot holds the thread for seconds in one stretch, so the encoder's download, onnxruntime's
// session build and Python's boot ran one after the other in front of the first result; here
// they run side by side on two cores. web/encoders.js is the other end. Messages in:
// {id, op: "load"|"embed", args}; out: {id, ok, value | error}, and
// {type: "progress", modelId, done, total, fraction} while a model's files download.

import { embedTexts, loadEncoder } from "./inference.js";

const OPS = {
  load: (args) => loadEncoder(args, (p) => postMessage({ type: "progress", ...p })),
  embed: embedTexts,
};

onmessage = async ({ data: { id, op, args } }) => {
  try {
    const value = await OPS[op](args);
    postMessage({ id, ok: true, value }, value?.data ? [value.data.buffer] : []);  // moved, not copied
  } catch (err) {
    postMessage({ id, ok: false, error: { name: err?.name ?? "Error", message: String(err?.message ?? err) } });
  }
};
