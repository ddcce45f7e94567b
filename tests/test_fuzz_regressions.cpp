// Inputs the fuzzers (fuzz/, scripts/fuzz.sh) found problems with, kept as
// ordinary tests: each must now be answered with the error it deserves. Every
// seed of every fuzz corpus is replayed too, so the corpus cannot rot.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "../fuzz/fuzz_catalog.h"
#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/framework/recipe/recipe.h"
#include "mcompress/framework/sweep/sweep.h"
#include "mcompress/sdk/error.h"
#include "mcompress/formats/safetensors.h"
#include "mcompress/formats/tokenizer.h"
#include "test_support.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

const fs::path kCorpus = fs::path(MCOMPRESS_SOURCE_DIR) / "fuzz" / "corpus";

std::string corpus_file(const std::string& target, const std::string& name) {
  const auto path = kCorpus / target / name;
  EXPECT_TRUE(fs::is_regular_file(path)) << path;
  return testing::read_text(path);
}

std::vector<fs::path> corpus_of(const std::string& target) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(kCorpus / target)) files.push_back(entry.path());
  EXPECT_FALSE(files.empty()) << target;
  return files;
}

// `--set` lines of a recipe seed, as fuzz_recipe.cpp reads them.
std::vector<std::string> override_lines(const std::string& text) {
  std::vector<std::string> overrides;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("#set ", 0) == 0) overrides.push_back(line.substr(5));
  return overrides;
}

// The diagnostics of a recipe, or "" when it is valid.
std::string recipe_errors(const std::string& text, const std::vector<std::string>& overrides = {}) {
  static const fuzz::FuzzCatalog catalog;
  try {
    const auto recipe = parse_recipe(text, "/nonexistent/mcompress-fuzz/recipe.yaml", overrides, catalog);
    (void)to_json(recipe).dump();
    (void)describe_plan(recipe, catalog);
    return "";
  } catch (const RecipeError& e) {
    EXPECT_FALSE(e.diagnostics().empty());
    return e.what();
  }
}

std::string sweep_errors(const std::string& text) {
  try {
    for (const auto& candidate : parse_sweep(text, "/nonexistent/mcompress-fuzz/sweep.yaml").candidates)
      (void)candidate.directory();
    return "";
  } catch (const RecipeError& e) {
    EXPECT_FALSE(e.diagnostics().empty());
    return e.what();
  }
}

template <typename Read>
std::string error_of(Read read) {
  try {
    read();
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

// ---- every seed ------------------------------------------------------------------

TEST(FuzzCorpus, RecipeSeedsAreAnsweredWithARecipeOrDiagnostics) {
  for (const auto& path : corpus_of("recipe")) {
    const auto text = testing::read_text(path);
    EXPECT_NO_THROW(recipe_errors(text, override_lines(text))) << path;
  }
}

TEST(FuzzCorpus, SweepSeedsAreAnsweredWithASweepOrDiagnostics) {
  for (const auto& path : corpus_of("sweep")) EXPECT_NO_THROW(sweep_errors(testing::read_text(path))) << path;
}

TEST(FuzzCorpus, IdxSeedsAreReadOrRefusedWithAnError) {
  for (const auto& path : corpus_of("idx")) {
    const auto bytes = testing::read_text(path);
    EXPECT_NO_THROW(error_of([&] { read_fashion_mnist_images(bytes, path.string()); })) << path;
    EXPECT_NO_THROW(error_of([&] { read_fashion_mnist_labels(bytes, path.string()); })) << path;
  }
}

// Every tokenizer seed is a tokenizer.json that reads, NUL, then a text.
TEST(FuzzCorpus, TokenizerSeedsReadEncodeAndDecode) {
  for (const auto& path : corpus_of("tokenizer")) {
    const std::string input = testing::read_text(path);
    const size_t split = input.find('\0');
    ASSERT_NE(split, std::string::npos) << path;
    const auto tokenizer = Tokenizer::from_json(input.substr(0, split), "", path.string());
    const auto ids = tokenizer.encode(input.substr(split + 1), true);
    EXPECT_FALSE(ids.empty()) << path;
    for (int64_t id : ids) EXPECT_LT(id, tokenizer.vocab_size()) << path;
    EXPECT_NO_THROW(tokenizer.decode(ids)) << path;
  }
}

TEST(FuzzCorpus, SafetensorsSeedsRoundTrip) {
  for (const auto& path : corpus_of("safetensors")) {
    SafetensorsContents contents;
    if (!error_of([&] { contents = parse_safetensors(testing::read_text(path)); }).empty()) continue;
    std::ostringstream out;
    write_safetensors(out, contents.entries, contents.metadata);
    const auto again = parse_safetensors(out.str());
    EXPECT_EQ(again.metadata, contents.metadata) << path;
    ASSERT_EQ(again.entries.size(), contents.entries.size()) << path;
    for (size_t i = 0; i < again.entries.size(); ++i) {
      EXPECT_EQ(again.entries[i].name, contents.entries[i].name) << path;
      EXPECT_EQ(again.entries[i].dtype, contents.entries[i].dtype) << path;
      EXPECT_TRUE(again.entries[i].tensor.equal(contents.entries[i].tensor)) << path;
    }
  }
}

TEST(FuzzCorpus, ValidSeedsStayValid) {
  EXPECT_EQ(recipe_errors(corpus_file("recipe", "overrides.yaml"),
                          override_lines(corpus_file("recipe", "overrides.yaml"))),
            "");
  EXPECT_EQ(read_fashion_mnist_images(corpus_file("idx", "images-2.idx.gz"), "images").values.size(0), 2);
  EXPECT_EQ(read_fashion_mnist_labels(corpus_file("idx", "labels-two-members.idx.gz"), "labels").values.size(0), 4);
  EXPECT_EQ(parse_safetensors(corpus_file("safetensors", "mixed.safetensors")).entries.size(), 7u);
}

// ---- findings --------------------------------------------------------------------

// fuzz_recipe, first seed: Checker::read_fields kept a reference to the key
// of a yaml-cpp iterator's temporary, read after it was destroyed (ASan:
// stack-use-after-scope), for every mapping of every recipe.
TEST(FuzzFindings, MappingKeysAreCopiedOutOfTheIterator) {
  const auto text = corpus_file("recipe", "overrides.yaml");
  EXPECT_EQ(recipe_errors(text, override_lines(text)), "");
  const auto unknown = recipe_errors("mcompress: 1\nmodel: {zoo: cnn, colour: red}\nstages: [{pass: magnitude_prune}]\n");
  EXPECT_NE(unknown.find("unknown key `colour` in `model`"), std::string::npos) << unknown;
}

// fuzz_sweep, regression-grid-values-iterator.yaml: SweepReader::read_grid
// iterated the values of a grid axis through the same kind of dangling
// reference (stack-use-after-scope), for every sweep with a grid.
TEST(FuzzFindings, GridValuesAreReadFromAStableNode) {
  testing::TempDir tmp("fuzz-grid");
  testing::write_text(tmp.path() / "recipe.yaml", "mcompress: 1\n");
  const auto sweep = parse_sweep(corpus_file("sweep", "regression-grid-values-iterator.yaml"),
                                 (tmp.path() / "sweep.yaml").string());
  ASSERT_EQ(sweep.candidates.size(), 4u);
  EXPECT_EQ(sweep.candidates[0].overrides,
            (std::vector<std::string>{"stages.prune.params.sparsity=0.3", "stages.prune.pass=magnitude_prune"}));
  EXPECT_EQ(sweep.candidates[3].overrides,
            (std::vector<std::string>{"stages.prune.params.sparsity=0.5", "stages.prune.pass={a: b}"}));
}

// fuzz_params, regression-invalid-utf8.bin: a value that is not UTF-8 was
// accepted, and writing the run record (nlohmann::json::dump) then threw
// json::type_error, which nothing expects.
TEST(FuzzFindings, ValuesThatAreNotUtf8AreRefusedWhereTheyAreWritten) {
  const std::string recipe = "mcompress: 1\nname: run\xa9\nmodel: {zoo: cnn}\nstages: [{pass: magnitude_prune}]\n";
  const auto errors = recipe_errors(recipe);
  EXPECT_NE(errors.find("recipe.yaml:2:7: error: this value is not valid UTF-8"), std::string::npos) << errors;
  const auto in_override =
      recipe_errors("mcompress: 1\nmodel: {zoo: cnn}\nstages: [{pass: magnitude_prune}]\n",
                    {"stages.0.params.ignore=[fc\xff]"});
  EXPECT_NE(in_override.find("not valid UTF-8"), std::string::npos) << in_override;
}

// fuzz_params, regression-utf32-override.bin: an override value starting
// with zero bytes is decoded by yaml-cpp as UTF-32, and a code point above
// U+10FFFF comes out as bytes that are not UTF-8; the tree is checked after
// decoding, not only the raw text.
TEST(FuzzFindings, Utf32DecodedValuesAreCheckedToo) {
  const std::string utf32_value("\x00\x00\x00\x2d\x00\x11\x00\x00", 8);
  const auto errors = recipe_errors("mcompress: 1\nmodel: {zoo: cnn}\nstages: [{pass: activation_prune}]\n",
                                    {"stages.0.params.note=" + utf32_value});
  EXPECT_NE(errors.find("not valid UTF-8"), std::string::npos) << errors;
}

// fuzz_recipe (CI): a path longer than the system can look up made
// std::filesystem::is_directory throw filesystem_error ("File name too long")
// out of the checker. Every path field now reports it as not found.
TEST(FuzzFindings, PathsTooLongToLookUpAreReportedAsNotFound) {
  const std::string name(4100, 'a');
  struct Case {
    std::string body;
    std::string expected;
  };
  const std::vector<Case> cases{
      {"model: {hf: " + name + "}\n", "checkpoint directory `aaa"},
      {"model: {path: " + name + "}\n", "model file `aaa"},
      {"model: {zoo: cnn}\ndata: {dataset: text, tokenizer_vocab: 300, path: [" + name + "]}\n", "text file `aaa"},
      {"model: {zoo: cnn}\ndata: {dataset: text, path: a.txt, tokenizer: " + name + "}\n", "no tokenizer.json in"},
      {"model: {zoo: cnn}\ndata: {dataset: fashion_mnist, path: " + name + "}\n", "Fashion-MNIST is not in"},
  };
  for (const auto& [body, expected] : cases) {
    std::string errors;
    EXPECT_NO_THROW(errors = recipe_errors("mcompress: 1\n" + body + "stages: [{pass: magnitude_prune}]\n")) << expected;
    EXPECT_NE(errors.find(expected), std::string::npos) << errors.substr(0, 300);
  }
  std::string errors;
  EXPECT_NO_THROW(errors = sweep_errors("mcompress_sweep: 1\nbase: " + name + "\ncandidates: [{name: x}]\n"));
  EXPECT_NE(errors.find("not found"), std::string::npos) << errors.substr(0, 300);
}

// Found while fixing the above: an alias cycle or alias bomb is refused
// before anything walks the tree (yaml-cpp lets `&a [*a]` contain itself).
TEST(FuzzFindings, AliasCyclesAndBombsAreRefused) {
  const auto cycle = recipe_errors("mcompress: 1\nmodel: {zoo: cnn}\nstages: &a [*a]\n");
  EXPECT_NE(cycle.find("too large"), std::string::npos) << cycle;
  std::string bomb = "mcompress: 1\nmodel: {zoo: cnn}\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 8; ++i)
    bomb += fmt::format("a{}: &a{} [*a{}, *a{}, *a{}, *a{}, *a{}, *a{}, *a{}, *a{}, *a{}, *a{}]\n", i, i, i - 1, i - 1,
                        i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
  const auto errors = recipe_errors(bomb + "stages: [{pass: magnitude_prune}]\n");
  EXPECT_NE(errors.find("too large"), std::string::npos) << errors;
  testing::TempDir tmp("fuzz-cycle");
  testing::write_text(tmp.path() / "recipe.yaml", "mcompress: 1\n");
  EXPECT_NE(sweep_errors("mcompress_sweep: 1\nbase: recipe.yaml\ncandidates: [{name: x, stages: &s [*s]}]\n")
                .find("too large"),
            std::string::npos);
}

// fuzz_tokenizer (CI): an added token's flag holding a number
// (`"single_word": 4`) made nlohmann::json throw type_error out of
// Tokenizer::from_json, which nothing expects. Flags are checked, and a
// field of any other section with the wrong JSON type is an Error that names
// the file.
TEST(FuzzFindings, TokenizerFieldsOfTheWrongJsonTypeAreErrorsThatNameTheFile) {
  const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []})";
  const std::string flag = error_of([&] {
    Tokenizer::from_json("{" + model + R"(, "added_tokens": [{"id": 0, "content": "<unk>", "single_word": 4}]})", "",
                         "flag.json");
  });
  EXPECT_NE(flag.find("flag.json: added_tokens[0].single_word must be true or false"), std::string::npos) << flag;
  const std::string field = error_of([&] {
    Tokenizer::from_json("{" + model + R"(, "decoder": {"type": "Strip", "content": " ", "start": "one"}})", "",
                         "field.json");
  });
  EXPECT_NE(field.find("field.json: a field holds the wrong kind of JSON value"), std::string::npos) << field;
}

}  // namespace
}  // namespace mcompress
