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

// A page of ``browser`` that may load from ``url``'s origin only.
export async function ownOriginPage(browser, url) {
  const page = await browser.newPage();
  const origin = new URL(url).origin;
  await page.context().route("**/*", (route) =>
    new URL(route.request().url()).origin === origin ? route.continue() : route.abort());
  return page;
}
