#include "mcompress/sdk/error.h"

#include <c10/util/Exception.h>
#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <typeinfo>

namespace mcompress {

Error::Error(const std::string& message) : std::runtime_error(message) {}
Error::~Error() = default;

namespace {

std::string demangled(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> readable(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                                  std::free);
  return status == 0 && readable ? readable.get() : name;
}

}  // namespace

std::string current_exception_message() noexcept {
  try {
    try {
      throw;
    } catch (const c10::Error& e) {
      return e.what_without_backtrace();
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      const std::type_info* type = abi::__cxa_current_exception_type();
      return "an exception of type '" + (type ? demangled(type->name()) : std::string("unknown")) +
             "' (not a std::exception)";
    }
  } catch (...) {
    return "an exception whose message could not be read";
  }
}

}  // namespace mcompress
