// web/pick.js under node for tests/pyapp/generation/test_pick_js.py.
// stdin: {vocab, picks: [{logits, allowed, prefer, avoid, only}]}; stdout: [[token, prob, allowed, forced], ...].
import { readFileSync } from "node:fs";
import { forced, pick } from "../../../web/pick.js";

const { vocab: V, picks } = JSON.parse(readFileSync(0, "utf8"));

function bitmaskOf(ids) {
  const words = new Int32Array((V + 31) >> 5);
  for (const t of ids) words[t >> 5] |= 1 << (t & 31);
  return words;
}

process.stdout.write(JSON.stringify(picks.map(({ logits, allowed, prefer, avoid, only }) => [
  ...pick(Float32Array.from(logits), V, allowed ? bitmaskOf(allowed) : null,
          prefer ? prefer.map((ids) => Int32Array.from(ids)) : null, avoid ? new Set(avoid) : null,
          only ? new Set(only) : null),
  forced(allowed ? bitmaskOf(allowed) : null, V)])));
