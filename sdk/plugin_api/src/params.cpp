#include "mcompress/sdk/params.h"

#include <fmt/format.h>

#include "mcompress/sdk/error.h"

namespace mcompress {

ParamSpec ParamSpec::Bool(std::string name, bool def, std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Bool;
  s.default_value = def;
  s.doc = std::move(doc);
  return s;
}

ParamSpec ParamSpec::Int(std::string name, std::optional<int64_t> def, std::optional<int64_t> min,
                         std::optional<int64_t> max, std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Int;
  if (def) s.default_value = *def;
  if (min) s.min = static_cast<double>(*min);
  if (max) s.max = static_cast<double>(*max);
  s.doc = std::move(doc);
  return s;
}

ParamSpec ParamSpec::Float(std::string name, std::optional<double> def, std::optional<double> min,
                           std::optional<double> max, std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Float;
  if (def) s.default_value = *def;
  s.min = min;
  s.max = max;
  s.doc = std::move(doc);
  return s;
}

ParamSpec ParamSpec::String(std::string name, std::optional<std::string> def, std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::String;
  if (def) s.default_value = *def;
  s.doc = std::move(doc);
  return s;
}

ParamSpec ParamSpec::Choice(std::string name, std::string def, std::vector<std::string> choices,
                            std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::Choice;
  s.default_value = std::move(def);
  s.choices = std::move(choices);
  s.doc = std::move(doc);
  return s;
}

ParamSpec ParamSpec::StringList(std::string name, std::vector<std::string> def, std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::StringList;
  s.default_value = std::move(def);
  s.doc = std::move(doc);
  return s;
}

const char* to_string(ParamType type) {
  switch (type) {
    case ParamType::Bool: return "bool";
    case ParamType::Int: return "int";
    case ParamType::Float: return "float";
    case ParamType::String: return "string";
    case ParamType::Choice: return "choice";
    case ParamType::StringList: return "list of strings";
  }
  return "?";
}

std::string to_string(const ParamValue& value) {
  struct Render {
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return fmt::format("{}", v); }
    std::string operator()(const std::string& v) const { return v; }
    std::string operator()(const std::vector<std::string>& v) const {
      return fmt::format("[{}]", fmt::join(v, ", "));
    }
  };
  return std::visit(Render{}, value);
}

void Params::set(const std::string& name, ParamValue value) { values_[name] = std::move(value); }

bool Params::has(const std::string& name) const { return values_.count(name) != 0; }

const ParamValue& Params::at(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw Error(fmt::format("parameter '{}' has no value", name));
  return it->second;
}

template <typename T>
static const T& typed(const ParamValue& v, const std::string& name, const char* want) {
  if (auto p = std::get_if<T>(&v)) return *p;
  throw Error(fmt::format("parameter '{}' is not a {} (value {})", name, want, to_string(v)));
}

bool Params::get_bool(const std::string& name) const { return typed<bool>(at(name), name, "bool"); }

int64_t Params::get_int(const std::string& name) const {
  return typed<int64_t>(at(name), name, "int");
}

double Params::get_float(const std::string& name) const {
  const ParamValue& v = at(name);
  if (auto i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return typed<double>(v, name, "float");
}

const std::string& Params::get_string(const std::string& name) const {
  return typed<std::string>(at(name), name, "string");
}

const std::vector<std::string>& Params::get_strings(const std::string& name) const {
  return typed<std::vector<std::string>>(at(name), name, "list of strings");
}

}  // namespace mcompress
