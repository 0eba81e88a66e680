// How a failed write of the nodehost client ends in a lincheck history,
// shared by the daemon's lincheck test and the nemesis test.
#pragma once

#include "tests/lincheck/lincheck.h"
#include "tools/nodehost/client.h"

namespace flotilla::nodehost::testing {

// A write that failed before anything was proposed has no effect; any other
// failure of a write leaves its outcome unknown.
inline lincheck::Outcome WriteFailure(const CallInfo& info) {
  const grpc::StatusCode c = info.status.error_code();
  if (info.retry_safe || info.unreachable || c == grpc::StatusCode::FAILED_PRECONDITION ||
      c == grpc::StatusCode::INVALID_ARGUMENT || c == grpc::StatusCode::RESOURCE_EXHAUSTED)
    return lincheck::Outcome::kFailed;
  return lincheck::Outcome::kUnknown;
}

}  // namespace flotilla::nodehost::testing
