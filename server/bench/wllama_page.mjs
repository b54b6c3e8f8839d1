// wllama in headless system Chromium (server/bench/wllama.py drives it): the bench's peer page
// /bench/wllama.html, once per thread count. Job (stdin JSON):
//   {origin, threads: [1, 2], repeats, budget_s, records: [{prompt, schema, tokens}]}
// `tokens`: how many tokens our page generated for that record (the unconstrained run makes
// exactly as many). Per thread count, records are measured until `budget_s` is spent (at least
// one): on a loaded 2-core machine llama.cpp's spinning threads can make one record take minutes. Prints {runs: [{threads, multithread, extract: [...], free: [...]}]} on
// stdout; fails if any request leaves our origin.
import { assertOwnOrigin, launchChromium, ownOriginPage } from "../chromium.mjs";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const job = JSON.parse(input);
const log = (line) => process.stderr.write(`${line}\n`);
const url = `${job.origin}/bench/wllama.html`;

const browser = await launchChromium();
try {
  const runs = [];
  for (const threads of job.threads) {
    // A fresh page per thread count: wllama's pthread pool is sized when the module starts.
    const page = await ownOriginPage(browser, url);
    page.on("console", (m) => { if (m.type() === "error") log(`wllama page: ${m.text()}`); });
    page.on("pageerror", (e) => log(`wllama page error: ${e.message}`));
    await page.goto(url);
    await page.waitForFunction(() => window.wllamaBench !== undefined);
    const loaded = await page.evaluate((n) => window.wllamaBench.load(n), threads);
    log(`wllama: ${loaded.threads} thread(s), multithread ${loaded.multithread}, ` +
        `crossOriginIsolated ${loaded.crossOriginIsolated}`);
    const result = await page.evaluate(async ([records, repeats, budgetMs]) => {
      const w = window.wllamaBench;
      // Warm-up: the first completion also fills llama.cpp's prompt cache with the task prefix.
      await w.generate(records[0].prompt, { schema: records[0].schema });
      const extract = [], free = [];
      const started = performance.now();
      for (let i = 0; i < repeats; i++) {
        for (const r of records) {
          if (extract.length && performance.now() - started > budgetMs) return { extract, free };
          extract.push(await w.generate(r.prompt, { schema: r.schema }));
          free.push(await w.generate(r.prompt, { tokens: r.tokens, ignoreEos: true }));
        }
      }
      return { extract, free };
    }, [job.records, job.repeats, (job.budget_s ?? 300) * 1000]);
    assertOwnOrigin(page);
    runs.push({ ...loaded, requested_threads: threads, ...result });
    log(`wllama ${threads} thread(s): ${result.extract.length} extractions`);
    await page.close();
  }
  process.stdout.write(JSON.stringify({ runs }) + "\n");
} finally {
  await browser.close();
}
