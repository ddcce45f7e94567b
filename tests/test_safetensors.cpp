// sdk/safetensors.h: what the writer writes, the reader reads back, and
// malformed files are refused with an error that says what is wrong.
#include "mcompress/formats/safetensors.h"

#include <gtest/gtest.h>

#include <sstream>

#include "mcompress/sdk/error.h"
#include "test_support.h"

namespace mcompress {
namespace {

std::string written(const std::vector<SafetensorsEntry>& entries, const std::map<std::string, std::string>& metadata = {}) {
  std::ostringstream out;
  write_safetensors(out, entries, metadata);
  return out.str();
}

std::string error_of(std::string_view bytes) {
  try {
    parse_safetensors(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A file of the given (unpadded) JSON header and data section.
std::string with_header(const std::string& json, const std::string& data) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((uint64_t(json.size()) >> (8 * i)) & 0xff);
  return bytes + json + data;
}

TEST(Safetensors, WhatIsWrittenReadsBackThroughAFile) {
  testing::TempDir tmp("safetensors");
  const auto path = tmp.path() / "model.safetensors";
  const auto weight = torch::arange(6, torch::kFloat).reshape({2, 3});
  const auto packed = torch::tensor({-1, 7}, torch::kInt);
  write_safetensors(path, {{"w", weight, ""}, {"q", packed, "U32"}, {"ids", torch::tensor({int64_t(3)}), ""}},
                    {{"format", "mlx"}});
  const auto contents = read_safetensors(path);
  ASSERT_EQ(contents.entries.size(), 3u);
  EXPECT_EQ(contents.entries[0].name, "w");
  EXPECT_EQ(contents.entries[0].dtype, "F32");
  EXPECT_TRUE(contents.entries[0].tensor.equal(weight));
  EXPECT_EQ(contents.entries[1].dtype, "U32");
  EXPECT_TRUE(contents.entries[1].tensor.equal(packed));  // same bits in LibTorch's int32
  EXPECT_EQ(contents.entries[2].tensor.scalar_type(), torch::kLong);
  EXPECT_EQ(contents.metadata.at("format"), "mlx");
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "model.safetensors.tmp"));
}

TEST(Safetensors, MalformedFilesSayWhatIsWrong) {
  EXPECT_NE(error_of("abc").find("too few"), std::string::npos);
  EXPECT_NE(error_of(with_header("{", "")).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10)).find("header length"), std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", "x"))
                .find("unknown or unsupported dtype"),
            std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd"))
                .find("needs 8 bytes"),
            std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcdefgh"))
                .find("data section has 8"),
            std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                 R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                                 "abc"))
                .find("overlapping"),
            std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"m":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}})", "\x02"))
                .find("other than 0 and 1"),
            std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"w":{"dtype":"U8","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", ""))
                .find("too large"),
            std::string::npos);
}

TEST(Safetensors, TheWriterRefusesWhatTheFormatCannotHold) {
  const auto t = torch::zeros({1});
  EXPECT_THROW(written({{"__metadata__", t, ""}}), Error);
  EXPECT_THROW(written({{"w", t, ""}, {"w", t, ""}}), Error);
  EXPECT_THROW(written({{"w", t, "F16"}}), Error);
  EXPECT_THROW(written({{std::string("\xff", 1), t, ""}}), Error);
}

}  // namespace
}  // namespace mcompress
