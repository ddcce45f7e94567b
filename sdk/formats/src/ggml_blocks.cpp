#include "mcompress/formats/ggml_blocks.h"

#include <c10/util/Half.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "mcompress/sdk/error.h"

namespace mcompress {
namespace {

constexpr int64_t kBlock = 32;

void check_count(int64_t count, const char* type) {
  if (count % kBlock != 0)
    throw Error(fmt::format("{} quantizes blocks of {} values; {} values are not a whole number of blocks", type,
                            kBlock, count));
}

void append_half(uint16_t bits, std::string& out) {
  out.push_back(static_cast<char>(bits & 0xff));
  out.push_back(static_cast<char>(bits >> 8));
}

}  // namespace

uint16_t float_to_half_bits(float value) { return c10::Half(value).x; }

void append_q8_0_blocks(const float* values, int64_t count, std::string& out) {
  check_count(count, "Q8_0");
  out.reserve(out.size() + static_cast<size_t>(count / kBlock * (2 + kBlock)));
  for (int64_t block = 0; block < count; block += kBlock) {
    const float* x = values + block;
    float amax = 0.0f;
    for (int64_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
    // The reference's float arithmetic, step by step, so codes match it bit for bit.
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    append_half(float_to_half_bits(d), out);
    for (int64_t j = 0; j < kBlock; ++j) {
      const float scaled = x[j] * id;
      out.push_back(static_cast<char>(static_cast<int8_t>(std::round(scaled))));
    }
  }
}

void append_q4_0_blocks(const float* values, int64_t count, std::string& out) {
  check_count(count, "Q4_0");
  out.reserve(out.size() + static_cast<size_t>(count / kBlock * (2 + kBlock / 2)));
  for (int64_t block = 0; block < count; block += kBlock) {
    const float* x = values + block;
    float amax = 0.0f;
    float max = 0.0f;  // the value of largest magnitude, with its sign (the first of equals)
    for (int64_t j = 0; j < kBlock; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    append_half(float_to_half_bits(d), out);
    for (int64_t j = 0; j < kBlock / 2; ++j) {
      const float low = x[j] * id + 8.5f;
      const float high = x[j + kBlock / 2] * id + 8.5f;
      // (int8_t) truncates toward zero as the reference's cast does; at most 15.
      const auto low_code = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(low)));
      const auto high_code = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(high)));
      out.push_back(static_cast<char>(low_code | (high_code << 4)));
    }
  }
}

}  // namespace mcompress
