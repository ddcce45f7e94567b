// Decode and prefill speed of a GGUF file in llama.cpp (node-llama-cpp's
// prebuilt CPU binary, the test reference in tests/js), measured as
// bench/llm_decode_bench.cpp measures mcompress: a random prompt of
// --prompt tokens evaluated in one batch (prefill, up to the first new token),
// then --new greedy tokens one at a time (decode), --reps times after a warm
// run. Prints one "JSON: {...}" line in the C++ benchmark's fields: rates
// timed here, around node-llama-cpp's calls (what an application of the
// binding gets), and llama.cpp's own (llama_perf_context: its prompt and
// token evaluation time, without the JavaScript around it).
//
//   node bench/llama_cpp_decode.mjs MODEL.gguf [--threads 2] [--prompt 64] [--new 16] [--reps 3]
//       [--vocab 32000]   (prompt ids are drawn below it)
import { statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { getLlama, LlamaLogLevel } = await import(
  pathToFileURL(join(root, "tests/js/node_modules/node-llama-cpp/dist/index.js")).href);

const args = process.argv.slice(2);
const modelPath = args[0];
if (!modelPath) {
  console.error("usage: node bench/llama_cpp_decode.mjs MODEL.gguf [--threads N] [--prompt T] [--new T] [--reps R]");
  process.exit(2);
}
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at > 0 ? Number(args[at + 1]) : fallback;
};
const threads = option("--threads", 2), promptLength = option("--prompt", 64);
const newTokens = option("--new", 16), reps = option("--reps", 3), vocabulary = option("--vocab", 32000);

const started = process.hrtime.bigint();
const seconds = (from) => Number(process.hrtime.bigint() - from) / 1e9;
// build: "never" runs the prebuilt binary; nothing is downloaded or compiled.
// llama.cpp's timing report arrives through the logger at the info level.
const perfLines = [];
const llama = await getLlama({
  gpu: false, build: "never", logLevel: LlamaLogLevel.info, progressLogs: false,
  logger: (level, message) => {
    if (message.includes("llama_perf_context_print")) perfLines.push(message);
    else if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) process.stderr.write(message + "\n");
  },
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
const contextSize = promptLength + newTokens + 16;
const context = await model.createContext({
  contextSize, batchSize: promptLength, threads, sequences: 1, performanceTracking: true });
const sequence = context.getSequence();
const loadSeconds = seconds(started);

// The same kind of prompt as the C++ benchmark: random ids (seeded), no BOS.
let state = 42n;
const random = () => {
  state = (state * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
  return Number(state >> 33n);
};
const prompt = Array.from({ length: promptLength }, () => random() % vocabulary);
const greedy = { temperature: 0 };

async function run(tokens) {
  await sequence.clearHistory();
  const prefillStart = process.hrtime.bigint();
  const input = prompt.map((token, index) =>
    index === prompt.length - 1 ? [token, { generateNext: { token: true, options: greedy } }] : token);
  let [next] = (await sequence.controlledEvaluate(input)).slice(-1).map((result) => result.next.token);
  const prefill = seconds(prefillStart);
  const decodeStart = process.hrtime.bigint();
  for (let step = 1; step < tokens; ++step) {
    const [result] = await sequence.controlledEvaluate([[next, { generateNext: { token: true, options: greedy } }]]);
    next = result.next.token;
  }
  return { prefill, decode: seconds(decodeStart) };
}

// llama.cpp's report since the last one: "prompt eval time = X ms / N tokens", "eval time = X ms / N runs".
async function llamaTimings() {
  perfLines.length = 0;
  await context.printTimings();
  const read = (label) => {
    const line = perfLines.find((l) => new RegExp(`\\b${label} time\\s*=`).test(l) &&
                                       !(label === "eval" && /prompt eval/.test(l)));
    const match = line && line.match(/=\s*([\d.]+) ms \/\s*(\d+)/);
    return match ? { ms: Number(match[1]), count: Number(match[2]) } : null;
  };
  return { prompt: read("prompt eval"), tokens: read("eval") };
}

const warmStart = process.hrtime.bigint();
await run(2);
const firstRunSeconds = seconds(warmStart);
await llamaTimings();
const prefillRates = [], decodeRates = [], llamaPrefillRates = [], llamaDecodeRates = [];
for (let rep = 0; rep < reps; ++rep) {
  const { prefill, decode } = await run(newTokens);
  prefillRates.push(promptLength / prefill);
  decodeRates.push((newTokens - 1) / decode);
  const own = await llamaTimings();
  if (own.prompt && own.prompt.ms > 0) llamaPrefillRates.push(own.prompt.count / (own.prompt.ms / 1000));
  if (own.tokens && own.tokens.ms > 0) llamaDecodeRates.push(own.tokens.count / (own.tokens.ms / 1000));
}
const peakRssMb = process.resourceUsage().maxRSS / 1024;
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
console.log(`llama.cpp ${modelPath}: ${threads} threads, prompt ${promptLength}, ${newTokens} new tokens, ` +
            `${reps} reps: decode ${median(decodeRates).toFixed(2)} tok/s, prefill ${median(prefillRates).toFixed(1)} tok/s; ` +
            `llama.cpp's own timings: decode ${median(llamaDecodeRates)?.toFixed(2)} tok/s, ` +
            `prefill ${median(llamaPrefillRates)?.toFixed(1)} tok/s`);
console.log("JSON: " + JSON.stringify({
  runner: "llama.cpp", checkpoint: modelPath, threads, prompt: promptLength, new_tokens: newTokens,
  weight_bytes: statSync(modelPath).size, decode_tps: decodeRates, prefill_tps: prefillRates,
  llama_decode_tps: llamaDecodeRates, llama_prefill_tps: llamaPrefillRates,
  load_s: loadSeconds, first_run_s: firstRunSeconds, peak_rss_mb: peakRssMb,
}));
await context.dispose();
await model.dispose();
await llama.dispose();
