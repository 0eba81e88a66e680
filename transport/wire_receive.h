// The receiving side of the wire protocol without gRPC: what a peer's
// decoded protobuf messages go through before the engine sees them. The
// gRPC server calls these for every batch and snapshot stream it reads; the
// fuzzer (tests/fuzz) calls them with the bytes it makes up, so that it
// reaches the engine through the same code as a remote peer.
//
// Internal to transport/: exposes protobuf types.
// Thread-safety: as the handler.
#pragma once

#include <functional>
#include <string>

#include "flotilla/status.h"
#include "proto/raft.pb.h"
#include "transport/config.h"
#include "transport/convert.h"
#include "transport/transport.h"

namespace flotilla::transport {

// Decodes and validates one batch of a stream whose header was accepted,
// and hands its messages (if any) to handler->HandleBatch with the stream's
// `source_address`. An invalid batch is refused whole: the handler sees none
// of it, and the caller ends the stream.
Status DeliverWireBatch(wire::MessageBatch* batch, const WireLimits& limits,
                        const std::string& source_address, Handler* handler);

// Reads the next chunk of a snapshot stream into *chunk: Ok, Aborted when
// the stream ended, or another error (the transport is stopping).
using ReadChunkFn = std::function<Status(wire::SnapshotChunk* chunk)>;

// Receives one snapshot stream whose first chunk, holding the accepted
// header and the install message, is in *chunk: verifies every chunk into a
// temporary directory under config.snapshot_dir, renames it into place and
// calls handler->HandleSnapshot. On error nothing is kept and the handler is
// not called. Handler::AdmitSnapshot is asked first, before anything is
// written: its refusal (Rejected) ends the stream at once. *install receives
// the decoded install message (for logging).
Status ReceiveWireSnapshot(const TransportConfig& config, const WireLimits& limits,
                           wire::SnapshotChunk* chunk, const ReadChunkFn& read_next,
                           Handler* handler, raft::Message* install);

}  // namespace flotilla::transport
