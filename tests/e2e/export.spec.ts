// `edge-triage export` served by a plain static server (python -m http.server: no COOP/COEP,
// no special MIME rules) at the root and under a sub-path.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, expect, classify } from "./fixtures";

const ROOT_PORT = 8791;
const SUB_PORT = 8792;
const UPDATE_PORT = 8796;
let updateDir = "";
let work = "";  // the three exports, 749 MiB each: removed after the file's tests
const servers: ChildProcess[] = [];

async function waitForHttp(url: string) {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

function serveStatic(dir: string, port: number) {
  const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", dir],
    { stdio: "ignore" });
  servers.push(server);
}

test.beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "edge-triage-export-"));
  execFileSync(".venv/bin/edge-triage", ["export", join(work, "root")], { stdio: "inherit" });
  mkdirSync(join(work, "host"));
  execFileSync(".venv/bin/edge-triage", ["export", join(work, "host", "sub"), "--base-path", "/sub/"], { stdio: "inherit" });
  updateDir = join(work, "update");
  execFileSync(".venv/bin/edge-triage", ["export", updateDir], { stdio: "inherit" });
  serveStatic(updateDir, UPDATE_PORT);
  serveStatic(join(work, "root"), ROOT_PORT);
  serveStatic(join(work, "host"), SUB_PORT);
  await waitForHttp(`http://127.0.0.1:${ROOT_PORT}/`);
  await waitForHttp(`http://127.0.0.1:${SUB_PORT}/sub/`);
  await waitForHttp(`http://127.0.0.1:${UPDATE_PORT}/`);
});

test.afterAll(() => {
  for (const server of servers) server.kill();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function bootExported(page, path: string) {
  await page.goto(path);
  // First visit: not isolated, the service worker installs and the page reloads once.
  await page.waitForFunction(() => self.crossOriginIsolated && (window as any).edgeTriage, null, { timeout: 120_000 });
  return page.evaluate(() => (window as any).edgeTriage.ready);
}

test.describe("at the root", () => {
  test.use({ baseURL: `http://127.0.0.1:${ROOT_PORT}` });

  test("boots isolated through the service worker and classifies", async ({ app }) => {
    const status = await bootExported(app, "/?backend=wasm");
    expect(status.crossOriginIsolated).toBe(true);
    expect(status.threads).toBeGreaterThan(1);
    expect((await classify(app, "Link down on eth0, carrier lost")).output.label).toBe("network");
  });

  test("escalations wait in the outbox when no API is configured", async ({ app }) => {
    await bootExported(app, "/?backend=wasm");
    const result = await classify(app, "please book a table for four at the italian place");
    expect(result.route).toBe("escalated");
    const outbox = await app.evaluate(() => (window as any).edgeTriage.outbox());
    expect(outbox.map((r) => r.status)).toEqual(["pending"]);
    await expect(app.locator("#outbox-rows tr")).toHaveCount(1);
  });
});

test.describe("under a sub-path", () => {
  test.use({ baseURL: `http://127.0.0.1:${SUB_PORT}` });

  test("boots and classifies at /sub/, then again offline", async ({ app, context, requests }) => {
    const status = await bootExported(app, "/sub/?backend=wasm");
    expect(status.crossOriginIsolated).toBe(true);
    expect((await classify(app, "PSU 2 failed, running on redundant supply")).output.label).toBe("power");
    expect(requests.filter((u) => !new URL(u).pathname.startsWith("/sub/"))).toEqual([]);
    await context.setOffline(true);
    await app.reload();
    await app.evaluate(() => (window as any).edgeTriage.ready);
    expect((await classify(app, "Filesystem /var is 97% full")).output.label).toBe("storage");
    await context.setOffline(false);
  });
});

// A new deployment: a changed file, a new site version. The open client installs it, removes the
// old version's cache and tells the user.
function deployNewVersion(dir: string, version: string) {
  appendFileSync(join(dir, "static", "style.css"), `\n/* ${version} */\n`);
  const sha = createHash("sha256").update(readFileSync(join(dir, "static", "style.css"))).digest("hex");
  const precache = JSON.parse(readFileSync(join(dir, "precache.json"), "utf8"));
  precache.version = version;
  for (const entry of precache.entries) if (entry.url.endsWith("/static/style.css")) entry.sha256 = sha;
  writeFileSync(join(dir, "precache.json"), JSON.stringify(precache));
  const index = readFileSync(join(dir, "index.html"), "utf8").replace(/"siteVersion": "[0-9a-f]+"/, `"siteVersion": "${version}"`);
  writeFileSync(join(dir, "index.html"), index);
}

test.describe("updating a deployment", () => {
  test.use({ baseURL: `http://127.0.0.1:${UPDATE_PORT}` });

  test("clients install the new version, drop the old files and say so", async ({ app }) => {
    await bootExported(app, "/?backend=wasm");
    await app.evaluate(async () => { await (window as any).edgeTriage.serviceWorker; await navigator.serviceWorker.ready; });
    const before = await app.evaluate(async () => (await caches.keys()).filter((n) => n.startsWith("edge-triage-shell-")));
    expect(before).toHaveLength(1);
    deployNewVersion(updateDir, "feedc0ffee01");
    await app.reload();
    await expect(app.locator("#site-notice")).toContainText("updated to version feedc0ffee01", { timeout: 120_000 });
    const after = await app.evaluate(async () => (await caches.keys()).filter((n) => n.startsWith("edge-triage-shell-")));
    expect(after).toEqual(["edge-triage-shell-feedc0ffee01"]);
    // The boot the update happened under finishes; if not, the stage it stopped at is printed.
    await expect.poll(() => app.evaluate(() => JSON.stringify((window as any).edgeTriage.status())),
      { timeout: 120_000 }).toContain('"state":"ready"');
    expect((await classify(app, "Fan 2 stalled, rotor speed 0 RPM")).output.label).toBe("mechanical");
  });
});
