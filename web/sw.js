// Service worker: the app shell, Pyodide, wheels, lock file, transformers.js and ORT wasm are
// precached (each verified against the sha256 in precache.json), so after one visit the app boots
// with no network. It also adds the cross-origin isolation headers to what it serves, so a static
// host that cannot send COOP/COEP still gets a crossOriginIsolated page (hence Wasm threads).
//
// A module worker, so it can share web/outbox.js with the page for Background Sync.
//
// Hand-written rather than Workbox: the two jobs that matter here — sha256-verified precaching
// driven by our own runtime index, and rewriting every response's headers — are custom code in
// Workbox too, and its modules would have to be copied and importScripts-loaded from our origin.

import { EscalationOutbox, SYNC_TAG } from "./static/outbox.js";

const BASE = new URL("./", self.location).pathname;
const PREFIX = "edge-triage-shell-";
const CONTENT_SECURITY_POLICY = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
  + "connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; "
  + "form-action 'self'; frame-ancestors 'none'";
const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
};

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// One precache entry, checked against its sha256. It is read through the HTTP cache first: the
// install runs after the page's boot, which has just downloaded these very files, so a first visit
// does not download the runtime twice. A copy that does not match (a stale or damaged cache entry)
// is fetched again past the cache; a second mismatch fails the install. An entry without a
// sha256 (the page itself) is never taken from the HTTP cache.
async function verified(entry) {
  for (const mode of entry.sha256 ? ["default", "reload"] : ["no-store"]) {
    const response = await fetch(entry.url, { cache: mode });
    if (!response.ok) throw new Error(`precache ${entry.url}: HTTP ${response.status}`);
    const body = await response.clone().arrayBuffer();
    if (!entry.sha256 || (await sha256Hex(body)) === entry.sha256) return response;
  }
  throw new Error(`precache ${entry.url}: sha256 mismatch; not cached`);
}

async function precache() {
  const listing = await (await fetch(`${BASE}precache.json`, { cache: "no-store" })).json();
  const cache = await caches.open(PREFIX + listing.version);
  const pending = [...listing.entries];
  const worker = async () => {
    for (let entry = pending.shift(); entry; entry = pending.shift()) {
      if (await cache.match(entry.url)) continue;
      await cache.put(entry.url, await verified(entry));
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return listing.version;
}

self.addEventListener("install", (event) => {
  event.waitUntil(precache());
});

// A new version, once installed, waits for a page to say it has booted (web/app.js), so it does
// not take over while the page's workers start. With no page open it takes over at the next
// visit, as service workers do.
self.addEventListener("message", (event) => {
  if (event.data?.type === "activate-now") self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    const current = await (await fetch(`${BASE}precache.json`, { cache: "no-store" }).catch(() => null))?.json?.();
    for (const name of await caches.keys()) {
      // Old app versions go; the model store's cache is managed by the page (modelstore.js).
      if (name.startsWith(PREFIX) && current && name !== PREFIX + current.version) await caches.delete(name);
    }
    await self.clients.claim();
    const clients = await self.clients.matchAll({ type: "window" });
    for (const client of clients) client.postMessage({ type: "sw-activated", version: current?.version });
  })());
});

// Background Sync: the browser wakes us when the network is back, even with the tab closed.
// The event itself says the network is back, so the outbox sends everything pending now (no
// backoff, no navigator.onLine check: a worker's onLine can lag behind). If anything is still
// pending afterwards the promise rejects, and the browser keeps the tag and fires it again later;
// resolving would tell it the work is done and the case would wait for the next page visit.
self.addEventListener("sync", (event) => {
  if (event.tag !== SYNC_TAG) return;
  event.waitUntil((async () => {
    const outbox = new EscalationOutbox({ url: null, token: null });
    if (!(await outbox.loadEndpoint())?.url) return;
    const left = await outbox.sendPending();
    if (left) throw new Error(`${left} escalation(s) still pending; the browser retries the sync`);
  })());
});

function isolated(response) {
  if (!response || response.type === "opaque" || response.status === 0) return response;
  const headers = new Headers(response.headers);
  for (const [k, v] of Object.entries(ISOLATION)) headers.set(k, v);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

async function fromShell(request) {
  const names = (await caches.keys()).filter((n) => n.startsWith(PREFIX)).sort();
  for (const name of names.reverse()) {
    const hit = await (await caches.open(name)).match(request, { ignoreVary: true });
    if (hit) return hit;
  }
  return null;
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith(`${BASE}api/`) || url.pathname === `${BASE}precache.json`) return;
  if (request.mode === "navigate" && url.pathname === BASE) {
    // Network first, so an online user sees the current deployment; the shell when offline.
    event.respondWith((async () => {
      try {
        const response = await fetch(request);
        if (response.ok && url.pathname === BASE) {
          const names = (await caches.keys()).filter((n) => n.startsWith(PREFIX)).sort();
          if (names.length) await (await caches.open(names[names.length - 1])).put(BASE, response.clone());
        }
        return isolated(response);
      } catch (err) {
        return isolated(await fromShell(BASE)) ?? Response.error();
      }
    })());
    return;
  }
  // Range requests and model shards go to the network or the model store, not the shell.
  if (request.headers.has("range") || url.pathname.startsWith(`${BASE}models/`) && !url.pathname.endsWith("/manifest.json")) {
    event.respondWith(fetch(request).then(isolated));
    return;
  }
  // Content-hashed paths never change: cache first. Everything else (page, static/, web
  // manifest): network first, so an online user always gets one consistent version.
  const hashed = url.pathname.startsWith(`${BASE}runtime/`) || url.pathname.startsWith(`${BASE}tasks/`)
    || url.pathname.startsWith(`${BASE}models/`);
  event.respondWith((async () => {
    if (hashed) return isolated((await fromShell(request)) ?? (await fetch(request)));
    try {
      return isolated(await fetch(request));
    } catch (err) {
      const cached = await fromShell(request);
      if (cached) return isolated(cached);
      throw err;
    }
  })());
});
