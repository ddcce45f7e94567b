#pragma once
// The protocol buffers wire format, encoding side only, for the few messages
// mcompress writes (ONNX models). Fields are appended in the order they are
// called; a nested message is encoded into its own ProtobufWriter first and
// appended as a length-delimited field, which is all proto2/proto3 require.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mcompress {

class ProtobufWriter {
 public:
  // Wire type 0: int32/int64/uint64/bool/enum (negative values take 10 bytes, as protobuf's int64 does).
  void varint_field(uint32_t field, int64_t value);
  // Wire type 5: float.
  void float_field(uint32_t field, float value);
  // Wire type 2: string, bytes, or an encoded message.
  void bytes_field(uint32_t field, std::string_view bytes);
  void message_field(uint32_t field, const ProtobufWriter& message) { bytes_field(field, message.bytes()); }
  // Packed repeated int64 (wire type 2 holding varints), as proto3 and
  // proto2 parsers both accept for repeated scalars.
  void packed_varints_field(uint32_t field, const std::vector<int64_t>& values);
  // Packed repeated float (wire type 2 holding 4-byte little-endian floats).
  void packed_floats_field(uint32_t field, const std::vector<float>& values);

  const std::string& bytes() const { return bytes_; }

 private:
  void tag(uint32_t field, uint32_t wire_type);
  void varint(uint64_t value);
  std::string bytes_;
};

}  // namespace mcompress
