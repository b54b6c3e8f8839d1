// All feature detection lives here: which inference device, how many threads, what isolation.

export async function detectDevice(requested) {
  if (requested === "wasm") return { device: "wasm", reason: "requested with ?backend=wasm" };
  const adapter = await gpuAdapter();
  if (requested === "webgpu") {
    if (!adapter) throw new Error("WebGPU was requested (?backend=webgpu) but no GPU adapter is available in this browser.");
    return { device: "webgpu", reason: "requested with ?backend=webgpu" };
  }
  return adapter
    ? { device: "webgpu", reason: "a WebGPU adapter is available" }
    : { device: "wasm", reason: "no WebGPU adapter; using Wasm" };
}

async function gpuAdapter() {
  if (!("gpu" in navigator)) return null;
  try {
    return await navigator.gpu.requestAdapter();
  } catch {
    return null;
  }
}

// ORT's Wasm threads need SharedArrayBuffer, which only cross-origin isolated pages get.
export function threadCount() {
  if (!self.crossOriginIsolated) return 1;
  return Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
}

export function requestedBackend(search) {
  const value = new URLSearchParams(search).get("backend");
  if (value === null || value === "" || value === "auto") return "auto";
  if (value === "wasm" || value === "webgpu") return value;
  throw new Error(`Unknown backend '${value}': use ?backend=wasm or ?backend=webgpu.`);
}
