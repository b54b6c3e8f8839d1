// The greedy decode loop of pyapp/generation/loop.py (decode_greedy), step for step, with its
// pick kernel and closing mode (pyapp/generation/closing.py), for the browser: logits and the
// grammar's bitmask stay in JS, so nothing per token crosses into Python. No constant of its own:
// every number and token group comes from Python (pyapp.generation.loop.decode_plan, handed over
// once by pyapp/backends/browser_lm.py). tests/pyapp/generation/test_decode_js.py runs the
// Python loop's test cases against this module under node.
//
// Pure: no model, no transformers.js. web/lm.js passes the forward pass in as `step`.

// plan JSON (decode_plan) → what decodeGreedy takes.
export function parsePlan(json) {
  const p = typeof json === "string" ? JSON.parse(json) : json;
  return {
    groups: p.groups.map((ids) => Int32Array.from(ids)),
    inString: p.in_string,
    quotes: new Map(Object.entries(p.quotes).map(([id, text]) => [Number(id), text])),
    avoidWindow: p.avoid_window,
    maxPeriod: p.max_period,
    minLoop: p.min_loop,
    choiceMax: p.choice_max,
  };
}

// closing.py string_state: [inside a string, after a backslash there] once text follows.
export function stringState([inside, escaped], text) {
  for (const ch of text) {
    if (escaped) escaped = false;
    else if (inside && ch === "\\") escaped = true;
    else if (ch === '"') inside = !inside;
  }
  return [inside, escaped];
}

// closing.py repeats: the last tokens are one sequence of at most maxPeriod tokens repeated
// (spanning at least minLoop tokens and 3 periods).
export function repeats(tokens, maxPeriod, minLoop) {
  for (let period = 1; period <= maxPeriod; period++) {
    const span = Math.max(minLoop, 3 * period);
    if (tokens.length < span) break;
    const start = tokens.length - span;
    let loop = true;
    for (let i = start + period; i < tokens.length && loop; i++) loop = tokens[i] === tokens[i - period];
    if (loop) return true;
  }
  return false;
}

const isAllowed = (bitmask, i) => ((bitmask[i >> 5] >>> (i & 31)) & 1) === 1;

// Greedy pick among allowed tokens: [token, its probability renormalised over the allowed
// tokens, number allowed], as models/cpython/sampling.py GreedyKernel.pick (first maximum).
// With prefer (id groups in order), the token is the best allowed one of the first group that
// has one, else (with avoid, a Set) the best allowed one not in avoid; probability and count
// stay over everything the grammar allows.
export function pick(logits, vocabSize, bitmask, prefer = null, avoid = null) {
  const V = vocabSize;
  let best = -1, bestValue = -Infinity, allowed = 0, fresh = -1, freshValue = -Infinity;
  for (let i = 0; i < V; i++) {
    if (bitmask && !isAllowed(bitmask, i)) continue;
    allowed++;
    if (best < 0 || logits[i] > bestValue) { best = i; bestValue = logits[i]; }
    if (avoid && !avoid.has(i) && (fresh < 0 || logits[i] > freshValue)) { fresh = i; freshValue = logits[i]; }
  }
  let preferred = false;
  for (const ids of prefer ?? []) {
    let chosen = -1, chosenValue = -Infinity;
    for (const i of ids) {
      if (i >= V || !isAllowed(bitmask, i)) continue;
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

// loop.py decode_greedy. logits: the prompt's last row; step(token) → the next row (the forward
// pass, its KV cache kept by the caller); matcher: web-xgrammar's GrammarMatcher or null;
// closeAt: closing mode from this many tokens on (null: never; only with a matcher); cancelled()
// is polled before each forward pass; pause() lets messages in before it. Resolves with the
// fields of pyapp.generation.Generation (timings without prefill_s).
export async function decodeGreedy({ logits, step, matcher, plan, vocabSize, eos, maxNew,
                                     closeAt = null, cancelled = () => false, onToken = null,
                                     pause = async () => {}, clock = () => performance.now() / 1000 }) {
  const timings = { forward_s: 0, constraint_s: 0 };
  const closeFrom = matcher && closeAt !== null ? closeAt : null;
  const out = [], choices = [];
  let reason = "max_new_tokens", closed = false, textState = [false, false];
  while (out.length < maxNew) {
    if (cancelled()) { reason = "cancelled"; break; }
    let t = clock();
    const bitmask = matcher ? await matcher.getNextTokenBitmask() : null;
    if (closeFrom !== null && !closed &&
        (out.length >= closeFrom || repeats(out, plan.maxPeriod, plan.minLoop))) closed = true;  // stays on
    const prefer = closed ? (textState[0] ? plan.inString.map((g) => plan.groups[g]) : plan.groups) : null;
    const avoid = closed ? new Set(out.slice(-plan.avoidWindow)) : null;
    const [token, prob, allowed] = pick(logits, vocabSize, bitmask, prefer, avoid);
    if (matcher && !matcher.acceptToken(token)) throw new Error(`grammar rejected token ${token} it allowed`);
    timings.constraint_s += clock() - t;
    if (allowed > 1 && allowed <= plan.choiceMax) choices.push(prob);
    if (eos.has(token)) { reason = "eos"; break; }
    out.push(token);
    textState = plan.quotes.has(token) ? stringState(textState, plan.quotes.get(token)) : [textState[0], false];
    if (onToken) onToken(out);
    if (matcher && matcher.isTerminated()) { reason = "grammar"; break; }
    if (out.length >= maxNew) break;
    await pause();
    if (cancelled()) { reason = "cancelled"; break; }
    t = clock();
    logits = await step(token);
    timings.forward_s += clock() - t;
  }
  timings.decode_tokens = out.length;
  return { token_ids: out, stop_reason: reason, choices, timings, closed_early: closed };
}
