// Internals of the gRPC transport, shared by grpc_transport.cc (the
// transport, its server and snapshot senders) and grpc_lane.cc (the per-host
// batch senders). Exposes gRPC and protobuf types: include only from
// transport/grpc_*.cc.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proto/raft.grpc.pb.h"
#include "transport/config.h"
#include "transport/transport.h"

namespace flotilla::transport {

class RemoteHost;
class RefusalLog;

// Reports each distinct target once to handler->HandleUnreachable.
void ReportUnreachable(Handler* handler, std::vector<DroppedTarget>* targets);

// One lane to one remote NodeHost: a bounded queue drained by one sender
// thread into batches on one long-lived Batches stream. Control messages and
// appends travel on separate lanes, so a heartbeat never waits behind a
// megabyte of entries (HTTP/2 interleaves the two streams' frames).
//
// Thread-safety: Push/PushMany/Stop are thread-safe; the rest runs on the
// lane's own thread.
class Lane {
 public:
  Lane(RemoteHost* host, const char* name);
  ~Lane();
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  void Start();
  // Cancels the stream, wakes and joins the sender thread.
  void Stop();

  // Queues m unless the queue is at its bound; never blocks on I/O.
  bool Push(raft::Message&& m);
  // Queues messages[indexes[i]] for each i under one lock; appends the
  // targets of those that did not fit to *dropped.
  void PushMany(std::vector<raft::Message>& messages, const size_t* indexes, size_t n,
                std::vector<DroppedTarget>* dropped);

 private:
  void Run();
  Status Connect();
  Status Pump();
  void CloseStream(bool cancel);
  // Waits `ms` (or until Stop), reporting every message queued meanwhile as
  // unreachable. Returns false when stopping.
  bool WaitBackoff(uint64_t ms);
  void DropPending(size_t from);
  bool HasRoom(size_t bytes) const;  // REQUIRES: mu_ held

  RemoteHost* const host_;
  const char* const name_;
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<raft::Message> queue_;       // guarded by mu_
  size_t queue_bytes_ = 0;                 // guarded by mu_
  bool stopping_ = false;                  // guarded by mu_
  grpc::ClientContext* active_ = nullptr;  // guarded by mu_: cancelled by Stop()

  // Owned by the sender thread.
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<wire::MessageBatch, wire::BatchAck>> stream_;
  std::vector<raft::Message> pending_;
  wire::MessageBatch batch_;
  std::vector<DroppedTarget> dropped_;
  std::string last_error_;
};

// Everything the transport keeps for one remote NodeHost.
//
// Thread-safety: thread-safe.
class RemoteHost {
 public:
  RemoteHost(std::string address, const TransportConfig& config, Handler* handler,
             std::shared_ptr<grpc::ChannelCredentials> credentials, std::string local_address,
             RefusalLog* refusals);
  void Start();
  void Stop();

  const std::string& address() const { return address_; }
  const TransportConfig& config() const { return config_; }
  Handler* handler() const { return handler_; }
  grpc::Channel* channel() const { return channel_.get(); }
  wire::Raft::Stub* stub() const { return stub_.get(); }
  const std::string& local_address() const { return local_address_; }
  RefusalLog* refusals() const { return refusals_; }
  // Forwarded proposals carry entries: they travel with the appends.
  Lane& LaneFor(raft::MessageType t) {
    return raft::IsControlMessage(t) && t != raft::MessageType::kPropose ? control_ : data_;
  }

  // Connection events from the lanes; the handler hears of the host going up
  // when its first lane connects and down when its last lane disconnects.
  void LaneUp();
  void LaneDown();

 private:
  const std::string address_;
  const TransportConfig& config_;
  Handler* const handler_;
  const std::string local_address_;
  RefusalLog* const refusals_;  // the transport's; outlives every RemoteHost
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<wire::Raft::Stub> stub_;
  std::atomic<int> lanes_up_{0};
  Lane control_;
  Lane data_;
};

}  // namespace flotilla::transport
