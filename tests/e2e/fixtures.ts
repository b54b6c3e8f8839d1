// Shared fixtures: every page is watched for requests leaving our origin. Any such request is
// aborted and fails the test; requests made by the inference worker are observed too (the
// origin spec checks that model and wasm fetches from the worker show up here).
import { test as base, expect, type Page } from "@playwright/test";

type Fixtures = { requests: string[]; offOrigin: string[]; app: Page };

export const test = base.extend<Fixtures>({
  requests: async ({}, use) => use([]),
  offOrigin: async ({}, use) => use([]),
  app: async ({ page, context, baseURL, requests, offOrigin }, use) => {
    const origin = new URL(baseURL!).origin;
    await context.route("**/*", (route) => {
      const url = route.request().url();
      requests.push(url);
      if (url.startsWith("data:") || url.startsWith("blob:") || new URL(url).origin === origin) {
        return route.continue();
      }
      offOrigin.push(url);
      return route.abort("blockedbyclient");
    });
    context.on("request", (request) => {
      const url = request.url();
      if (!requests.includes(url)) requests.push(url);
      if (!/^(data|blob):/.test(url) && new URL(url).origin !== origin && !offOrigin.includes(url)) {
        offOrigin.push(url);
      }
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
