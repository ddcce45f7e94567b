// libFuzzer target: a tokenizer.json and a text from one input (split at the
// first NUL byte: the JSON before, the text after). Reading the JSON may fail
// with mcompress::Error; a tokenizer that reads must encode any text, its ids
// must lie in its vocabulary, and decoding them must not fail.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mcompress/formats/tokenizer.h"
#include "mcompress/sdk/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string json(input.substr(0, split));
  const std::string_view text = split == std::string_view::npos ? std::string_view() : input.substr(split + 1);
  try {
    const auto tokenizer = mcompress::Tokenizer::from_json(json, "", "fuzz input");
    for (bool special : {false, true}) {
      const auto ids = tokenizer.encode(text, special);
      for (int64_t id : ids)
        if (id < 0 || id >= tokenizer.vocab_size()) std::abort();  // an id outside the vocabulary
      tokenizer.decode(ids, special);
    }
  } catch (const mcompress::Error&) {
  }
  return 0;
}
