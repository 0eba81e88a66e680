// The sending side of the gRPC transport: RemoteHost and its lanes.
#include <pthread.h>

#include <algorithm>
#include <chrono>

#include "engine/log/log.h"
#include "transport/convert.h"
#include "transport/grpc_internal.h"
#include "transport/peer_auth.h"

namespace flotilla::transport {
namespace {

std::chrono::system_clock::time_point After(uint64_t ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

grpc::ChannelArguments ChannelArgs(const TransportConfig& c) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(c.max_receive_message_bytes));
  args.SetMaxSendMessageSize(-1);
  // gRPC reconnects the channel on its own; its backoff must follow ours or a
  // returning peer would be found only after gRPC's default 2 minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(c.reconnect_backoff_initial_ms));
  // Despite its name, gRPC takes GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the
  // time a connection attempt may take until the peer's SETTINGS frame
  // arrives, not as a backoff. Set to the short backoff, a peer that answers
  // later than that (far away, or on a loaded machine) failed every call of
  // the first attempts, snapshots included; it gets connect_timeout_ms, as a
  // lane's Connect() does.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(std::max(c.connect_timeout_ms, c.reconnect_backoff_initial_ms)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(c.reconnect_backoff_max_ms));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(c.keepalive_interval_ms));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(c.keepalive_timeout_ms));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // One connection per RemoteHost, never shared with another transport in the
  // same process (tests run several NodeHosts in one process).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

}  // namespace

void ReportUnreachable(Handler* handler, std::vector<DroppedTarget>* targets) {
  std::sort(targets->begin(), targets->end(), [](const DroppedTarget& a, const DroppedTarget& b) {
    return a.shard_id != b.shard_id ? a.shard_id < b.shard_id : a.replica_id < b.replica_id;
  });
  targets->erase(std::unique(targets->begin(), targets->end()), targets->end());
  for (const DroppedTarget& t : *targets) handler->HandleUnreachable(t.shard_id, t.replica_id);
  targets->clear();
}

RemoteHost::RemoteHost(std::string address, const TransportConfig& config, Handler* handler,
                       std::shared_ptr<grpc::ChannelCredentials> credentials,
                       std::string local_address, RefusalLog* refusals)
    : address_(std::move(address)),
      config_(config),
      handler_(handler),
      local_address_(std::move(local_address)),
      refusals_(refusals),
      channel_(grpc::CreateCustomChannel(address_, credentials, ChannelArgs(config))),
      stub_(wire::Raft::NewStub(channel_)),
      control_(this, "control"),
      data_(this, "data") {}

void RemoteHost::Start() {
  control_.Start();
  data_.Start();
}

void RemoteHost::Stop() {
  control_.Stop();
  data_.Stop();
}

void RemoteHost::LaneUp() {
  if (lanes_up_.fetch_add(1) == 0) {
    Log().info("transport: connected to {}", address_);
    handler_->HandleConnectionUp(address_);
  }
}

void RemoteHost::LaneDown() {
  if (lanes_up_.fetch_sub(1) == 1) {
    Log().info("transport: disconnected from {}", address_);
    handler_->HandleConnectionDown(address_);
  }
}

Lane::Lane(RemoteHost* host, const char* name) : host_(host), name_(name) {}

Lane::~Lane() { Stop(); }

void Lane::Start() {
  thread_ = std::thread([this] {
    // Named for profiles (perf --sort comm); Linux keeps 15 characters.
    pthread_setname_np(pthread_self(), (std::string("lane-") + name_).substr(0, 15).c_str());
    Run();
  });
}

void Lane::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Lane::HasRoom(size_t bytes) const {
  const TransportConfig& c = host_->config();
  // An empty queue takes any one message, so that a message larger than the
  // byte bound is still sent (alone) rather than never.
  return queue_.empty() ||
         (queue_.size() < c.max_queue_messages && queue_bytes_ + bytes <= c.max_queue_bytes);
}

bool Lane::Push(raft::Message&& m) {
  const size_t bytes = m.SizeBytes();
  bool wake;
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !HasRoom(bytes)) return false;
    wake = queue_.empty();  // the sender sleeps only on an empty queue
    queue_bytes_ += bytes;
    queue_.push_back(std::move(m));
  }
  if (wake) cv_.notify_one();
  return true;
}

void Lane::PushMany(std::vector<raft::Message>& messages, const size_t* indexes, size_t n,
                    std::vector<DroppedTarget>* dropped) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    wake = queue_.empty();
    for (size_t i = 0; i < n; ++i) {
      raft::Message& m = messages[indexes[i]];
      const size_t bytes = m.SizeBytes();
      if (stopping_ || !HasRoom(bytes)) {
        if (dropped != nullptr) dropped->push_back({m.shard_id, m.to});
        continue;
      }
      queue_bytes_ += bytes;
      queue_.push_back(std::move(m));
    }
    wake = wake && !queue_.empty();
  }
  if (wake) cv_.notify_one();
}

void Lane::Run() {
  const TransportConfig& c = host_->config();
  uint64_t backoff_ms = c.reconnect_backoff_initial_ms;
  for (;;) {
    Status s = Connect();
    if (s.ok()) {
      last_error_.clear();
      backoff_ms = c.reconnect_backoff_initial_ms;
      host_->LaneUp();
      s = Pump();
      host_->LaneDown();
      CloseStream(/*cancel=*/true);
    } else {
      CloseStream(/*cancel=*/false);
    }
    if (s.code() == StatusCode::kTerminated) return;
    {
      // A stream cancelled by Stop() fails like a broken one; say nothing.
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    // Log a failure once, not at every retry of a peer that stays away.
    if (s.ToString() != last_error_) {
      last_error_ = s.ToString();
      if (s.code() == StatusCode::kRejected) {
        Log().error("transport: {} lane to {} refused: {}", name_, host_->address(), s.message());
      } else {
        Log().warn("transport: {} lane to {}: {}", name_, host_->address(), s.ToString());
      }
    }
    if (!WaitBackoff(backoff_ms)) return;
    backoff_ms = std::min(backoff_ms * 2, c.reconnect_backoff_max_ms);
  }
}

Status Lane::Connect() {
  const TransportConfig& c = host_->config();
  // Waits in short slices so that Stop() is not held up by a dead peer.
  const auto deadline = After(c.connect_timeout_ms);
  while (!host_->channel()->WaitForConnected(std::min(deadline, After(50)))) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return Status::Terminated("stopping");
    }
    if (std::chrono::system_clock::now() >= deadline) {
      DropPending(0);
      return Status::Unavailable("cannot connect");
    }
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Status::Terminated("stopping");
    context_ = std::make_unique<grpc::ClientContext>();
    active_ = context_.get();
  }
  const ClientChallenge challenge(c.secret);
  challenge.AddTo(context_.get());
  stream_ = host_->stub()->Batches(context_.get());
  wire::MessageBatch hello;
  MakeHeader(c.deployment_id, host_->local_address(), hello.mutable_header());
  if (challenge.active()) {
    // Nothing is sent to a server that does not prove the secret. NotFound:
    // the server ended the stream at once; the write fails and Finish()
    // says why.
    stream_->WaitForInitialMetadata();
    Status s = challenge.Answer(*context_, host_->address(), host_->refusals(),
                                hello.mutable_header()->mutable_secret_proof());
    if (s.code() == StatusCode::kRejected) {
      CloseStream(/*cancel=*/true);
      DropPending(0);
      return s;
    }
  }
  wire::BatchAck ack;
  if (stream_->Write(hello) && stream_->Read(&ack) && ack.accepted()) return Status::Ok();
  // The peer ended the stream: its status says why (a refused header says
  // FAILED_PRECONDITION with the reason).
  grpc::Status st = stream_->Finish();
  stream_.reset();
  DropPending(0);
  // A refused header, certificate or secret: the peer says why.
  if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
      st.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
      st.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    return Status::Rejected(st.error_message());
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Status::Terminated("stopping");
  }
  return Status::Unavailable("handshake failed: " + st.error_message());
}

Status Lane::Pump() {
  const size_t max_batch_bytes = host_->config().max_batch_bytes;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      const auto idle = std::chrono::milliseconds(host_->config().idle_check_interval_ms);
      if (!cv_.wait_for(lock, idle, [this] { return stopping_ || !queue_.empty(); })) {
        lock.unlock();
        // An idle lane would otherwise notice a lost connection only at its
        // next write; the channel's state tells at once.
        if (host_->channel()->GetState(false) != GRPC_CHANNEL_READY) {
          return Status::Unavailable("connection lost");
        }
        continue;
      }
      if (stopping_) return Status::Terminated("stopping");
      pending_.swap(queue_);
      queue_bytes_ = 0;
    }
    // One proto batch per write, reused: Clear() keeps its allocations.
    size_t i = 0;
    while (i < pending_.size()) {
      const size_t start = i;
      size_t bytes = 0;
      batch_.Clear();
      for (; i < pending_.size(); ++i) {
        const size_t b = pending_[i].SizeBytes();
        if (i > start && bytes + b > max_batch_bytes) break;
        // The next batch starts with it, after those heartbeats.
        if (MustFollowHeartbeats(pending_[i], batch_.heartbeats())) break;
        bytes += b;
        if (CanCoalesce(pending_[i])) {
          AppendHeartbeat(pending_[i], batch_.mutable_heartbeats());
        } else {
          ToWire(std::move(pending_[i]), batch_.add_messages());
        }
      }
      if (!stream_->Write(batch_)) {
        // ToWire moved only the payloads; shard and recipient are intact.
        DropPending(start);
        return Status::Unavailable("stream broke");
      }
    }
    pending_.clear();
  }
}

void Lane::DropPending(size_t from) {
  for (size_t i = from; i < pending_.size(); ++i) {
    dropped_.push_back({pending_[i].shard_id, pending_[i].to});
  }
  pending_.clear();
  {
    std::lock_guard lock(mu_);
    for (const raft::Message& m : queue_) dropped_.push_back({m.shard_id, m.to});
    queue_.clear();
    queue_bytes_ = 0;
  }
  ReportUnreachable(host_->handler(), &dropped_);
}

void Lane::CloseStream(bool cancel) {
  if (stream_ != nullptr) {
    if (cancel) context_->TryCancel();
    (void)stream_->Finish();  // the status of a stream we cancelled says nothing new
    stream_.reset();
  }
  std::lock_guard lock(mu_);
  active_ = nullptr;
  context_.reset();
}

bool Lane::WaitBackoff(uint64_t ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, deadline, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return false;
      if (queue_.empty()) return true;  // the deadline passed
    }
    // While disconnected, messages are dropped and reported at once rather
    // than held: Raft will resend what still matters when the peer is back.
    DropPending(0);
  }
}

}  // namespace flotilla::transport
