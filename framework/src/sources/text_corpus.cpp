#include "mcompress/framework/sources/text_corpus.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "mcompress/framework/support/file_reading.h"
#include "mcompress/sdk/error.h"

namespace mcompress {

TextCorpus load_text_corpus(const std::string& path, int64_t context, double test_fraction) {
  if (!std::filesystem::is_regular_file(path)) {
    throw Error(fmt::format("text corpus {} not found; set `data.path` to a plain-text file",
                            path));
  }
  const std::string text = read_text_file(path);
  if (!(test_fraction > 0 && test_fraction < 1)) {
    throw Error(fmt::format("the test fraction must be in (0, 1), got {}", test_fraction));
  }
  TextCorpus corpus;
  corpus.vocabulary = CharVocabulary::of_text(text);
  const auto tokens = corpus.vocabulary.encode(text);
  const auto split = static_cast<int64_t>(double(tokens.numel()) * (1.0 - test_fraction));
  const std::string name = std::filesystem::path(path).stem().string();
  try {
    corpus.train = std::make_shared<Dataset>(next_token_windows(
        tokens.slice(0, 0, split), context, context, name + " train", corpus.vocabulary));
    corpus.test = std::make_shared<Dataset>(next_token_windows(
        tokens.slice(0, split), context, context, name + " test", corpus.vocabulary));
  } catch (const Error& e) {
    throw Error(fmt::format("text corpus {} ({} characters): {}", path, text.size(), e.what()));
  }
  return corpus;
}

}  // namespace mcompress
