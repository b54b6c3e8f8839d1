// The page's measured memory (performance.measureUserAgentSpecificMemory): its workers included,
// read only after the moment it was asked for.
//
// Chromium answers a measurement asked for while an earlier one is still pending (each waits for
// a garbage collection, up to a minute) with that earlier one's reading: asked after the language
// model loaded, it returned the 190 MB of before it loaded (the page's own reading, started at
// boot, was still pending). So a caller whose call came after the pending measurement started
// waits for it to settle and then measures afresh; callers that came before it share it.

// measure: () => Promise<{bytes}>. Returns memoryUse(): Promise<bytes>.
export function memoryMeter(measure) {
  let calls = 0;
  let pending = null;  // {covers: the calls made before it started, reading: Promise}
  return async function memoryUse() {
    const call = ++calls;
    for (;;) {
      if (!pending) {
        const current = { covers: calls, reading: measure() };
        pending = current;
        const settled = () => { if (pending === current) pending = null; };
        current.reading.then(settled, settled);
      }
      if (pending.covers >= call) return (await pending.reading).bytes;
      await pending.reading.catch(() => {});
    }
  };
}
