// EscalationOutbox: escalated cases in IndexedDB until the server has them, and their answers.
//
// A case is stored (transaction committed) before the page reports it as escalated, so a reload,
// a closed tab or a dead network loses nothing. Sending is at-least-once with an idempotency key,
// which the server turns into exactly-once. States: pending → sent → answered, or failed when the
// server rejects the case itself (4xx other than 401/408/429); transient failures back off.

const DB_NAME = "edge-triage";
const STORE = "outbox";
const BACKOFF_MS = [1_000, 2_000, 5_000, 10_000, 20_000, 30_000];
// How often a sent case's answer is asked for.
const POLL_MS = 2_000;

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

const META = "meta";
export const SYNC_TAG = "edge-triage-outbox";

// An answered case's answer in a line (the outbox panel's answer column): a classification's
// label; an extraction's record as its short fields ("category: power, severity: warning, …",
// the summary left out); anything else as its JSON, cut. Every handler answers {handler,
// output, …} (server/handlers.py, a person's on /review too: server/review.py); a bare output
// reads the same.
export function answerText(answer, limit = 120) {
  if (!answer || typeof answer !== "object") return answer == null ? "" : String(answer);
  const output = answer.output ?? answer;
  if (typeof output?.label === "string") return output.label;
  const record = output?.record;
  if (record && typeof record === "object") {
    const fields = Object.entries(record)
      .filter(([, v]) => v !== null && typeof v !== "object" && String(v).length <= 40)
      .map(([k, v]) => `${k}: ${v}`).join(", ");
    if (fields) return fields.length > limit ? `${fields.slice(0, limit - 1)}…` : fields;
  }
  const json = JSON.stringify(answer);
  return json.length > limit ? `${json.slice(0, limit - 1)}…` : json;
}

// The server's reason as a person reads it: FastAPI answers {"detail": "…"} (a list of
// {loc, msg} for a 422), shown as its sentence rather than as JSON; any other body as it is.
export function readableDetail(body) {
  try {
    const { detail } = JSON.parse(body);
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => [d?.loc?.slice(1).join("."), d?.msg].filter(Boolean).join(": ")).join("; ");
  } catch {}
  return body;
}

function openDb() {
  const request = indexedDB.open(DB_NAME, 2);
  request.onupgradeneeded = ({ oldVersion }) => {
    const db = request.result;
    if (oldVersion < 1) db.createObjectStore(STORE, { keyPath: "key" }).createIndex("status", "status");
    // Where to send, so the service worker can send on its own (Background Sync).
    if (oldVersion < 2) db.createObjectStore(META);
  };
  return promised(request);
}

export class EscalationOutbox extends EventTarget {
  constructor({ url, token }) {
    super();
    this.url = url;        // null: no server configured; cases wait locally
    this.token = token;
    this.db = openDb();
    this.flushing = null;
    this.timer = null;
    // The service worker's outbox (Background Sync) changes records too: hear about it here.
    this.channel = typeof BroadcastChannel === "undefined" ? null : new BroadcastChannel(DB_NAME);
    if (this.channel) this.channel.onmessage = ({ data }) => this.dispatchEvent(new CustomEvent("change", { detail: data }));
    if (url) this.saveEndpoint();
  }

  configure({ url, token }) {
    Object.assign(this, { url, token });
    this.saveEndpoint();
    this.kick();
  }

  saveEndpoint() {
    return this.tx("readwrite", (store) => store.put({ url: this.url, token: this.token }, "endpoint"), META);
  }

  // In the service worker: the endpoint the page last configured.
  async loadEndpoint() {
    const endpoint = await this.tx("readonly", (store) => promised(store.get("endpoint")), META);
    if (endpoint) Object.assign(this, endpoint);
    return endpoint;
  }

  async tx(mode, fn, storeName = STORE) {
    const db = await this.db;
    return new Promise((resolve, reject) => {
      const tx = db.transaction(storeName, mode);
      const store = tx.objectStore(storeName);
      let result;
      Promise.resolve(fn(store)).then((r) => { result = r; }, reject);
      // Resolve only once the transaction is durable, not when the request succeeded.
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error("outbox transaction aborted"));
    });
  }

  async add({ task, text, localResult, reasons }) {
    const record = {
      key: crypto.randomUUID(),
      task, text, local_result: localResult ?? null, reasons: reasons ?? [],
      created_at: new Date().toISOString(),
      status: "pending", attempts: 0, next_attempt_at: 0,
      server_id: null, answer: null, last_error: null, updated_at: Date.now(),
    };
    await this.tx("readwrite", (store) => store.put(record));
    this.changed(record);
    this.requestSync();
    this.kick();
    return record;
  }

  async list() {
    const records = await this.tx("readonly", (store) => promised(store.getAll()));
    return records.sort((a, b) => a.created_at.localeCompare(b.created_at));
  }

  async update(key, patch) {
    let updated;
    await this.tx("readwrite", async (store) => {
      const current = await promised(store.get(key));
      if (!current) return;
      updated = { ...current, ...patch, updated_at: Date.now() };
      store.put(updated);
    });
    if (updated) this.changed(updated);
    return updated;
  }

  // Ask the browser for a Background Sync (the service worker then sends with no page open).
  // Called whenever a case is left pending, not only when it is added: a sync tag is used up
  // once it fires, and a case that failed after that would otherwise wait for the next visit.
  async requestSync() {
    if (typeof window === "undefined") return;  // in the service worker: a failed sync is retried
    try {
      const registration = await navigator.serviceWorker?.ready;
      await registration?.sync?.register(SYNC_TAG);
    } catch {
      // Not supported or not permitted: the page's retry loop still sends.
    }
  }

  // For the service worker's sync event: send every pending case now, ignoring backoff and
  // navigator.onLine (the event means the network is back). Returns how many are still pending.
  async sendPending() {
    let left = 0;
    for (const record of await this.list()) {
      if (record.status !== "pending") continue;
      if (!(await this.send(record))) left++;
    }
    return left;
  }

  changed(record) {
    this.dispatchEvent(new CustomEvent("change", { detail: record }));
    this.channel?.postMessage(record);
  }

  // Send what is pending and ask about what was sent; safe to call any time, runs one at a time.
  // `now`: ignore backoff (the network just came back, or the user asked).
  kick({ now = false } = {}) {
    if (now) this.ignoreBackoffUntil = Date.now();
    if (this.flushing) {
      this.again = true;
      return this.flushing;
    }
    this.flushing = this.flush().finally(() => {
      this.flushing = null;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
    return this.flushing;
  }

  async flush() {
    clearTimeout(this.timer);
    if (!this.url || !navigator.onLine) return;
    let soonest = Infinity;
    for (const record of await this.list()) {
      if (record.status === "pending") {
        const waiting = record.next_attempt_at > Date.now() && record.updated_at > (this.ignoreBackoffUntil ?? 0);
        if (waiting) { soonest = Math.min(soonest, record.next_attempt_at); continue; }
        // The server said "too many requests": the rest wait too instead of each being refused.
        if (this.pausedUntil > Date.now()) { soonest = Math.min(soonest, this.pausedUntil); continue; }
        // Sent: ask for its answer soon (until 2026-12-04 nothing did, so the only case of a
        // session stayed "sent" until some other event kicked the outbox); not sent: back off.
        const sent = await this.send(record);
        soonest = Math.min(soonest, Date.now() + (sent ? POLL_MS : BACKOFF_MS[0]));
      } else if (record.status === "sent") {
        if (this.pausedUntil > Date.now()) { soonest = Math.min(soonest, this.pausedUntil); continue; }
        await this.poll(record);
        soonest = Math.min(soonest, Date.now() + POLL_MS);
      }
    }
    if (soonest < Infinity) this.timer = setTimeout(() => this.kick(), Math.max(250, soonest - Date.now()));
  }

  headers() {
    return { "Content-Type": "application/json", Authorization: `Bearer ${this.token}` };
  }

  async send(record) {
    const body = JSON.stringify({
      idempotency_key: record.key, task: record.task, text: record.text,
      local_result: record.local_result, reasons: record.reasons, created_at: record.created_at,
    });
    let response;
    try {
      response = await fetch(this.url, { method: "POST", headers: this.headers(), body });
    } catch (err) {
      await this.retryLater(record, `network: ${err.message}`);
      return false;
    }
    if (response.ok) {
      const { id } = await response.json();
      await this.update(record.key, { status: "sent", server_id: id, last_error: null });
      return true;
    }
    const detail = readableDetail(await response.text().catch(() => ""));
    if ([401, 408, 425, 429].includes(response.status) || response.status >= 500) {
      // 429/503 say when to come back; sooner would only be refused again.
      const retryAfterMs = Number(response.headers.get("retry-after")) * 1000 || 0;
      if (response.status === 429) this.pausedUntil = Date.now() + Math.max(retryAfterMs, BACKOFF_MS[0]);
      await this.retryLater(record, `HTTP ${response.status}: ${detail.slice(0, 200)}`, retryAfterMs);
      return false;
    }
    // The server looked at this case and refused it: retrying the same bytes cannot help.
    await this.update(record.key, { status: "failed", last_error: `HTTP ${response.status}: ${detail.slice(0, 500)}` });
    return true;
  }

  // Cases the server refused without storing them (a 4xx on the post: a wrong API address in a
  // static export, a server without the task) stay here as failed, text and reason kept. Once
  // the deployment is put right they are sent again from here; nothing else would send them.
  // A case the server stored and then failed (it has a server_id) is not: posting its key again
  // returns that same failed case, which is answered on /review.
  async resendRefused() {
    let count = 0;
    for (const record of await this.list()) {
      if (record.status !== "failed" || record.server_id) continue;
      await this.update(record.key, { status: "pending", attempts: 0, next_attempt_at: 0, last_error: null });
      count++;
    }
    if (count) {
      this.requestSync();
      this.kick({ now: true });
    }
    return count;
  }

  async retryLater(record, error, atLeastMs = 0) {
    const attempts = record.attempts + 1;
    const delay = Math.max(atLeastMs, BACKOFF_MS[Math.min(attempts - 1, BACKOFF_MS.length - 1)]);
    await this.update(record.key, { attempts, last_error: error, next_attempt_at: Date.now() + delay });
    this.requestSync();
  }

  async poll(record) {
    try {
      const response = await fetch(`${this.url}/${encodeURIComponent(record.server_id)}`, { headers: this.headers() });
      if (response.status === 429) {
        this.pausedUntil = Date.now() + Math.max(Number(response.headers.get("retry-after")) * 1000 || 0, BACKOFF_MS[0]);
      }
      if (!response.ok) return;
      const remote = await response.json();
      if (remote.status === "answered") {
        await this.update(record.key, { status: "answered", answer: remote.answer });
      } else if (remote.status === "failed") {
        await this.update(record.key, { status: "failed", last_error: remote.last_error });
      }
    } catch {
      // Offline again: the next kick asks again.
    }
  }
}
