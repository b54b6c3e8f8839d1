// The pick kernel of the browser's decode (pyapp/generation/loop.py, driven from Python through
// pyapp/backends/browser_decode.py): greedy over the Float32Array logits the grammar allows, so
// the logits never leave JS. tests/pyapp/generation/test_pick_js.py checks it against
// models/cpython/sampling.py GreedyKernel under node.

const isAllowed = (bitmask, i) => ((bitmask[i >> 5] >>> (i & 31)) & 1) === 1;

// Greedy pick among allowed tokens: [token, its probability renormalised over the allowed
// tokens, number allowed], as models/cpython/sampling.py GreedyKernel.pick (first maximum).
// With prefer (id groups in order), the token is the best allowed one of the first group that
// has one, else (with avoid, a Set) the best allowed one not in avoid; with only (a Set of ids,
// pyapp/generation/spans.py) all of that among those ids, unless the grammar allows none of
// them. Probability and count stay over everything the grammar allows.
export function pick(logits, vocabSize, bitmask, prefer = null, avoid = null, only = null) {
  const V = vocabSize;
  let restrict = false;
  if (only) for (const i of only) if (i < V && (!bitmask || isAllowed(bitmask, i))) { restrict = true; break; }
  let best = -1, bestValue = -Infinity, allowed = 0, fresh = -1, freshValue = -Infinity;
  for (let i = 0; i < V; i++) {
    if (bitmask && !isAllowed(bitmask, i)) continue;
    allowed++;
    if (restrict && !only.has(i)) continue;
    if (best < 0 || logits[i] > bestValue) { best = i; bestValue = logits[i]; }
    if (avoid && !avoid.has(i) && (fresh < 0 || logits[i] > freshValue)) { fresh = i; freshValue = logits[i]; }
  }
  let preferred = false;
  for (const ids of prefer ?? []) {
    let chosen = -1, chosenValue = -Infinity;
    for (const i of ids) {
      if (i >= V || !isAllowed(bitmask, i) || (restrict && !only.has(i))) continue;
      if (chosen < 0 || logits[i] > chosenValue) { chosen = i; chosenValue = logits[i]; }
    }
    if (chosen >= 0) { best = chosen; bestValue = chosenValue; preferred = true; break; }
  }
  // No closing token allowed: the best allowed token not among the last ones (closing.py).
  if (!preferred && avoid && avoid.size && fresh >= 0) { best = fresh; bestValue = freshValue; }
  if (allowed === 1) return [best, 1.0, 1];
  let sum = 0;
  for (let i = 0; i < V; i++) {
    if (bitmask && !isAllowed(bitmask, i)) continue;
    sum += Math.fround(Math.exp(Math.fround(logits[i] - bestValue)));
  }
  return [best, 1 / sum, allowed];
}

// The one token the bitmask allows, or -1 when it allows several or none, as
// models/cpython/sampling.py GreedyKernel.forced: such a token needs no logits.
export function forced(bitmask, vocabSize) {
  if (!bitmask) return -1;
  let token = -1;
  for (let w = 0; w < bitmask.length; w++) {
    const word = bitmask[w] >>> 0;
    if (word === 0) continue;
    if (token >= 0 || (word & (word - 1)) !== 0) return -1;
    token = w * 32 + (31 - Math.clz32(word));
  }
  return token < vocabSize ? token : -1;
}
