// System Chromium for the headless runs Python drives (server/browserrun.mjs for
// `eval --runtime browser`, server/bench/*.mjs for `edge-triage bench`): never a downloaded
// browser, its own background traffic off, and every request to another origin refused and reported.
import { chromium } from "@playwright/test";

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // Every request that is not to loopback goes to a proxy that is not there (Chromium never
    // proxies loopback), so a request to another origin fails in the browser instead of leaving
    // the machine; ownOriginPage / watchOrigin still report it, and the run fails.
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", "--disable-default-apps", "--proxy-server=http://127.0.0.1:9"],
  });
}

// A page of ``browser`` that may load from ``url``'s origin only: every request (worker requests
// too, through the context's "request" events) is watched, and the URLs of those to another origin
// are kept in ``page.offOrigin``, so a bench script can fail on them with
// ``assertOwnOrigin(page)``. Watched, not intercepted: while a Playwright route is set Chromium's
// HTTP cache is off (which a user's browser is not) and requests of a worker started by a worker
// can stall (tests/e2e/fixtures.ts).
export async function ownOriginPage(browser, url) {
  const page = await browser.newPage();
  watchOrigin(page.context(), url, page);
  return page;
}

// Keeps the off-origin request URLs of ``context`` in ``into.offOrigin``.
export function watchOrigin(context, url, into) {
  const origin = new URL(url).origin;
  into.offOrigin = [];
  context.on("request", (request) => {
    const u = request.url();
    if (!/^(data|blob):/.test(u) && new URL(u).origin !== origin && !into.offOrigin.includes(u)) into.offOrigin.push(u);
  });
}

export function assertOwnOrigin(page) {
  if (page.offOrigin?.length) {
    throw new Error(`requests that left our origin: ${page.offOrigin.join(", ")}`);
  }
}
