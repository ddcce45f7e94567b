// Another library's error type, unrelated to std::exception.
#include <string>

struct ForeignError {
  std::string reason;
};

__attribute__((visibility("default"))) void throw_foreign_error() {
  throw ForeignError{"a foreign library gave up"};
}
