import { defineConfig } from "@playwright/test";

const PORT = Number(process.env.E2E_PORT ?? 8766);

// System Chromium from Debian, never a downloaded browser; flags keep it off the network.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--no-first-run",
  "--no-default-browser-check",
];
const WEBGPU_ARGS = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-features=Vulkan"];

export default defineConfig({
  testDir: "tests/e2e",
  timeout: 240_000,
  expect: { timeout: 120_000 },
  // Two cores: one page running a model at a time.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  // Tests tagged @full only repeat a check at a size `make test` covers smaller: `make test-full`.
  grepInvert: process.env.E2E_FULL ? undefined : /@full/,
  reporter: [["list"]],
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    launchOptions: { executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS },
  },
  webServer: {
    command: `.venv/bin/edge-triage serve --port ${PORT} --log-level warning`,
    url: `http://127.0.0.1:${PORT}/api/health`,
    reuseExistingServer: !process.env.CI,
    timeout: 60_000,
  },
  projects: [
    { name: "wasm", testIgnore: /webgpu\.spec\.ts/ },
    {
      name: "webgpu",
      testMatch: /webgpu\.spec\.ts/,
      use: {
        launchOptions: {
          executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
          args: [...CHROMIUM_ARGS, ...WEBGPU_ARGS],
        },
      },
    },
  ],
});
