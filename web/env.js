// All feature detection lives here: which inference device, how many threads, what isolation.

export async function detectDevice(requested) {
  if (requested === "wasm") return { device: "wasm", reason: "requested with ?backend=wasm" };
  const adapter = await gpuAdapter();
  if (requested === "webgpu") {
    if (!adapter) throw new Error("WebGPU was requested (?backend=webgpu) but no GPU adapter is available in this browser.");
    return { device: "webgpu", reason: "requested with ?backend=webgpu" };
  }
  return adapter
    ? { device: "webgpu", reason: "a WebGPU adapter is available", software: !!adapter.info?.isFallbackAdapter }
    : { device: "wasm", reason: "no WebGPU adapter; using Wasm" };
}

// The language model's device. On a software WebGPU adapter (SwiftShader: isFallbackAdapter) the
// 135M model decodes at ~0.05 tok/s against ~5 tok/s on Wasm (measured, README), so unless
// WebGPU was asked for by name it stays on Wasm there; the small encoder is fine either way.
export function languageModelDevice({ device, software }, requested) {
  if (device === "webgpu" && software && requested !== "webgpu") {
    return { device: "wasm", reason: "the WebGPU adapter is a software renderer; the language model runs on Wasm" };
  }
  return { device, reason: device === "webgpu" ? "the page runs on WebGPU" : "the page runs on Wasm" };
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
