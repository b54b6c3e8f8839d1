// Reads {plan, codes (base64)} on stdin, writes web/lmweights.js's external data (base64) to stdout.
import { externalData } from "../../web/lmweights.js";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { plan, codes } = JSON.parse(input);
const data = externalData(plan, new Uint8Array(Buffer.from(codes, "base64")));
process.stdout.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64"));
