// Reference runs of GGUF files for tests/test_gguf.cpp, by llama.cpp itself
// through node-llama-cpp's prebuilt CPU binary.
//
//   node llama_cpp_reference.mjs <model.gguf> <request.json>
//
// request.json:
//   {"texts": ["..."],          tokenized with special tokens parsed, none added
//    "prompt": [ids],           evaluated in one batch (may be empty)
//    "positions": "all"|"last", where next-token log-probabilities are reported
//    "continuation": n}         greedy tokens generated after the prompt
// Prints:
//   {"model": {architecture, vocabulary_type, bos, eos, add_bos, train_context, embedding_size},
//    "tokenized": [[ids] per text],
//    "log_probabilities": [[one per vocabulary entry] per reported position, then per generated token],
//    "positions": [prompt index of each prompt row],
//    "continuation": [ids]}
// Log-probabilities are the logs of llama.cpp's softmax over the raw logits
// (greedy sampling applies no temperature, top-k or penalties).
import { readFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [modelPath, requestPath] = process.argv.slice(2);
if (!modelPath || !requestPath) {
  console.error("usage: node llama_cpp_reference.mjs <model.gguf> <request.json>");
  process.exit(2);
}
const request = JSON.parse(readFileSync(requestPath, "utf8"));
const prompt = request.prompt ?? [];
const continuation = request.continuation ?? 0;

// build: "never" uses the prebuilt binary only; nothing is downloaded or compiled.
// llama.cpp's own log lines go to stderr: stdout carries only the JSON.
const llama = await getLlama({
  gpu: false,
  build: "never",
  logLevel: LlamaLogLevel.warn,
  logger: (level, message) => process.stderr.write(`[llama.cpp ${level}] ${message}\n`),
  progressLogs: false,
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });

// A dense array indexed by token id from node-llama-cpp's probability map.
function logProbabilities(probabilities) {
  let size = 0;
  for (const token of probabilities.keys()) size = Math.max(size, token + 1);
  const row = new Array(size).fill(null);
  for (const [token, probability] of probabilities) row[token] = Math.log(probability);
  return row;
}

const output = {
  model: {
    architecture: model.fileInfo.metadata.general.architecture,
    vocabulary_type: model.vocabularyType,
    bos: model.tokens.bos,
    eos: model.tokens.eos,
    add_bos: model.tokens.shouldPrependBosToken,
    train_context: model.trainContextSize,
    embedding_size: model.embeddingVectorSize,
  },
  tokenized: (request.texts ?? []).map((text) => Array.from(model.tokenize(text, true))),
  log_probabilities: [],
  positions: [],
  continuation: [],
};

if (prompt.length > 0) {
  const contextSize = Math.min(model.trainContextSize, Math.max(64, prompt.length + continuation + 8));
  const context = await model.createContext({ contextSize, batchSize: contextSize, threads: 2, sequences: 1 });
  const sequence = context.getSequence();
  const greedy = { temperature: 0 };
  const last = prompt.length - 1;
  const input = prompt.map((token, index) => {
    const report = request.positions === "all" || index === last;
    if (!report) return token;
    return [token, { generateNext: { probabilities: true, token: index === last, options: greedy } }];
  });
  const results = await sequence.controlledEvaluate(input);
  let next = null;
  results.forEach((result, index) => {
    if (result === undefined) return;
    output.log_probabilities.push(logProbabilities(result.next.probabilities));
    output.positions.push(index);
    if (index === last) next = result.next.token;
  });
  for (let step = 0; step < continuation && next !== null; ++step) {
    output.continuation.push(next);
    if (step + 1 === continuation) break;
    const [result] = await sequence.controlledEvaluate([
      [next, { generateNext: { probabilities: true, token: true, options: greedy } }],
    ]);
    output.log_probabilities.push(logProbabilities(result.next.probabilities));
    next = result.next.token;
  }
  await context.dispose();
}
await model.dispose();
await llama.dispose();
process.stdout.write(JSON.stringify(output));
