// The gRPC transport between NodeHosts. See docs/transport.md for the design:
// one server per NodeHost; per remote NodeHost one channel carrying two
// long-lived batch streams (control and data lanes, each with its own bounded
// queue and sender thread) and, on demand, one stream per snapshot.
//
// This header exposes no gRPC or protobuf type; the implementation lives in
// grpc_transport.cc.
#pragma once

#include <memory>

#include "transport/config.h"
#include "transport/transport.h"

namespace flotilla::transport {

// Returns a transport that listens on config.listen_address once started.
// `registry` and `handler` must outlive it.
std::unique_ptr<Transport> NewGrpcTransport(TransportConfig config, Registry* registry,
                                            Handler* handler);

}  // namespace flotilla::transport
