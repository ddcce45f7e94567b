#pragma once
// Character-level text corpora for language models: Tiny Shakespeare or any
// plain-text file, cut into next-token windows (language_model.h).
#include <cstdint>
#include <string>

#include "mcompress/sdk/data.h"
#include "mcompress/models/language_model.h"

namespace mcompress {

struct TextCorpus {
  CharVocabulary vocabulary;  // the distinct bytes of the whole file
  DatasetPtr train;           // windows of the first (1 − test_fraction) of the file
  DatasetPtr test;            // windows of the rest, never trained on
};

// Reads `path` and cuts both splits into non-overlapping windows of `context`
// tokens (each with its next-token targets). The vocabulary comes from the
// whole file so that both splits and every model use the same ids. Throws
// mcompress::Error naming the file when it is missing, unreadable or too short.
MCOMPRESS_SDK_API TextCorpus load_text_corpus(const std::string& path, int64_t context, double test_fraction);

}  // namespace mcompress
