// A pack with an encoder of its own (clinc150-intent's fine-tuned one, models/finetune.py): the
// page downloads it only when that pack is first used, never at boot or for the other packs.
import { test, expect, openApp, classify } from "./fixtures";

test("the pack's own encoder is fetched on its first query, not at boot", async ({ app, requests }) => {
  await openApp(app);
  const config = await app.evaluate(() =>
    JSON.parse(document.getElementById("config")!.textContent!));
  test.skip(!config.taskEncoders?.["clinc150-intent"], "no fine-tuned encoder in this build");
  const own = config.taskEncoders["clinc150-intent"].model_id;
  expect(own).not.toBe(config.encoder.model_id);
  // The service worker precaches every model's manifest.json; the weights are what matter.
  const weights = () => requests.filter((u) => u.includes(`/models/${own}/`) && !u.endsWith("/manifest.json"));
  expect(requests.some((u) => u.includes(`/models/${config.encoder.model_id}/`))).toBe(true);
  await classify(app, "Fan 2 stalled, rotor speed 0 RPM");
  expect(weights()).toEqual([]);
  const r: any = await classify(app, "what is my checking account balance", "clinc150-intent");
  expect(r.output.label).toBe("balance");
  expect(weights().length).toBeGreaterThan(0);
  // Loading it kept the base encoder's verified shards (a reload offline still boots).
  const cached = await app.evaluate(async () =>
    (await (await caches.open("edge-triage-models-v1")).keys()).map((r) => new URL(r.url).pathname));
  expect(cached.some((p: string) => p.includes(`/models/${config.encoder.model_id}/`))).toBe(true);
  expect(cached.some((p: string) => p.includes(`/models/${own}/`))).toBe(true);
});
