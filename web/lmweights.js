// The language model's float weights, folded here from the GGUF codes the page downloads
// (models/ggufcodes.py writes them and does the same in numpy for CPython): onnxruntime-web gets
// them as external data, copied straight into its tensors, so its Wasm heap (which never
// shrinks) holds the float weights once, not the codes, the fold's intermediates and a protobuf
// copy besides (README "Memory (measured)"). The bytes built here are garbage once the session
// holds them.
//
// plan: the model's <stem>.fold.json; codes: the bytes of its <stem>.codes. Returns the bytes
// of the external-data file the graph names (plan.data): the codes, then each float weight at
// its offset, float32(q) * d (+ m) per element, the bits numpy computes: a product or sum of
// float32 values done in double and rounded once to float32 is the float32 operation's result.

const BLOCK = 32;

export function externalData(plan, codes) {
  if (plan.format !== "gguf-codes-1") throw new Error(`unknown weight format ${plan.format}`);
  const data = new Uint8Array(plan.data_bytes);
  data.set(codes, 0);
  const buffer = data.buffer;
  for (const w of plan.weights) {
    const t = plan.tensors[w.source];
    const { rows, cols } = t;
    const blocks = (rows * cols) / BLOCK;
    const d = new Float32Array(buffer, t.d, blocks);
    const m = t.m === null ? null : new Float32Array(buffer, t.m, blocks);
    const out = new Float32Array(buffer, w.offset, rows * cols);
    const q = t.type === "q8_0" ? new Int8Array(buffer, t.codes, rows * cols)
      : t.type === "q4_1" ? new Uint8Array(buffer, t.codes, (rows * cols) / 2) : null;
    if (!q) throw new Error(`unknown code type ${t.type}`);
    const block = new Float32Array(BLOCK);
    for (let k = 0; k < blocks; k++) {
      const dk = d[k];
      if (t.type === "q8_0") {
        for (let j = 0; j < BLOCK; j++) block[j] = q[k * BLOCK + j] * dk;
      } else {
        // ggml's Q4_1 block: element j in the low nibble of byte j, element 16+j in the high one.
        const mk = m[k];
        for (let j = 0; j < BLOCK / 2; j++) {
          const byte = q[k * (BLOCK / 2) + j];
          block[j] = Math.fround((byte & 15) * dk) + mk;
          block[j + BLOCK / 2] = Math.fround((byte >> 4) * dk) + mk;
        }
      }
      // Blocks run along a row; a transposed weight writes the row as a column.
      const start = k * BLOCK;
      if (!w.transpose) {
        out.set(block, start);
      } else {
        const row = Math.floor(start / cols);
        const col = start - row * cols;
        for (let j = 0; j < BLOCK; j++) out[(col + j) * rows + row] = block[j];
      }
    }
  }
  return data;
}
