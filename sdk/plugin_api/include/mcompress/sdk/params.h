#pragma once
// Typed pass parameters: the schema a pass declares (ParamSpec) and the
// resolved values it receives (Params). Torch-free on purpose: the recipe
// validator and `mcompress explain` use it without LibTorch.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mcompress/sdk/export.h"

namespace mcompress {

enum class ParamType { Bool, Int, Float, String, Choice, StringList };

// Values are owned by value; no references into a recipe or a plugin survive.
using ParamValue = std::variant<bool, int64_t, double, std::string, std::vector<std::string>>;

struct MCOMPRESS_SDK_API ParamSpec {
  std::string name;
  ParamType type = ParamType::Float;
  std::optional<ParamValue> default_value;  // none: the recipe must set it
  std::optional<double> min;                // inclusive bounds for Int/Float
  std::optional<double> max;
  std::vector<std::string> choices;         // for Choice
  std::string doc;

  bool required() const { return !default_value.has_value(); }

  static ParamSpec Bool(std::string name, bool def, std::string doc);
  static ParamSpec Int(std::string name, std::optional<int64_t> def, std::optional<int64_t> min,
                       std::optional<int64_t> max, std::string doc);
  static ParamSpec Float(std::string name, std::optional<double> def, std::optional<double> min,
                         std::optional<double> max, std::string doc);
  static ParamSpec String(std::string name, std::optional<std::string> def, std::string doc);
  static ParamSpec Choice(std::string name, std::string def, std::vector<std::string> choices,
                          std::string doc);
  static ParamSpec StringList(std::string name, std::vector<std::string> def, std::string doc);
};
// Layout frozen for SDK 1.x (version.h): held in vectors the host reads.
static_assert(sizeof(ParamSpec) == 176, "ParamSpec's layout is frozen for SDK 1.x");

MCOMPRESS_SDK_API const char* to_string(ParamType type);
// Recipe-style rendering: 0.5, true, "text", [a, b].
MCOMPRESS_SDK_API std::string to_string(const ParamValue& value);

// Resolved parameters of one stage: every declared parameter has a value
// (recipe value or default) and the type its spec declares. Getters throw
// mcompress::Error naming the parameter when it is missing or mistyped.
class MCOMPRESS_SDK_API Params {
 public:
  void set(const std::string& name, ParamValue value);
  bool has(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;  // also accepts Int values
  const std::string& get_string(const std::string& name) const;
  const std::vector<std::string>& get_strings(const std::string& name) const;
  const std::map<std::string, ParamValue>& values() const { return values_; }

 private:
  const ParamValue& at(const std::string& name) const;
  std::map<std::string, ParamValue> values_;
};

}  // namespace mcompress
