// The version of Flotilla: the headers' at compile time, the library's at run
// time. The top-level CMakeLists.txt reads the three numbers below, so this
// file is the one place a release changes them.
//
// Compatibility: within a major version (from 1.0 on) the public API in
// include/flotilla/ only grows; before 1.0 a minor version may change it, and
// every such change is listed in docs/nodehost.md. The shared library's
// SOVERSION is the major and minor version before 1.0, the major after.
#pragma once

#include <string_view>

#define FLOTILLA_VERSION_MAJOR 0
#define FLOTILLA_VERSION_MINOR 2
#define FLOTILLA_VERSION_PATCH 0

#define FLOTILLA_VERSION_STRINGIFY_(x) #x
#define FLOTILLA_VERSION_STRINGIFY(x) FLOTILLA_VERSION_STRINGIFY_(x)
#define FLOTILLA_VERSION_STRING                                                          \
  FLOTILLA_VERSION_STRINGIFY(FLOTILLA_VERSION_MAJOR)                                     \
  "." FLOTILLA_VERSION_STRINGIFY(FLOTILLA_VERSION_MINOR) "." FLOTILLA_VERSION_STRINGIFY( \
      FLOTILLA_VERSION_PATCH)

namespace flotilla {

// The version of the headers this code was compiled against, "0.2.0".
inline constexpr std::string_view kHeaderVersion = FLOTILLA_VERSION_STRING;

// The version of the library linked into the program, which differs from
// kHeaderVersion when a program built against one release runs with the
// shared library of another.
std::string_view Version();

}  // namespace flotilla
