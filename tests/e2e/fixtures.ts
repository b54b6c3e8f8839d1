// Shared fixtures: every page is watched for requests leaving our origin, and any such request
// fails the test; requests made by the workers (the inference worker, the encoder worker under it,
// onnxruntime's threads) are observed too (the origin spec checks that model and wasm fetches from
// the workers show up here).
//
// Watched, not intercepted: a `context.route("**/*")` here turned off Chromium's HTTP cache for
// every test (Playwright does that while a route is set), and with it a service-worker update
// while the page booted stalled the encoder worker (a worker started by a worker) in 3 of 14
// runs of the export spec's update test, and in none of 16 without the route. A test that
// injects a fault routes only the requests it breaks.
import { test as base, expect, type Page } from "@playwright/test";

type Fixtures = { requests: string[]; offOrigin: string[]; app: Page };

export const test = base.extend<Fixtures>({
  requests: async ({}, use) => use([]),
  offOrigin: async ({}, use) => use([]),
  app: async ({ page, context, baseURL, requests, offOrigin }, use) => {
    const origin = new URL(baseURL!).origin;
    context.on("request", (request) => {
      const url = request.url();
      requests.push(url);
      if (!/^(data|blob):/.test(url) && new URL(url).origin !== origin) offOrigin.push(url);
    });
    await use(page);
    expect(offOrigin, "requests that left our origin").toEqual([]);
  },
});

export { expect };

// Tests skip the background download of the language model (?prefetch=0) unless they test it.
export async function openApp(page: Page, query = "?backend=wasm&prefetch=0") {
  await page.goto(`/${query}`);
  return page.evaluate(() => (window as any).edgeTriage.ready);
}

// The service worker installed and its precache (the runtime, for offline use) complete: on a
// first visit it starts only once the models are loaded (web/app.js installAfterBoot).
export async function swReady(page: Page) {
  await page.evaluate(async () => {
    await (window as any).edgeTriage.serviceWorker;
    await navigator.serviceWorker.ready;
  });
}

export async function classify(page: Page, text: string, task = "telemetry-triage") {
  return page.evaluate(([t, x]) => (window as any).edgeTriage.run(t, x), [task, text]);
}

export async function classifyError(page: Page, text: unknown, task = "telemetry-triage") {
  return page.evaluate(
    ([t, x]) =>
      (window as any).edgeTriage.run(t, x).then(
        () => null,
        (e: Error) => ({ name: e.name, message: e.message }),
      ),
    [task, text] as [string, unknown],
  );
}
