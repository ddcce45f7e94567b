#include "protobuf_writer.h"

#include <cstring>

namespace mcompress {
namespace {

constexpr uint32_t kWireVarint = 0;
constexpr uint32_t kWireLengthDelimited = 2;
constexpr uint32_t kWireFixed32 = 5;

// The wire format is little-endian whatever the host is.
void append_little_endian_float(std::string& out, float value) {
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>((bits >> shift) & 0xff));
}

void append_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

}  // namespace

void ProtobufWriter::tag(uint32_t field, uint32_t wire_type) { varint((uint64_t{field} << 3) | wire_type); }

void ProtobufWriter::varint(uint64_t value) { append_varint(bytes_, value); }

void ProtobufWriter::varint_field(uint32_t field, int64_t value) {
  tag(field, kWireVarint);
  varint(static_cast<uint64_t>(value));
}

void ProtobufWriter::float_field(uint32_t field, float value) {
  tag(field, kWireFixed32);
  append_little_endian_float(bytes_, value);
}

void ProtobufWriter::bytes_field(uint32_t field, std::string_view bytes) {
  tag(field, kWireLengthDelimited);
  varint(bytes.size());
  bytes_.append(bytes.data(), bytes.size());
}

void ProtobufWriter::packed_varints_field(uint32_t field, const std::vector<int64_t>& values) {
  std::string packed;
  for (int64_t value : values) append_varint(packed, static_cast<uint64_t>(value));
  bytes_field(field, packed);
}

void ProtobufWriter::packed_floats_field(uint32_t field, const std::vector<float>& values) {
  std::string packed;
  for (float value : values) append_little_endian_float(packed, value);
  bytes_field(field, packed);
}

}  // namespace mcompress
