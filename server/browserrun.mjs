// Runs texts through the page's JS API (edgeTriage.run) in headless system Chromium.
// Usage: node server/browserrun.mjs URL TASK < texts.json  → one JSON result per line on stdout,
// "progress DONE TOTAL" lines on stderr. Used by `edge-triage eval --runtime browser`.
import { launchChromium, ownOriginPage } from "./chromium.mjs";

const [url, task] = process.argv.slice(2);
let input = "";
for await (const chunk of process.stdin) input += chunk;
const texts = JSON.parse(input);

const browser = await launchChromium();
try {
  const page = await ownOriginPage(browser, url);
  await page.goto(url);
  await page.evaluate(() => window.edgeTriage.ready);
  const BATCH = 50;
  for (let start = 0; start < texts.length; start += BATCH) {
    const results = await page.evaluate(async ([t, batch]) => {
      const out = [];
      for (const text of batch) {
        try {
          out.push(await window.edgeTriage.run(t, text, { escalate: false }));
        } catch (err) {
          out.push({ error: err.message, name: err.name });
        }
      }
      return out;
    }, [task, texts.slice(start, start + BATCH)]);
    for (const r of results) process.stdout.write(JSON.stringify(r) + "\n");
    process.stderr.write(`progress ${Math.min(start + BATCH, texts.length)} ${texts.length}\n`);
  }
} finally {
  await browser.close();
}
