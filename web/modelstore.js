// ShardedModelStore: model files downloaded as shards, verified by sha256, kept in the Cache API.
//
// Nothing unverified is ever used or kept: a shard whose hash does not match the manifest is
// deleted and fetched again; shards already verified survive an interrupted download, so the next
// start resumes with only what is missing. A new model version lives under a new model_id, and
// prune() frees what no current manifest references.

const CACHE = "edge-triage-models-v1";

async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class IntegrityError extends Error {
  constructor(url, expected, actual) {
    super(`Downloaded ${url} does not match its manifest (sha256 ${actual.slice(0, 12)}…, expected ${expected.slice(0, 12)}…); it was discarded.`);
    this.name = "IntegrityError";
  }
}

export class StorageQuotaError extends Error {
  constructor(bytes, cause) {
    super(`Not enough storage for the model (${(bytes / 2 ** 20).toFixed(0)} MiB): free space in this browser or allow storage for this site. (${cause?.message ?? cause})`);
    this.name = "StorageQuotaError";
  }
}

export class DownloadError extends Error {
  constructor(url, cause) {
    super(`Could not download ${new URL(url).pathname} (${cause?.message ?? cause}): the server or the network went away. `
      + "Reload to try again; the parts already verified are kept, so the download resumes.");
    this.name = "DownloadError";
  }
}

// A dropped connection is retried after these pauses before the download gives up.
const NETWORK_RETRY_MS = [1_000, 3_000];

export class ShardedModelStore {
  constructor({ concurrency = 4, onProgress = () => {}, fetchImpl = (...a) => fetch(...a) } = {}) {
    this.concurrency = concurrency;
    this.onProgress = onProgress;
    this.fetch = fetchImpl;
    this.stats = { fromCache: 0, downloaded: 0, discarded: 0 };
  }

  // Returns Map(pathname → Uint8Array) of every file of the model, verified.
  async ensure(modelsBase, manifest) {
    const cache = await caches.open(CACHE);
    const base = new URL(`${modelsBase}${manifest.model_id}/`, location.origin);
    const parts = [];   // {url, size, sha256, file}
    for (const file of manifest.files) {
      const shards = manifest.shards?.[file.path];
      for (const piece of shards ?? [file]) parts.push({ ...piece, url: new URL(piece.path, base).href, file: file.path });
    }
    const total = parts.reduce((sum, p) => sum + p.size, 0);
    let done = 0;
    const report = () => this.onProgress({ done, total, fraction: total ? done / total : 1 });
    report();
    const bytes = new Map();
    const queue = [...parts];
    let failure = null;
    const work = async () => {
      for (let part = queue.shift(); part; part = queue.shift()) {
        try {
          bytes.set(part.url, await this.part(cache, part));
          done += part.size;
          report();
        } catch (err) {
          failure ??= err;  // keep going: every shard verified now is one fewer to fetch later
        }
      }
    };
    await Promise.all(Array.from({ length: this.concurrency }, work));
    if (failure) throw failure;
    const files = new Map();
    for (const file of manifest.files) {
      const pieces = parts.filter((p) => p.file === file.path).map((p) => bytes.get(p.url));
      const joined = pieces.length === 1 ? pieces[0] : concat(pieces, file.size);
      files.set(new URL(file.path, base).pathname, joined);
    }
    return files;
  }

  async part(cache, part) {
    const cached = await cache.match(part.url);
    if (cached) {
      const data = new Uint8Array(await cached.arrayBuffer());
      if (data.byteLength === part.size && (await sha256Hex(data)) === part.sha256) {
        this.stats.fromCache++;
        return data;
      }
      // Corrupted or truncated in storage: never used, never kept.
      this.stats.discarded++;
      await cache.delete(part.url);
    }
    for (let attempt = 1; ; attempt++) {
      const data = await this.download(part.url);
      const actual = await sha256Hex(data);
      if (actual === part.sha256 && data.byteLength === part.size) {
        try {
          await cache.put(part.url, new Response(data, { headers: { "Content-Type": "application/octet-stream" } }));
        } catch (err) {
          if (err?.name === "QuotaExceededError") throw new StorageQuotaError(part.size, err);
          throw err;
        }
        this.stats.downloaded++;
        return data;
      }
      this.stats.discarded++;
      if (attempt >= 2) throw new IntegrityError(part.url, part.sha256, actual);
    }
  }

  async download(url) {
    for (let retry = 0; ; retry++) {
      let response;
      try {
        response = await this.fetch(url, { cache: "no-store" });
        if (!response.ok) throw new Error(`Failed to download ${url}: HTTP ${response.status}`);
        return new Uint8Array(await response.arrayBuffer());
      } catch (err) {
        if (response && !response.ok) throw err;  // the server answered: retrying will not help
        if (retry >= NETWORK_RETRY_MS.length) throw new DownloadError(url, err);
        await new Promise((resolve) => setTimeout(resolve, NETWORK_RETRY_MS[retry]));
      }
    }
  }

  // Delete cached shards of models that are not in keepIds (a replaced model version).
  async prune(modelsBase, keepIds) {
    const cache = await caches.open(CACHE);
    const prefix = new URL(modelsBase, location.origin).pathname;
    let removed = 0;
    for (const request of await cache.keys()) {
      const path = new URL(request.url).pathname;
      const id = path.startsWith(prefix) ? path.slice(prefix.length).split("/")[0] : null;
      if (!keepIds.includes(id)) {
        await cache.delete(request);
        removed++;
      }
    }
    return removed;
  }
}

function concat(pieces, size) {
  const out = new Uint8Array(size);
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.byteLength;
  }
  return out;
}

// One model's files as the page runs it, verified: model = {model_id, skipFiles?} (skipFiles: the
// other dtypes' weights the manifest also lists). Returns {files: Map(pathname → bytes), stats}.
export async function fetchModelFiles(modelsBase, model, onProgress = () => {}) {
  const manifestUrl = `${modelsBase}${model.model_id}/manifest.json`;
  const response = await fetch(manifestUrl);
  if (!response.ok) throw new Error(`Model manifest ${manifestUrl}: HTTP ${response.status}`);
  const all = await response.json();
  const skip = new Set(model.skipFiles ?? []);
  const manifest = { ...all, files: all.files.filter((f) => !skip.has(f.path)) };
  await requestPersistentStorage();
  const store = new ShardedModelStore({ onProgress });
  const files = await store.ensure(modelsBase, manifest);
  return { files, stats: store.stats };
}

export async function requestPersistentStorage() {
  try {
    return (await navigator.storage?.persist?.()) ?? false;
  } catch {
    return false;
  }
}
