// The gRPC transport: server, per-host lanes (grpc_lane.cc) and snapshot
// streams.
#include "transport/grpc_transport.h"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

#include "engine/log/log.h"
#include "transport/batch_streams.h"
#include "transport/convert.h"
#include "transport/grpc_internal.h"
#include "transport/peer_auth.h"
#include "transport/snapshot_chunker.h"
#include "transport/snapshot_receiver.h"
#include "transport/wire_receive.h"

namespace flotilla::transport {
namespace {

Result<std::string> ReadPem(const std::string& what, const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("tls." + what + " is not set");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument("cannot read tls." + what + " " + path);
  std::string data;
  in.seekg(0, std::ios::end);
  data.resize(static_cast<size_t>(in.tellg()));
  in.seekg(0);
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  return data;
}

// Removes temporary directories that a crash left behind.
void RemoveStaleTemporaries(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().filename().string().rfind("tmp-", 0) == 0) {
      std::filesystem::remove_all(e.path(), ec);
    }
  }
}

class GrpcTransport;

// The server side: one Batches stream per remote lane, served by a callback
// reactor (BatchReactor), and one Snapshot stream per incoming snapshot on a
// gRPC sync-server thread.
//
// Thread-safety: thread-safe (gRPC calls it concurrently).
class RaftService final : public wire::Raft::WithCallbackMethod_Batches<wire::Raft::Service> {
 public:
  explicit RaftService(GrpcTransport* t) : t_(t) {}
  grpc::ServerBidiReactor<wire::MessageBatch, wire::BatchAck>* Batches(
      grpc::CallbackServerContext* ctx) override;
  grpc::Status Snapshot(grpc::ServerContext* ctx, grpc::ServerReader<wire::SnapshotChunk>* reader,
                        wire::SnapshotResult* result) override;

 private:
  grpc::Status ReceiveSnapshot(grpc::ServerContext* ctx,
                               grpc::ServerReader<wire::SnapshotChunk>* reader,
                               const ServerChallenge& challenge, SnapshotStreamSlots::Slot* slot,
                               wire::SnapshotChunk* chunk);
  GrpcTransport* const t_;
};

// Thread-safety: as Transport.
class GrpcTransport final : public Transport {
 public:
  GrpcTransport(TransportConfig config, Registry* registry, Handler* handler)
      : config_(std::move(config)),
        limits_(LimitsFrom(config_)),
        registry_(registry),
        handler_(handler) {}
  ~GrpcTransport() override { Stop(); }

  Status Start() override;
  void Stop() override;
  std::string address() const override { return address_; }
  bool Send(raft::Message&& m) override;
  void SendBatch(std::vector<raft::Message>& messages,
                 std::vector<DroppedTarget>* dropped) override;
  Status SendSnapshot(SnapshotJob job) override;

  const TransportConfig& config() const { return config_; }
  const WireLimits& limits() const { return limits_; }
  Handler* handler() const { return handler_; }
  bool running() const { return running_.load(std::memory_order_relaxed); }
  // Set by Start() before the server runs; its streams use it until Stop().
  RefusalLog* refusals() const { return refusals_.get(); }
  SnapshotStreamSlots* receive_slots() const { return receive_slots_.get(); }
  BatchStreamBudget* batch_budget() const { return batch_budget_.get(); }
  SnapshotStreamStats SnapshotReceiveStats() const override {
    return receive_slots_ ? receive_slots_->Stats() : SnapshotStreamStats{};
  }

 private:
  struct PendingSnapshot {
    RemoteHost* host;
    SnapshotJob job;
  };

  Status BuildCredentials();
  Status StartServer();
  RemoteHost* HostFor(const std::string& address);
  void SnapshotWorker();
  bool StreamSnapshot(RemoteHost* host, SnapshotJob& job);

  const TransportConfig config_;
  const WireLimits limits_;
  Registry* const registry_;
  Handler* const handler_;
  // A gRPC service can be registered with one server only, ever: a new one
  // per Start() lets a stopped transport start again.
  std::unique_ptr<RaftService> service_;
  std::shared_ptr<grpc::ServerCredentials> server_credentials_;
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials_;
  // Shared with the dialer's certificate verifier, which may outlive Stop().
  std::shared_ptr<RefusalLog> refusals_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::atomic<bool> running_{false};
  std::unique_ptr<SnapshotStreamSlots> receive_slots_;
  std::unique_ptr<BatchStreamBudget> batch_budget_;

  std::shared_mutex hosts_mu_;
  std::unordered_map<std::string, std::unique_ptr<RemoteHost>> hosts_;  // guarded by hosts_mu_

  std::mutex snap_mu_;
  std::condition_variable snap_cv_;
  std::deque<PendingSnapshot> snap_queue_;                // guarded by snap_mu_
  std::unordered_set<grpc::ClientContext*> snap_active_;  // guarded by snap_mu_
  bool snap_stopping_ = false;                            // guarded by snap_mu_
  std::vector<std::thread> snap_workers_;
};

// One incoming Batches stream. A batch is converted and handed to the engine
// on the gRPC thread that completed its read, which then starts the next
// read: no thread waits in a blocking Read, so a batch costs no hand-off
// between threads (the sync API woke a server thread for every batch).
//
// Thread-safety: gRPC runs at most one of its reactions at a time (one read
// or write is outstanding at once).
class BatchReactor final : public grpc::ServerBidiReactor<wire::MessageBatch, wire::BatchAck> {
 public:
  BatchReactor(GrpcTransport* t, grpc::CallbackServerContext* ctx) : t_(t), ctx_(ctx) {
    // An unauthenticated peer is refused before anything it sends is read;
    // the challenge goes out before the first read (the dialer waits for it).
    grpc::Status st = CheckIncomingPeer(t_->config(), ctx_, t_->refusals(), &challenge_);
    if (st.ok()) {
      StartSendInitialMetadata();
      StartRead(&batch_);
    } else {
      Finish(st);
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::OK);  // the peer closed, or the call was cancelled
    if (!accepted_) return Accept();
    if (!t_->running()) return Finish(grpc::Status::OK);
    // Counted as sent (the protobuf size: no copy, one pass over the
    // batch's fields) against the peer's bytes in flight until the engine
    // has it. Over the bound the batch is dropped, and the stream ended so
    // that its sender backs off before it reconnects.
    const uint64_t bytes = batch_.ByteSizeLong();
    StreamRefusal why = StreamRefusal::kCount;
    if (Status s = stream_->Take(bytes, &why); !s.ok()) {
      t_->refusals()->Refused(why, stream_->peer(), s.message());
      return Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, s.message()));
    }
    Status s = DeliverWireBatch(&batch_, t_->limits(), source_, t_->handler());
    stream_->Release(bytes);
    if (!s.ok()) {
      Log().error("transport: rejected a batch from {} ({}): {}", EscapeForLog(source_),
                  ctx_->peer(), s.ToString());
      return Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "batch rejected: " + s.message()));
    }
    StartRead(&batch_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "peer left"));
    StartRead(&batch_);
  }

  void OnDone() override { delete this; }

 private:
  // The first message carries only the header: check it and acknowledge.
  void Accept() {
    if (Status s = CheckHeader(batch_.header(), t_->config().deployment_id); !s.ok()) {
      t_->refusals()->Refused(StreamRefusal::kDeploymentId, PeerHost(*ctx_),
                              "batch stream: " + s.message());
      return Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, s.message()));
    }
    if (grpc::Status st = CheckPeerProof(t_->config(), challenge_, batch_.header().secret_proof(),
                                         PeerHost(*ctx_), t_->refusals());
        !st.ok()) {
      return Finish(st);
    }
    source_ = batch_.header().source_address();
    const std::string peer = PeerIdentity(t_->config(), *ctx_, source_);
    StreamRefusal why = StreamRefusal::kCount;
    Result<std::unique_ptr<BatchStreamBudget::Stream>> stream =
        t_->batch_budget()->Open(peer, &why);
    if (!stream.ok()) {
      t_->refusals()->Refused(why, peer, stream.status().message());
      return Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, stream.status().message()));
    }
    stream_ = std::move(stream).value();
    accepted_ = true;
    ack_.set_accepted(true);
    StartWrite(&ack_);
  }

  GrpcTransport* const t_;
  grpc::CallbackServerContext* const ctx_;
  wire::MessageBatch batch_;
  wire::BatchAck ack_;
  bool accepted_ = false;
  std::string source_;
  ServerChallenge challenge_;
  std::unique_ptr<BatchStreamBudget::Stream> stream_;  // set once accepted
};

grpc::ServerBidiReactor<wire::MessageBatch, wire::BatchAck>* RaftService::Batches(
    grpc::CallbackServerContext* ctx) {
  return new BatchReactor(t_, ctx);
}

grpc::Status RaftService::Snapshot(grpc::ServerContext* ctx,
                                   grpc::ServerReader<wire::SnapshotChunk>* reader,
                                   wire::SnapshotResult* result) {
  // An unauthenticated peer never takes a receive slot.
  ServerChallenge challenge;
  if (grpc::Status st = CheckIncomingPeer(t_->config(), ctx, t_->refusals(), &challenge);
      !st.ok()) {
    result->set_error(st.error_message());
    return st;
  }
  // Bounded concurrency: a sender that finds the receiver busy retries later.
  // The slot's deadlines cancel a stream that stalls, which ends its read.
  Result<std::unique_ptr<SnapshotStreamSlots::Slot>> slot =
      t_->receive_slots()->Acquire([ctx] { ctx->TryCancel(); });
  if (!slot.ok()) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, slot.status().message());
  }
  wire::SnapshotChunk chunk;
  grpc::Status st = ReceiveSnapshot(ctx, reader, challenge, slot->get(), &chunk);
  result->set_ok(st.ok());
  if (!st.ok()) result->set_error(st.error_message());
  return st;
}

grpc::Status RaftService::ReceiveSnapshot(grpc::ServerContext* ctx,
                                          grpc::ServerReader<wire::SnapshotChunk>* reader,
                                          const ServerChallenge& challenge,
                                          SnapshotStreamSlots::Slot* slot,
                                          wire::SnapshotChunk* chunk) {
  // The challenge goes out before the first read (the dialer waits for it).
  reader->SendInitialMetadata();
  if (!reader->Read(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "no header");
  const TransportConfig& c = t_->config();
  if (Status s = CheckHeader(chunk->header(), c.deployment_id); !s.ok()) {
    t_->refusals()->Refused(StreamRefusal::kDeploymentId, PeerHost(*ctx),
                            "snapshot stream: " + s.message());
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, s.message());
  }
  if (grpc::Status st = CheckPeerProof(c, challenge, chunk->header().secret_proof(), PeerHost(*ctx),
                                       t_->refusals());
      !st.ok()) {
    return st;
  }
  const std::string peer = PeerIdentity(c, *ctx, chunk->header().source_address());
  if (Status s = slot->SetPeer(peer); !s.ok()) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, s.message());
  }
  raft::Message install;
  // Every chunk is counted against the stream's quota before it is added.
  Status s = slot->Received(chunk->data().size());
  if (s.ok()) {
    s = ReceiveWireSnapshot(
        c, t_->limits(), chunk,
        [&](wire::SnapshotChunk* next) {
          if (!reader->Read(next)) {
            // A deadline ended the stream (its reason), or the peer left.
            Status r = slot->Received(0);
            return r.ok() ? Status::Aborted("stream ended before the last chunk") : r;
          }
          if (!t_->running()) return Status::Terminated("transport stopping");
          return slot->Received(next->data().size());
        },
        t_->handler(), &install);
  }
  if (s.ok()) {
    Log().info("transport: received snapshot of shard {} replica {} index {} from {}",
               install.shard_id, install.to, install.snapshot.index, ctx->peer());
    return grpc::Status::OK;
  }
  if (s.code() == StatusCode::kRejected) {
    // The engine refused the sender at the first chunk (Handler::
    // AdmitSnapshot), before anything was written: counted and logged at a
    // bounded rate, as any refused stream.
    t_->refusals()->Refused(StreamRefusal::kSnapshotSender, peer,
                            "snapshot stream of shard " + std::to_string(install.shard_id) +
                                " from replica " + std::to_string(install.from) + " to replica " +
                                std::to_string(install.to) + ": " + s.message());
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, s.ToString());
  }
  Log().error("transport: snapshot from {} (shard {} replica {}) failed, nothing kept: {}",
              ctx->peer(), install.shard_id, install.to, s.ToString());
  return grpc::Status(s.code() == StatusCode::kAborted   ? grpc::StatusCode::ABORTED
                      : s.code() == StatusCode::kTimeout ? grpc::StatusCode::DEADLINE_EXCEEDED
                      : s.code() == StatusCode::kBusy || s.code() == StatusCode::kNoSpace
                          ? grpc::StatusCode::RESOURCE_EXHAUSTED
                          : grpc::StatusCode::INVALID_ARGUMENT,
                      s.ToString());
}

Status GrpcTransport::BuildCredentials() {
  if (!config_.tls.enabled) {
    server_credentials_ = grpc::InsecureServerCredentials();
    channel_credentials_ = grpc::InsecureChannelCredentials();
    return Status::Ok();
  }
  Result<std::string> ca = ReadPem("ca_path", config_.tls.ca_path);
  Result<std::string> cert = ReadPem("cert_path", config_.tls.cert_path);
  Result<std::string> key = ReadPem("key_path", config_.tls.key_path);
  for (const Status& s : {ca.status(), cert.status(), key.status()}) FLOTILLA_RETURN_IF_ERROR(s);
  // Mutual TLS: the server requires and verifies a client certificate, and
  // checks its names against the peer list on every stream (CheckIncomingPeer).
  grpc::SslServerCredentialsOptions server(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  server.pem_root_certs = *ca;
  server.pem_key_cert_pairs.push_back({*key, *cert});
  server_credentials_ = grpc::SslServerCredentials(server);
  Result<std::shared_ptr<grpc::ChannelCredentials>> client =
      PeerChannelCredentials(config_.tls, *ca, *cert, *key, refusals_);
  if (!client.ok()) return client.status();
  channel_credentials_ = std::move(client).value();
  return Status::Ok();
}

Status GrpcTransport::StartServer() {
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort(config_.listen_address, server_credentials_, &port);
  service_ = std::make_unique<RaftService>(this);
  b.RegisterService(service_.get());
  b.SetMaxReceiveMessageSize(static_cast<int>(config_.max_receive_message_bytes));
  // Binding a port another process holds must fail, not share it.
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Accept the peers' keepalive pings at the interval they are configured with.
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                       static_cast<int>(config_.keepalive_interval_ms / 2));
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  server_ = b.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    server_.reset();
    return Status::Unavailable("cannot listen on " + config_.listen_address);
  }
  address_ = config_.listen_address.substr(0, config_.listen_address.rfind(':')) + ":" +
             std::to_string(port);
  return Status::Ok();
}

Status GrpcTransport::Start() {
  if (running_.load()) return Status::Ok();
  if (config_.snapshot_dir.empty()) return Status::InvalidArgument("snapshot_dir is not set");
  std::error_code ec;
  std::filesystem::create_directories(config_.snapshot_dir, ec);
  if (ec) return Status::IOError("create " + config_.snapshot_dir + ": " + ec.message());
  RemoveStaleTemporaries(config_.snapshot_dir);
  refusals_ = std::make_shared<RefusalLog>(handler_);
  receive_slots_ = std::make_unique<SnapshotStreamSlots>(config_.snapshot_receive);
  batch_budget_ = std::make_unique<BatchStreamBudget>(config_.batch_receive);
  FLOTILLA_RETURN_IF_ERROR(BuildCredentials());
  FLOTILLA_RETURN_IF_ERROR(StartServer());
  {
    std::lock_guard lock(snap_mu_);
    snap_stopping_ = false;
  }
  for (size_t i = 0; i < std::max<size_t>(config_.max_concurrent_snapshot_sends, 1); ++i) {
    snap_workers_.emplace_back([this] { SnapshotWorker(); });
  }
  running_.store(true);
  Log().info("transport: listening on {} (deployment {}, tls {})", address_, config_.deployment_id,
             config_.tls.enabled ? "on" : "off");
  return Status::Ok();
}

void GrpcTransport::Stop() {
  if (!running_.exchange(false)) return;
  // Incoming streams first: Shutdown waits for their handlers to return,
  // cancelling them after the grace period.
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(config_.shutdown_grace_ms));
  server_.reset();
  {
    std::lock_guard lock(snap_mu_);
    snap_stopping_ = true;
    for (grpc::ClientContext* ctx : snap_active_) ctx->TryCancel();
  }
  snap_cv_.notify_all();
  for (std::thread& t : snap_workers_) t.join();
  snap_workers_.clear();
  std::unordered_map<std::string, std::unique_ptr<RemoteHost>> hosts;
  {
    std::unique_lock lock(hosts_mu_);
    hosts.swap(hosts_);
  }
  for (auto& [address, host] : hosts) host->Stop();
  // Snapshots never started fail; their senders hear of it.
  std::deque<PendingSnapshot> left;
  {
    std::lock_guard lock(snap_mu_);
    left.swap(snap_queue_);
  }
  for (PendingSnapshot& p : left) {
    handler_->HandleSnapshotStatus(p.job.install.shard_id, p.job.install.to, true);
  }
  // A handshake still verifying a server certificate reports nothing now.
  refusals_->Detach();
}

RemoteHost* GrpcTransport::HostFor(const std::string& address) {
  {
    std::shared_lock lock(hosts_mu_);
    auto it = hosts_.find(address);
    if (it != hosts_.end()) return it->second.get();
  }
  std::unique_lock lock(hosts_mu_);
  if (!running()) return nullptr;
  auto& slot = hosts_[address];
  if (slot == nullptr) {
    slot = std::make_unique<RemoteHost>(address, config_, handler_, channel_credentials_, address_,
                                        refusals_.get());
    slot->Start();
  }
  return slot.get();
}

bool GrpcTransport::Send(raft::Message&& m) {
  if (!running() || m.type == raft::MessageType::kInstallSnapshot) return false;
  std::optional<std::string> address = registry_->Resolve(m.shard_id, m.to);
  if (!address) return false;
  RemoteHost* host = HostFor(*address);
  if (host == nullptr) return false;
  return host->LaneFor(m.type).Push(std::move(m));
}

void GrpcTransport::SendBatch(std::vector<raft::Message>& messages,
                              std::vector<DroppedTarget>* dropped) {
  std::vector<DroppedTarget> lost;
  // Resolve all destinations under one registry lock, then queue per lane
  // under one lock each.
  std::vector<std::pair<Lane*, size_t>> order;
  order.reserve(messages.size());
  std::vector<std::string> unknown_hosts;
  std::vector<std::pair<std::string, size_t>> to_create;
  registry_->ResolveMany(
      messages.size(),
      [&](size_t i) {
        return std::pair{messages[i].shard_id, messages[i].to};
      },
      [&](size_t i, const std::string* address) {
        if (address == nullptr || messages[i].type == raft::MessageType::kInstallSnapshot) {
          lost.push_back({messages[i].shard_id, messages[i].to});
        } else {
          to_create.emplace_back(*address, i);
        }
      });
  RemoteHost* last = nullptr;
  const std::string* last_address = nullptr;
  for (auto& [address, i] : to_create) {
    if (last_address == nullptr || *last_address != address) {
      last = HostFor(address);
      last_address = &address;
    }
    if (last == nullptr) {
      lost.push_back({messages[i].shard_id, messages[i].to});
      continue;
    }
    order.emplace_back(&last->LaneFor(messages[i].type), i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<size_t> indexes;
  for (size_t g = 0; g < order.size();) {
    size_t e = g;
    indexes.clear();
    while (e < order.size() && order[e].first == order[g].first)
      indexes.push_back(order[e++].second);
    order[g].first->PushMany(messages, indexes.data(), indexes.size(), &lost);
    g = e;
  }
  messages.clear();
  if (dropped != nullptr && !lost.empty()) {
    std::sort(lost.begin(), lost.end(), [](const DroppedTarget& a, const DroppedTarget& b) {
      return a.shard_id != b.shard_id ? a.shard_id < b.shard_id : a.replica_id < b.replica_id;
    });
    lost.erase(std::unique(lost.begin(), lost.end()), lost.end());
    dropped->insert(dropped->end(), lost.begin(), lost.end());
  }
}

Status GrpcTransport::SendSnapshot(SnapshotJob job) {
  if (!running()) return Status::Terminated("transport stopped");
  if (job.install.type != raft::MessageType::kInstallSnapshot || job.source == nullptr ||
      job.install.snapshot.IsEmpty()) {
    return Status::InvalidArgument("snapshot job needs an InstallSnapshot message and a source");
  }
  std::optional<std::string> address = registry_->Resolve(job.install.shard_id, job.install.to);
  if (!address) {
    return Status::NotFound("no address for shard " + std::to_string(job.install.shard_id) +
                            " replica " + std::to_string(job.install.to));
  }
  RemoteHost* host = HostFor(*address);
  if (host == nullptr) return Status::Terminated("transport stopped");
  {
    std::lock_guard lock(snap_mu_);
    if (snap_queue_.size() >= config_.max_queued_snapshot_sends) {
      return Status::Busy("too many snapshots queued");
    }
    snap_queue_.push_back({host, std::move(job)});
  }
  snap_cv_.notify_one();
  return Status::Ok();
}

void GrpcTransport::SnapshotWorker() {
  for (;;) {
    PendingSnapshot p;
    {
      std::unique_lock lock(snap_mu_);
      snap_cv_.wait(lock, [this] { return snap_stopping_ || !snap_queue_.empty(); });
      if (snap_stopping_) return;
      p = std::move(snap_queue_.front());
      snap_queue_.pop_front();
    }
    const raft::ShardId shard = p.job.install.shard_id;
    const raft::ReplicaId to = p.job.install.to;
    const bool ok = StreamSnapshot(p.host, p.job);
    handler_->HandleSnapshotStatus(shard, to, !ok);
  }
}

bool GrpcTransport::StreamSnapshot(RemoteHost* host, SnapshotJob& job) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(config_.snapshot_timeout_ms));
  const ClientChallenge challenge(config_.secret);
  challenge.AddTo(&ctx);
  {
    std::lock_guard lock(snap_mu_);
    if (snap_stopping_) return false;
    snap_active_.insert(&ctx);
  }
  const raft::Message install = job.install;
  wire::SnapshotResult result;
  auto writer = host->stub()->Snapshot(&ctx, &result);
  wire::SnapshotChunk chunk;
  MakeHeader(config_.deployment_id, address_, chunk.mutable_header());
  ToWire(std::move(job.install), chunk.mutable_install());
  SnapshotChunker chunker(job.source.get(), config_.snapshot_chunk_bytes);
  Status s;
  if (challenge.active()) {
    // Nothing is sent to a server that does not prove the secret. NotFound:
    // the server ended the call at once, and Finish() says why.
    writer->WaitForInitialMetadata();
    s = challenge.Answer(ctx, host->address(), refusals_.get(),
                         chunk.mutable_header()->mutable_secret_proof());
    if (s.code() == StatusCode::kNotFound) s = Status::Ok();
    if (!s.ok()) ctx.TryCancel();
  }
  ChunkData c;
  for (bool first = true; s.ok(); first = false) {
    Result<bool> more = chunker.Next(&c);
    if (!more.ok()) {
      s = more.status();
      ctx.TryCancel();  // the receiver drops what it has
      break;
    }
    if (!*more) break;
    if (!first) chunk.Clear();
    ChunkToWire(c, &chunk);
    if (!writer->Write(chunk)) break;  // Finish() says why
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  {
    std::lock_guard lock(snap_mu_);
    snap_active_.erase(&ctx);
  }
  if (s.ok() && st.ok() && result.ok()) {
    Log().info("transport: sent snapshot of shard {} index {} to replica {} at {}",
               install.shard_id, install.snapshot.index, install.to, host->address());
    return true;
  }
  Log().warn("transport: snapshot of shard {} index {} to replica {} at {} failed: {}",
             install.shard_id, install.snapshot.index, install.to, host->address(),
             !s.ok() ? s.ToString() : st.error_message());
  return false;
}

}  // namespace

std::unique_ptr<Transport> NewGrpcTransport(TransportConfig config, Registry* registry,
                                            Handler* handler) {
  return std::make_unique<GrpcTransport>(std::move(config), registry, handler);
}

}  // namespace flotilla::transport
