// Checks and errors of the native core.
//
// Every kernel validates its shapes before touching memory and reports a violated
// precondition as ft::Error, whose message names the file and line, what was wrong, and a hint
// for the caller. The kernels know nothing about Node: src/addon.cpp is the single boundary
// where ft::Error (and any other C++ exception, i.e. a bug) becomes a JS Error.
//
//   FT_CHECK(n % 2 == 0, "n is ", n, ", expected an even count");
//
// The file names are relative (native/src/...) because CMake maps the source directory
// prefix away (-fmacro-prefix-map), so messages do not depend on where the checkout lives.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ft {

/** A violated precondition of a kernel: the caller passed something it must not. */
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <typename... Parts>
[[noreturn]] void fail(const char* file, int line, const Parts&... parts) {
  std::ostringstream out;
  out << file << ":" << line << ": ";
  (out << ... << parts);
  throw Error(out.str());
}
}  // namespace detail

}  // namespace ft

#define FT_CHECK(cond, ...)                                       \
  do {                                                            \
    if (!(cond)) ::ft::detail::fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
