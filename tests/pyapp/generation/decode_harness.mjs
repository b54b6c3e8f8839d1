// Runs decode cases against web/decode.js under node (tests/pyapp/generation/test_closing.py).
// stdin: {plan (pyapp.generation.loop.decode_plan), vocab, cases, picks, strings, repeats};
// stdout: the results, in the same order. The fakes are test_loop.py's, written again here.
import { readFileSync } from "node:fs";
import { decodeGreedy, parsePlan, pick, repeats, stringState } from "../../../web/decode.js";

const input = JSON.parse(readFileSync(0, "utf8"));
const V = input.vocab;

// test_loop.py ScriptedModel: token script[i] is the favourite at step i, 7 the runner-up.
function scriptedLogits(script, i) {
  const logits = new Float32Array(V);
  logits[script[Math.min(i, script.length - 1)]] = 5.0;
  logits[7] = 4.0;
  return logits;
}

function bitmaskOf(ids) {
  const words = new Int32Array((V + 31) >> 5);
  for (const t of ids) words[t >> 5] |= 1 << (t & 31);
  return words;
}

// test_loop.py OnlyCursor ({only: [[...], ...]}) and AnyOfCursor ({any: [...], last}) as
// web-xgrammar matchers.
function matcherFor(cursor) {
  if (!cursor) return null;
  if (cursor.only) {
    let i = 0;
    return {
      getNextTokenBitmask: async () => bitmaskOf(cursor.only[i]),
      acceptToken: (t) => (cursor.only[i].includes(t) ? (i++, true) : false),
      isTerminated: () => i === cursor.only.length,
    };
  }
  let done = false;
  return {
    getNextTokenBitmask: async () => bitmaskOf(cursor.any),
    acceptToken: (t) => { done = t === cursor.last; return cursor.any.includes(t); },
    isTerminated: () => done,
  };
}

const cases = [];
for (const c of input.cases) {
  const plan = parsePlan({ ...input.plan, groups: c.groups ?? [], quotes: c.quotes ?? {} });
  let steps = 0, emitted = 0;
  const result = await decodeGreedy({
    logits: scriptedLogits(c.script, 0),
    step: async () => scriptedLogits(c.script, ++steps),
    matcher: matcherFor(c.cursor), plan, vocabSize: V, eos: new Set([0]),
    maxNew: c.max_new_tokens, closeAt: c.close_at ?? null,
    cancelled: () => c.cancel_after != null && emitted >= c.cancel_after,
    onToken: (out) => { emitted = out.length; },
  });
  cases.push(result);
}

const picks = input.picks.map(({ logits, allowed, prefer, avoid }) =>
  pick(Float32Array.from(logits), V, allowed ? bitmaskOf(allowed) : null,
       prefer ? prefer.map((ids) => Int32Array.from(ids)) : null, avoid ? new Set(avoid) : null));
const strings = input.strings.map(([state, text]) => stringState(state, text));
const repeated = input.repeats.map((tokens) => repeats(tokens, input.plan.max_period, input.plan.min_loop));
process.stdout.write(JSON.stringify({ cases, picks, strings, repeats: repeated }));
