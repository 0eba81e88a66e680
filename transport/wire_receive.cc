#include "transport/wire_receive.h"

#include <utility>
#include <vector>

#include "transport/snapshot_receiver.h"

namespace flotilla::transport {

Status DeliverWireBatch(wire::MessageBatch* batch, const WireLimits& limits,
                        const std::string& source_address, Handler* handler) {
  std::vector<raft::Message> messages;
  messages.reserve(static_cast<size_t>(batch->messages_size()));
  FLOTILLA_RETURN_IF_ERROR(BatchFromWire(batch, limits, &messages));
  if (!messages.empty()) handler->HandleBatch(std::move(messages), source_address);
  return Status::Ok();
}

Status ReceiveWireSnapshot(const TransportConfig& config, const WireLimits& limits,
                           wire::SnapshotChunk* chunk, const ReadChunkFn& read_next,
                           Handler* handler, raft::Message* install) {
  FLOTILLA_RETURN_IF_ERROR(FromWire(chunk->mutable_install(), limits, install));
  if (install->type != raft::MessageType::kInstallSnapshot) {
    return Status::InvalidArgument("a snapshot stream's first chunk holds no install message");
  }
  // Before the temporary directory exists: a stream from a sender that
  // cannot be the shard's leader costs no disk.
  FLOTILLA_RETURN_IF_ERROR(handler->AdmitSnapshot(*install, chunk->header().source_address()));
  // The receiver removes its temporary directory on every early return.
  SnapshotReceiver rx(config.snapshot_dir,
                      SnapshotReceiverLimits{config.max_snapshot_bytes, config.max_snapshot_files,
                                             config.snapshot_min_free_bytes});
  FLOTILLA_RETURN_IF_ERROR(rx.Begin(*install));
  while (true) {
    FLOTILLA_RETURN_IF_ERROR(rx.Add(ChunkFromWire(*chunk)));
    if (rx.complete()) break;
    FLOTILLA_RETURN_IF_ERROR(read_next(chunk));
  }
  Result<std::string> path = rx.Finish();
  FLOTILLA_RETURN_IF_ERROR(path.status());
  handler->HandleSnapshot(*install, std::move(path).value());
  return Status::Ok();
}

}  // namespace flotilla::transport
