#pragma once
// Tokenizer regexes (Unicode classes, lookahead, (?i:...)) compiled once by
// PCRE2 in UTF mode with Unicode properties for \s, \w and case folding.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mcompress {

class UnicodeRegex {
 public:
  // Throws mcompress::Error naming `source` when PCRE2 rejects `pattern`.
  UnicodeRegex(const std::string& pattern, const std::string& source);
  ~UnicodeRegex();
  UnicodeRegex(const UnicodeRegex&) = delete;
  UnicodeRegex& operator=(const UnicodeRegex&) = delete;

  // [begin, end) byte ranges of the successive non-overlapping matches in
  // `text` (valid UTF-8), empty matches left out. Thread-safe.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace mcompress
