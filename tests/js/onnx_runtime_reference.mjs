// Reference outputs for tests/test_onnx_export.cpp from ONNX Runtime (the
// onnxruntime-node package's CPU build).
//
//   node onnx_runtime_reference.mjs <model.onnx> <input.f32> <dims, e.g. 2,1,28,28> <output.f32> [<optimized.onnx>]
//
// input.f32: the input tensor as little-endian float32 values, row-major.
// Runs the model's one input through it and writes its first output the
// same way to output.f32; prints {"inputs": [...], "outputs": [{"name", "dims"}]}.
// optimized.onnx: where ONNX Runtime writes the graph it ran, after its
// fusions (for an int8 QDQ model: whether it became QLinearConv, QGemm, ...).
import { readFileSync, writeFileSync } from "node:fs";
import ort from "onnxruntime-node";

const [modelPath, inputPath, dimsText, outputPath, optimizedPath] = process.argv.slice(2);
if (!modelPath || !inputPath || !dimsText || !outputPath) {
  console.error("usage: node onnx_runtime_reference.mjs <model.onnx> <input.f32> <dims> <output.f32>");
  process.exit(2);
}
const dims = dimsText.split(",").map(Number);
const bytes = readFileSync(inputPath);
const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);

const session = await ort.InferenceSession.create(modelPath, {
  executionProviders: ["cpu"],
  graphOptimizationLevel: "all",
  intraOpNumThreads: 1,
  ...(optimizedPath ? { optimizedModelFilePath: optimizedPath } : {}),
});
if (session.inputNames.length !== 1) {
  console.error(`the model has ${session.inputNames.length} inputs; this reference feeds one`);
  process.exit(1);
}
const results = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", data.slice(), dims) });
const outputs = session.outputNames.map((name) => ({ name, dims: results[name].dims }));
const first = results[session.outputNames[0]];
writeFileSync(outputPath, Buffer.from(first.data.buffer, first.data.byteOffset, first.data.byteLength));
process.stdout.write(JSON.stringify({ inputs: session.inputNames, outputs }));
