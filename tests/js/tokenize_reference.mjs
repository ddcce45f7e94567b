// Reference encodings for tests/test_tokenizer.cpp, from @lenml/tokenizers
// (a fork of transformers.js).
//
//   node tokenize_reference.mjs <directory with tokenizer.json and tokenizer_config.json> <request.json>
//
// request.json: {"texts": [...]}. Prints, for each text, its ids without and
// with the special tokens the post-processor adds, and the first decoded
// with and without special tokens:
// {"results": [{"ids": [...], "ids_with_special_tokens": [...], "decoded": "...",
//               "decoded_skipping_special": "..."}]}
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TokenizerLoader } from "@lenml/tokenizers";

const [directory, requestPath] = process.argv.slice(2);
if (!directory || !requestPath) {
  console.error("usage: node tokenize_reference.mjs <tokenizer directory> <request.json>");
  process.exit(2);
}
const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: readJson(join(directory, "tokenizer.json")),
  tokenizerConfig: readJson(join(directory, "tokenizer_config.json")),
});
const request = readJson(requestPath);

// decode() refuses an empty list of ids; its text is empty.
const decode = (ids, skip_special_tokens) =>
  ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens });

const results = request.texts.map((text) => {
  const ids = tokenizer.encode(text, { add_special_tokens: false });
  return {
    ids,
    ids_with_special_tokens: tokenizer.encode(text, { add_special_tokens: true }),
    decoded: decode(ids, false),
    decoded_skipping_special: decode(ids, true),
  };
});
process.stdout.write(JSON.stringify({ results }));
