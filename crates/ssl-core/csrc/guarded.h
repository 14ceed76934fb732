// How every entry point of the C++ layer reports failure (kernels.cpp, distributed.cpp): it
// catches every C++ exception and returns the message as a heap string the Rust side frees with
// `ssl_free_error`; null means success. c10 errors carry a C++ backtrace after the message; only
// the message is returned.
#pragma once
#include <c10/util/Exception.h>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ssl {

inline char *error_string(const std::string &msg) {
  char *s = static_cast<char *>(std::malloc(msg.size() + 1));
  std::memcpy(s, msg.c_str(), msg.size() + 1);
  return s;
}

template <typename F> char *guarded(F f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error &e) {
    return error_string(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return error_string(e.what());
  } catch (...) {
    return error_string("unknown C++ exception");
  }
}

}  // namespace ssl
