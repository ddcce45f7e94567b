#pragma once
// Texts that exercise each part of a tokenizer (normalizers, pre-tokenizer
// splits, byte fallback, added and special tokens), shared by the tests that
// compare mcompress's tokenizers with a reference implementation.
#include <string>
#include <vector>

#include "test_support.h"

namespace mcompress::testing {

inline std::vector<std::string> tokenizer_test_texts() {
  const std::string shakespeare = read_text(std::string(MCOMPRESS_SOURCE_DIR) + "/tests/data/tinyshakespeare.txt");
  return {
      shakespeare.substr(0, 3000),
      "int main(int argc, char** argv) {\n\tfor (int i = 0; i < argc; ++i) {\n\t\tprintf(\"%s\\n\", argv[i]);\n\t}\n"
      "    return 0;\n}\n",
      "def f(x):\n    return {'a': x ** 2, \"b\": [1, 2, 3]}  # comment\n\n\nclass A(object):\n  pass\n",
      "12345678 3.14159 1,000,000 $100.99 2024-01-31 0x1F 007 1e-10",
      "I'm sure you're right, he's gone, they've left, we'll see, she'd know, don't, DON'T, It'S, O'Neill's",
      "a  b   c    d\n\n\ne\t\tf \r\n g   \n  \n",
      "   leading spaces",
      "trailing spaces   ",
      " ",
      "\n",
      "",
      "你好，世界！这是一个测试。機器學習",
      "Καλημέρα κόσμε, ΑΒΓΔ αβγδ",
      "مرحبا بالعالم",
      "Привет, мир! Ёжик",
      "👋🌍🎉 👨‍👩‍👧 emoji🙂mixed ✓ ⌘ ∑ ∞",
      "Ame\xCC\x81lie cafe\xCC\x81 n\xCC\x83 \xE1\x84\x80\xE1\x85\xA1 A\xCC\x8A",  // decomposed: NFC composes them
      "<|endoftext|>Hello<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
      "<s>[INST] Hello </s> <unk> <<SYS>> <0x41>",
      "a<|endoftext|><|endoftext|>b <|im_end|> c",
      "hello\u00a0world\u2003x\u200bz",
  };
}

}  // namespace mcompress::testing
