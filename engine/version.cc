#include "flotilla/version.h"

namespace flotilla {

std::string_view Version() { return kHeaderVersion; }

}  // namespace flotilla
