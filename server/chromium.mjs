// System Chromium for the headless runs Python drives (server/browserrun.mjs for
// `eval --runtime browser`, server/bench/*.mjs for `edge-triage bench`): never a downloaded
// browser, its own background traffic off, and every request to another origin refused.
import { chromium } from "@playwright/test";

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", "--disable-default-apps"],
  });
}

// A page of ``browser`` that may load from ``url``'s origin only. Other requests are aborted and
// their URLs kept in ``page.offOrigin`` (worker requests too, through the context's "request"
// events), so a bench script can fail on them with ``assertOwnOrigin(page)``.
export async function ownOriginPage(browser, url) {
  const page = await browser.newPage();
  const origin = new URL(url).origin;
  const local = (u) => /^(data|blob):/.test(u) || new URL(u).origin === origin;
  page.offOrigin = [];
  const note = (u) => { if (!local(u) && !page.offOrigin.includes(u)) page.offOrigin.push(u); };
  await page.context().route("**/*", (route) => {
    const u = route.request().url();
    note(u);
    return local(u) ? route.continue() : route.abort("blockedbyclient");
  });
  page.context().on("request", (request) => note(request.url()));
  return page;
}

export function assertOwnOrigin(page) {
  if (page.offOrigin?.length) {
    throw new Error(`requests that left our origin: ${page.offOrigin.join(", ")}`);
  }
}
