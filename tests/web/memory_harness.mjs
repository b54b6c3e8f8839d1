// Drives web/memory.js against a stand-in for Chromium's measureUserAgentSpecificMemory that
// behaves as Chromium did in the bench: a call made while a measurement is pending gets that
// measurement's reading, taken when it started. Prints the readings as JSON (tests/web/test_memory.py).
import { memoryMeter } from "../../web/memory.js";

let heap = 0;
let pending = null;
let started = 0;
function chromium() {
  if (!pending) {
    started += 1;
    const snapshot = heap;
    pending = new Promise((resolve) => setTimeout(() => { pending = null; resolve({ bytes: snapshot }); }, 20));
  }
  return pending;
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));
const meter = memoryMeter(chromium);
heap = 190;
const atBoot = meter();                    // the page's own reading at boot, still pending ...
await tick();
heap = 930;                                // ... when the language model has loaded
const direct = chromium();                 // what calling Chromium directly reads now
const [after, alongside] = await Promise.all([meter(), meter()]);  // two callers at once
const boot = await atBoot;
const again = await meter();
process.stdout.write(JSON.stringify({ boot, direct: (await direct).bytes, after, alongside, again, measurements: started }));
