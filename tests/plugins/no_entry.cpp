// A valid shared library that is not an mcompress plugin.
extern "C" __attribute__((visibility("default"))) int some_other_library_function() { return 42; }
