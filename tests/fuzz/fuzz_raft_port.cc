// libFuzzer target: whatever reaches the raft port of a live cluster
// (issue 14, docs/security.md "The fuzzer").
//
// Each input runs against a fresh FuzzCluster (three NodeHosts, two shards
// with elected leaders and applied writes). The input is either
//  - a program (first byte % 8 != 7): a sequence of operations interpreted
//    against the cluster's live state: drive it, tick it, propose, cut and
//    heal links, drop/duplicate/reorder packets, request snapshots, move
//    leadership, and above all inject messages and snapshot streams whose
//    fields are chosen relative to the receiving replica's own term, commit
//    index and leader, replay genuine messages and snapshot streams the
//    hosts exchanged (mutated or not), and deliver raw wire bytes; or
//  - raw wire bytes (first byte % 8 == 7): a protobuf MessageBatch, or a
//    sequence of length-prefixed SnapshotChunks, for one host.
// Everything injected is serialised to wire bytes and goes through the
// receive path a remote peer reaches (transport/wire_receive.h: the batch
// decoder and validator of transport/convert.cc, the snapshot stream
// receiver), then into NodeHostImpl::HandleBatch / HandleSnapshot.
//
// After each input the network is healed and the fuzzer checks that every
// shard elects a leader all hosts agree on, commits a new write, and that
// every replica applied the same entries in the same order (state machine
// fingerprints), that no outsider's command was applied and that no host's
// storage failed. A failed check aborts with a message saying which, so
// libFuzzer records the input as a crash.
//
// Who lied decides how much is checked. Messages from outsiders (ids that
// are not members) must change nothing, and replays of genuine traffic are
// what a network that delays and duplicates packets does: after those the
// full check runs. A message that claims a member's identity (or a leader's
// message from an outsider, which a replica lagging behind a membership
// change must believe) can lie within what a correct peer could send, which
// only authentication prevents (docs/security.md): after those the input
// must still not crash, but a failed check is only counted (printed at
// exit), unless FLOTILLA_FUZZ_STRICT=1.
//
// Environment: FLOTILLA_FUZZ_LOG=1 keeps the engine's log;
// FLOTILLA_FUZZ_WRITE_SEEDS=DIR writes the seed corpus and exits.
#include <spdlog/spdlog.h>

#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <string_view>

#include "engine/sessions.h"
#include "tests/fuzz/fuzz_cluster.h"
#include "transport/crc32c.h"
#include "transport/wire_receive.h"

namespace flotilla::fuzz {
namespace {

using namespace std::chrono_literals;
using raft::MessageType;

constexpr uint64_t kOutsider = 99;
constexpr size_t kMaxOps = 64;
constexpr int kRawMode = 7;

// Process-wide figures, printed at exit.
struct Stats {
  uint64_t inputs = 0, full_checks = 0, lenient_checks = 0, lenient_failures = 0;
  uint64_t injected = 0, replayed = 0, snapshots = 0, raw = 0;
};
Stats g_stats;
bool g_strict = false;
bool g_log = false;  // FLOTILLA_FUZZ_LOG: the engine's log and what is injected
unsigned long long U(uint64_t v) { return v; }

// The fuzz input, read front to back; past its end every read is 0.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t Short() { return static_cast<uint16_t>(Byte() | (Byte() << 8)); }
  std::string_view Take(size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::string_view v(reinterpret_cast<const char*>(data_) + pos_, n);
    pos_ += n;
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// A value chosen relative to `base` (a term or an index of the receiver):
// near it, far above it, or at the edges of the number space.
uint64_t Rel(uint64_t base, uint8_t b) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  switch (b % 32) {
    case 16:
      return 0;
    case 17:
      return 1;
    case 18:
      return base + (uint64_t{1} << 32);
    case 19:
      return base + (uint64_t{1} << 32) + 1;
    case 20:
      return (uint64_t{1} << 62) - 1;
    case 21:
      return uint64_t{1} << 62;
    case 22:
      return kMax;
    case 23:
      return kMax - 1;
    case 24:
      return base * 2;
    case 25:
      return base + 1000;
    case 26:
      return base + 2'000'000;
    case 27:
      return uint64_t{1} << 40;
    default:
      return base + (b % 32 < 16 ? b % 32 : b / 32) - 4;  // base-4 .. base+11
  }
}

bool IsMember(uint64_t id) { return id >= 1 && id <= static_cast<uint64_t>(kHosts); }

bool IsLeaderMessage(MessageType t) {
  return t == MessageType::kReplicate || t == MessageType::kHeartbeat ||
         t == MessageType::kInstallSnapshot || t == MessageType::kTimeoutNow ||
         t == MessageType::kQuiesce;
}

void PrintStats();

[[noreturn]] void Fail(const std::string& why) {
  std::fprintf(stderr, "\nFLOTILLA FUZZ CHECK FAILED: %s\n", why.c_str());
  PrintStats();
  std::fflush(stderr);
  std::abort();
}

// Hands injected input to a NodeHost, noting whether any of it lied with a
// member's identity (see the file comment).
class Inspector final : public transport::Handler {
 public:
  Inspector(engine::NodeHostImpl* target, bool* lied) : target_(target), lied_(lied) {}
  void HandleBatch(std::vector<raft::Message>&& messages,
                   const std::string& source_address) override {
    for (const raft::Message& m : messages) {
      if (IsMember(m.from) || IsLeaderMessage(m.type)) *lied_ = true;
      if (g_log) {
        std::fprintf(stderr,
                     "fuzz: inject %s shard %llu %llu->%llu term %llu log %llu/%llu commit %llu "
                     "reject %d hint %llu entries %zu\n",
                     std::string(raft::MessageTypeName(m.type)).c_str(), U(m.shard_id), U(m.from),
                     U(m.to), U(m.term), U(m.log_index), U(m.log_term), U(m.commit), m.reject,
                     U(m.hint), m.entries.size());
      }
    }
    target_->HandleBatch(std::move(messages), source_address);
  }
  Status AdmitSnapshot(const raft::Message& install, const std::string& source) override {
    return target_->AdmitSnapshot(install, source);
  }
  void HandleSnapshot(raft::Message install, std::string path) override {
    // An outsider's snapshot is refused by the receiver unless it follows
    // the outsider already, which a leader's message (a lie) must have
    // made it do.
    if (IsMember(install.from)) *lied_ = true;
    target_->HandleSnapshot(std::move(install), std::move(path));
  }
  void HandleUnreachable(raft::ShardId, raft::ReplicaId) override {}
  void HandleSnapshotStatus(raft::ShardId, raft::ReplicaId, bool) override {}
  void HandleConnectionUp(const std::string&) override {}
  void HandleConnectionDown(const std::string&) override {}

 private:
  engine::NodeHostImpl* const target_;
  bool* const lied_;
};

// The snapshot files a program streams: `data` in the KV state machine's
// format (or any bytes), `sessions`, and the metadata-only marker.
std::map<std::string, std::string> SnapshotFiles(Input& in) {
  std::map<std::string, std::string> files;
  const uint8_t v = in.Byte();
  if (v & 1) {
    files[engine::kSnapshotDataFile] =
        (v & 2) ? std::string(in.Take(in.Byte())) : "#1 1\nevil=" + std::to_string(v) + "\n";
  }
  files[engine::kSnapshotSessionsFile] =
      (v & 4) ? std::string(in.Take(in.Byte() % 16)) : engine::Sessions().Serialize();
  if (v & 8) files[engine::kSnapshotMetadataOnlyFile] = "";
  if (v & 16) files[std::string(in.Take(in.Byte() % 8))] = "x";
  return files;
}

// The chunks of a stream carrying `files`, with their checksums; `damage`
// (0-7, 0-4: none) breaks one thing the receiver verifies.
std::vector<wire::SnapshotChunk> Chunks(const raft::Message& install,
                                        const std::map<std::string, std::string>& files,
                                        uint8_t damage) {
  std::vector<wire::SnapshotChunk> out;
  out.emplace_back();
  transport::MakeHeader(0, "fuzz:1", out.back().mutable_header());
  raft::Message copy = install;
  transport::ToWire(std::move(copy), out.back().mutable_install());
  uint64_t total = 0;
  for (const auto& [name, data] : files) {
    const uint32_t crc = transport::Crc32c(data);
    wire::SnapshotChunk* c = out.size() == 1 ? &out.back() : &out.emplace_back();
    c->set_file_name(name);
    c->set_data(data);
    c->set_data_crc32c(damage == 5 ? crc ^ 1 : crc);
    c = &out.emplace_back();
    c->set_file_name(name);
    c->set_file_offset(data.size());
    c->set_file_end(true);
    c->set_file_crc32c(crc);
    total += data.size();
  }
  wire::SnapshotChunk& last = out.emplace_back();
  last.set_last(true);
  last.set_total_bytes(damage == 7 ? total + 1 : total);
  last.set_file_count(static_cast<uint32_t>(files.size()));
  if (damage == 6) out.pop_back();
  return out;
}

class Program {
 public:
  Program(FuzzCluster* cluster, Input* in) : cl_(cluster), in_(*in) {}

  void Run();
  // Raw mode: the rest of the input is wire bytes for one host.
  void RunRaw();
  bool lied() const { return lied_; }

 private:
  int Host(uint8_t b) const { return 1 + b % kHosts; }
  uint64_t Shard(uint8_t b) const { return 1 + b % kShards; }
  uint64_t Sender(uint8_t b, uint64_t leader, int target) const;
  bool Info(int host, uint64_t shard, ReplicaInfo* out) {
    auto info = cl_->host(host).GetReplicaInfo(shard);
    if (!info.ok()) return false;
    *out = *info;
    return true;
  }
  void Network(uint8_t op);
  void RawBatch();
  void Inject();
  raft::Message MakeMessage(int host, uint64_t shard, const ReplicaInfo& info);
  void AddEntries(raft::Message* m);
  void Replay();
  void StreamSnapshot();
  void ReplaySnapshot();
  void DeliverBatch(int host, wire::MessageBatch* batch, bool damage);
  void DeliverStream(int host, std::vector<wire::SnapshotChunk> chunks);
  std::string Source() {
    switch (in_.Byte() % 4) {
      case 0:
        return "host9:1";
      case 1:
        return "";
      case 2:
        return std::string(in_.Take(in_.Byte() % 32));
      default:
        return FuzzCluster::Name(Host(in_.Byte()));
    }
  }

  FuzzCluster* cl_;
  Input& in_;
  bool lied_ = false;
  int proposals_ = 0;
};

uint64_t Program::Sender(uint8_t b, uint64_t leader, int target) const {
  switch (b % 8) {
    case 0:
      return leader;
    case 1:
    case 2:
    case 3:
      return b % 8;
    case 4:
      return kOutsider;
    case 5:
      return kHosts + 1;  // the next id, never a member here
    case 6:
      return static_cast<uint64_t>(target);
    default:
      return (uint64_t{b} << 40) | 5;
  }
}

void Program::Run() {
  for (size_t op = 0; op < kMaxOps && !in_.empty(); ++op) {
    const uint8_t code = in_.Byte();
    switch (code % 14) {
      case 0: {
        const int steps = 1 + in_.Byte() % 16;
        for (int i = 0; i < steps; ++i) cl_->Step(i % 4 == 0);
        break;
      }
      case 1: {
        const int ticks = 1 + in_.Byte() % 8;
        for (int t = 0; t < ticks; ++t) {
          cl_->Step(true);
          cl_->Step(false);
          cl_->Step(false);
        }
        break;
      }
      case 2: {
        const uint8_t b = in_.Byte();
        (void)cl_->host(Host(b >> 1))
            .Propose(Shard(b), "p" + std::to_string(++proposals_) + "=" + std::to_string(b), 3600s);
        break;
      }
      case 3:
      case 4:
        Network(code);
        break;
      case 5:
      case 6:
        Inject();
        break;
      case 7:
      case 8:
        Replay();
        break;
      case 9:
        StreamSnapshot();
        break;
      case 10:
        ReplaySnapshot();
        break;
      case 11: {
        const uint8_t b = in_.Byte();
        if (b & 0x80) {
          (void)cl_->host(Host(b >> 1)).RequestSnapshot(Shard(b), 3600s);
        } else {
          (void)cl_->host(Host(b >> 1)).TransferLeader(Shard(b), Host(b >> 3));
        }
        break;
      }
      case 12:
        RawBatch();
        break;
      default: {
        const uint8_t b = in_.Byte();
        if (b & 0x80) {
          cl_->Restart(Host(b));
        } else {
          cl_->net().AdvanceTime(b);
        }
        break;
      }
    }
  }
}

// Raw wire bytes inside a program.
void Program::RawBatch() {
  const int host = Host(in_.Byte());
  wire::MessageBatch batch;
  const std::string_view bytes = in_.Take(in_.Byte());
  if (batch.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    ++g_stats.raw;
    DeliverBatch(host, &batch, false);
  }
}

// Cuts, heals and packet faults: what any network may do.
void Program::Network(uint8_t op) {
  const uint8_t b = in_.Byte();
  const std::string a = FuzzCluster::Name(Host(b));
  const std::string c = FuzzCluster::Name(Host(b >> 2));
  if (op == 4) {
    transport::InProcFaults f;
    f.drop_probability = (b & 3) / 10.0;
    f.duplicate_probability = ((b >> 2) & 3) / 10.0;
    f.reorder_probability = ((b >> 4) & 3) / 10.0;
    f.max_delay_ms = (b >> 6) * 5;
    cl_->net().SetFaults(f);
    return;
  }
  switch ((b >> 4) % 4) {
    case 0:
      if (a != c) cl_->net().PartitionOneWay(a, c);
      break;
    case 1:
      if (a != c) cl_->net().Partition(a, c);
      break;
    case 2:
      cl_->net().Isolate(a);
      break;
    default:
      cl_->net().HealAll();
      break;
  }
}

raft::Message Program::MakeMessage(int host, uint64_t shard, const ReplicaInfo& info) {
  raft::Message m;
  m.type = static_cast<MessageType>(in_.Byte() % (static_cast<int>(MessageType::kCount) + 1));
  m.shard_id = shard;
  m.from = Sender(in_.Byte(), info.leader_id, host);
  m.to = static_cast<uint64_t>(host);
  m.term = Rel(info.term, in_.Byte());
  m.log_index = Rel(info.commit_index, in_.Byte());
  m.log_term = Rel(info.term, in_.Byte());
  m.commit = Rel(info.commit_index, in_.Byte());
  const uint8_t flags = in_.Byte();
  m.reject = flags & 1;
  if (flags & 2) m.hint = Rel(m.log_index, in_.Byte());
  if (flags & 4) m.hint_term = Rel(info.term, in_.Byte());
  if (flags & 8) m.ctx = in_.Byte();
  if (flags & 16) m.to = Sender(in_.Byte(), info.leader_id, host);
  if (flags & 32) AddEntries(&m);
  if (flags & 64) {
    m.snapshot.index = Rel(info.commit_index, in_.Byte());
    m.snapshot.term = Rel(info.term, in_.Byte());
    m.snapshot.membership.voters = {1, 2, 3};
  }
  return m;
}

// Entries numbered after the message's index (unless told otherwise), with
// terms near its log term, commands an outsider's check recognises.
void Program::AddEntries(raft::Message* m) {
  const int n = 1 + in_.Byte() % 4;
  const bool outsider = !IsMember(m->from);
  for (int i = 0; i < n; ++i) {
    const uint8_t b = in_.Byte();
    raft::Entry e;
    e.index = (b & 1) ? Rel(m->log_index + 1 + static_cast<uint64_t>(i), in_.Byte())
                      : m->log_index + 1 + static_cast<uint64_t>(i);
    e.term = (b & 2) ? Rel(m->log_term, in_.Byte()) : m->term;
    e.type = static_cast<raft::EntryType>((b >> 2) % 4);
    if (e.type == raft::EntryType::kConfChange && (b & 0x40)) {
      raft::ConfChange cc;
      cc.items.push_back({static_cast<raft::ConfChangeType>(in_.Byte() % 4), m->from, "evil:1"});
      e.cmd = raft::Payload(raft::EncodeConfChange(cc));
    } else if (b & 0x80) {
      e.cmd = raft::Payload(std::string(in_.Take(in_.Byte())));
    } else {
      e.cmd = raft::Payload(std::string(outsider ? "evil=" : "forged=") + std::to_string(b));
    }
    m->entries.push_back(std::move(e));
  }
}

void Program::Inject() {
  const uint8_t b = in_.Byte();
  const uint64_t shard = Shard(b);
  const int host = Host(b >> 1);
  ReplicaInfo info;
  if (!Info(host, shard, &info)) return;
  raft::Message m = MakeMessage(host, shard, info);
  wire::MessageBatch batch;
  if ((b & 8) && transport::CanCoalesce(m)) {
    transport::AppendHeartbeat(m, batch.mutable_heartbeats());
  } else {
    transport::ToWire(std::move(m), batch.add_messages());
  }
  ++g_stats.injected;
  DeliverBatch(host, &batch, b & 16);
}

// A genuine message again, as a network that delays and duplicates packets
// delivers it; or mutated in one field.
void Program::Replay() {
  const uint8_t b = in_.Byte();
  const auto& captured = cl_->capture().messages;
  if (captured.empty()) return;
  // Counted from the most recent: the traffic of the program's own steps.
  const CapturedMessage& c = captured[captured.size() - 1 - in_.Short() % captured.size()];
  raft::Message m = c.message;
  if (b & 1) {
    const uint8_t v = in_.Byte();
    switch ((b >> 1) % 6) {
      case 0:
        m.term = Rel(m.term, v);
        break;
      case 1:
        m.log_index = Rel(m.log_index, v);
        break;
      case 2:
        m.commit = Rel(m.commit, v);
        break;
      case 3:
        m.log_term = Rel(m.log_term, v);
        break;
      case 4:
        m.reject = !m.reject;
        m.hint = Rel(m.hint, v);
        break;
      default:
        m.from = Sender(v, m.from, c.to_host);
        break;
    }
    if (IsMember(m.from) || IsLeaderMessage(m.type)) lied_ = true;
  }
  wire::MessageBatch batch;
  transport::ToWire(std::move(m), batch.add_messages());
  ++g_stats.replayed;
  // A genuine message goes through the Tap's own path (no lie check).
  if (Status s = transport::DeliverWireBatch(&batch, transport::WireLimits{}, c.source,
                                             &cl_->host(c.to_host));
      !s.ok()) {
    Fail("a genuine message failed to decode: " + s.ToString());
  }
}

void Program::DeliverBatch(int host, wire::MessageBatch* batch, bool damage) {
  if (damage) {
    std::string bytes = batch->SerializeAsString();
    if (!bytes.empty()) {
      bytes[in_.Short() % bytes.size()] ^= static_cast<char>(in_.Byte() | 1);
    }
    if (!batch->ParseFromString(bytes)) return;
  }
  Inspector inspector(&cl_->host(host), &lied_);
  (void)transport::DeliverWireBatch(batch, transport::WireLimits{}, Source(), &inspector);
}

void Program::DeliverStream(int host, std::vector<wire::SnapshotChunk> chunks) {
  ++g_stats.snapshots;
  // Through wire bytes, as the gRPC server reads them.
  for (wire::SnapshotChunk& c : chunks) {
    const std::string bytes = c.SerializeAsString();
    if (!c.ParseFromString(bytes)) Fail("a snapshot chunk does not parse back");
  }
  if (chunks.empty()) return;
  transport::TransportConfig config;
  config.snapshot_dir = cl_->snapshot_dir(host);
  Inspector inspector(&cl_->host(host), &lied_);
  size_t next = 1;
  raft::Message install;
  (void)transport::ReceiveWireSnapshot(
      config, transport::LimitsFrom(config), &chunks[0],
      [&](wire::SnapshotChunk* c) {
        if (next >= chunks.size()) return Status::Aborted("stream ended before the last chunk");
        *c = std::move(chunks[next++]);
        return Status::Ok();
      },
      &inspector, &install);
}

// A snapshot stream made up by the program: metadata relative to the
// receiver's state, files of its choosing, checksums right unless damaged.
void Program::StreamSnapshot() {
  const uint8_t b = in_.Byte();
  const uint64_t shard = Shard(b);
  const int host = Host(b >> 1);
  ReplicaInfo info;
  if (!Info(host, shard, &info)) return;
  raft::Message install;
  install.type = MessageType::kInstallSnapshot;
  install.shard_id = shard;
  install.from = Sender(in_.Byte(), info.leader_id, host);
  install.to = static_cast<uint64_t>(host);
  install.term = Rel(info.term, in_.Byte());
  install.snapshot.index = Rel(info.commit_index + 8, in_.Byte());
  install.snapshot.term = Rel(info.term, in_.Byte());
  raft::Membership& ms = install.snapshot.membership;
  switch (in_.Byte() % 6) {
    case 0:
      break;
    case 1:
      ms.voters = {1, 2};
      break;
    case 2:
      ms.voters = {1, 2, 3, kOutsider};
      break;
    case 3:
      ms.voters = {1, 2, 3};
      ms.witnesses = {install.to};
      break;
    case 4:
      ms.voters = {1, 2, 3};
      ms.removed = {install.to};
      break;
    default:
      ms.voters = {1, 2, 3};
      break;
  }
  for (uint64_t id : ms.voters) ms.contexts[id] = FuzzCluster::Name(static_cast<int>(id % 4));
  const auto files = SnapshotFiles(in_);
  DeliverStream(host, Chunks(install, files, in_.Byte() % 8));
}

// A genuine snapshot stream again (a duplicate), or with its metadata or
// data changed.
void Program::ReplaySnapshot() {
  const uint8_t b = in_.Byte();
  const auto& captured = cl_->capture().snapshots;
  if (captured.empty()) return;
  const CapturedSnapshot& c = captured[in_.Byte() % captured.size()];
  raft::Message install = c.install;
  auto files = c.files;
  if (b & 1) {
    const uint8_t v = in_.Byte();
    switch ((b >> 1) % 4) {
      case 0:
        install.snapshot.index = Rel(install.snapshot.index, v);
        break;
      case 1:
        install.term = Rel(install.term, v);
        break;
      case 2:
        install.from = Sender(v, install.from, c.to_host);
        break;
      default:
        files[engine::kSnapshotDataFile] += "evil=" + std::to_string(v) + "\n";
        break;
    }
    if (IsMember(install.from)) lied_ = true;
  }
  DeliverStream(c.to_host, Chunks(install, files, (b & 1) ? in_.Byte() % 8 : 0));
}

void Program::RunRaw() {
  const uint8_t b = in_.Byte();
  const int host = Host(b);
  ++g_stats.raw;
  if (b & 0x80) {
    std::vector<wire::SnapshotChunk> chunks;
    while (!in_.empty()) {
      const std::string_view bytes = in_.Take(in_.Short() % 4096);
      if (!chunks.emplace_back().ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        return;
      }
    }
    DeliverStream(host, std::move(chunks));
  } else {
    wire::MessageBatch batch;
    const std::string_view bytes = in_.Take(SIZE_MAX);
    if (!batch.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
    DeliverBatch(host, &batch, false);
  }
  // Let the hosts step what they were given.
  for (int i = 0; i < 16; ++i) cl_->Step(i % 4 == 0);
}

// A stale read of `key`, or `otherwise` when the read fails.
std::string ReadKey(FuzzCluster& cl, int host, uint64_t shard, std::string_view key,
                    const std::string& otherwise) {
  auto r = cl.host(host).StaleRead(shard, key);
  return r.ok() ? *r : otherwise;
}

// Every host knows the same leader of `shard`.
bool Agreed(FuzzCluster& cl, uint64_t shard) {
  uint64_t leader = 0;
  for (int i = 1; i <= kHosts; ++i) {
    auto info = cl.host(i).GetReplicaInfo(shard);
    if (!info.ok() || info->leader_id == 0) return false;
    if (leader != 0 && info->leader_id != leader) return false;
    leader = info->leader_id;
  }
  return true;
}

std::string Describe(FuzzCluster& cl, uint64_t shard) {
  std::string out;
  for (int i = 1; i <= kHosts; ++i) {
    auto info = cl.host(i).GetReplicaInfo(shard);
    out += "\n  host " + std::to_string(i) + ": ";
    if (!info.ok()) {
      out += info.status().ToString();
      continue;
    }
    out += std::string(ReplicaRoleName(info->role)) + " term " + std::to_string(info->term) +
           " leader " + std::to_string(info->leader_id) + " commit " +
           std::to_string(info->commit_index) + " applied " + std::to_string(info->applied_index) +
           " state " + ReadKey(cl, i, shard, "__hash", "?");
  }
  return out;
}

// How long the checks wait, in steps (a tick every fourth): far more than a
// healthy cluster needs (an election takes about 80), bounded so that an
// input after which a shard cannot recover (a member's lie can make a
// leader stream snapshots for ever) still ends well within libFuzzer's
// timeout. After a lie, whose failures are only counted, less.
struct Budget {
  int attempts = 6;
  int steps = 1000;
};
constexpr Budget kFullBudget{6, 1000};
constexpr Budget kLieBudget{2, 400};

// Proposes `cmd` through the leader of `shard` and drives until it applied.
// A proposal may be refused for a while (a leadership transfer in progress
// refuses them for up to an election timeout): each retry comes two
// election timeouts later.
// Returns the index at which the write was applied, or 0. The leader all
// hosts agree on may be one that does not run here (an outsider all of them
// believe after a lie): then it is proposed through host 1.
uint64_t Write(FuzzCluster& cl, uint64_t shard, const std::string& cmd,
               Budget budget = kFullBudget) {
  for (int attempt = 0; attempt < budget.attempts; ++attempt) {
    if (attempt > 0) {
      for (int i = 0; i < 80; ++i) cl.Step(i % 4 == 0);
    }
    if (!cl.DriveUntil([&] { return Agreed(cl, shard); }, budget.steps)) return 0;
    const uint64_t leader = cl.host(1).GetReplicaInfo(shard)->leader_id;
    auto h = cl.host(IsMember(leader) ? static_cast<int>(leader) : 1).Propose(shard, cmd, 3600s);
    if (!h.ok()) continue;
    if (!cl.DriveUntil([&] { return h->Done(); }, budget.steps)) {
      if (g_log)
        std::fprintf(stderr, "fuzz: write %s: not done%s\n", cmd.c_str(),
                     Describe(cl, shard).c_str());
      continue;
    }
    const RequestResult w = h->Wait();
    if (w.ok()) return w.value;  // the test state machine answers with the entry's index
    if (g_log)
      std::fprintf(stderr, "fuzz: write %s: code %d%s\n", cmd.c_str(), static_cast<int>(w.code),
                   Describe(cl, shard).c_str());
  }
  return 0;
}

// The shard elects a leader every host agrees on, commits a write, and
// every replica applies the same entries; no outsider's command applied.
// Returns what failed, or "".
std::string CheckShard(FuzzCluster& cl, uint64_t shard, int round, Budget budget) {
  const std::string name = "shard " + std::to_string(shard) + ": ";
  const uint64_t written = Write(cl, shard, "check=" + std::to_string(round), budget);
  if (written == 0) {
    return name + "no write commits (a leader all hosts agree on, then a proposal applied)" +
           Describe(cl, shard);
  }
  // Proposals the program left behind may still commit: compare the
  // replicas once all applied the same index, at or after the write.
  const bool caught_up = cl.DriveUntil(
      [&] {
        uint64_t applied = 0;
        for (int i = 1; i <= kHosts; ++i) {
          auto info = cl.host(i).GetReplicaInfo(shard);
          if (!info.ok() || info->applied_index < written) return false;
          if (i > 1 && info->applied_index != applied) return false;
          applied = info->applied_index;
        }
        return true;
      },
      budget.steps);
  if (!caught_up) return name + "a replica does not catch up" + Describe(cl, shard);
  const std::string hash = ReadKey(cl, 1, shard, "__hash", "!");
  for (int i = 1; i <= kHosts; ++i) {
    if (ReadKey(cl, i, shard, "__hash", "?") != hash) {
      return name + "replicas applied different entries" + Describe(cl, shard);
    }
    if (!ReadKey(cl, i, shard, "evil", "").empty()) {
      return name + "an outsider's command was applied on host " + std::to_string(i);
    }
  }
  return "";
}

// A received snapshot directory left above its replica's commit index once
// the replicas caught up: one the engine refused, or that no install
// message refers to, whose disk space nothing would ever return; or "".
std::string LeftoverSnapshot(FuzzCluster& cl, int host) {
  for (uint64_t shard = 1; shard <= kShards; ++shard) {
    auto info = cl.host(host).GetReplicaInfo(shard);
    if (!info.ok()) continue;
    const uint64_t commit = info->commit_index;
    const std::string root = engine::SnapshotRoot(cl.root() + "/h" + std::to_string(host), shard,
                                                  static_cast<uint64_t>(host));
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
      const std::string name = e.path().filename().string();
      if (!name.starts_with("received-")) continue;
      const uint64_t index = std::strtoull(name.c_str() + 9, nullptr, 10);
      if (index > commit) return name + " (commit " + std::to_string(commit) + ")";
    }
  }
  return "";
}

std::string Check(FuzzCluster& cl, Budget budget) {
  if (!cl.start_failures().empty()) {
    return "a replica does not start again: " + cl.start_failures().front();
  }
  cl.net().SetFaults({});
  cl.net().HealAll();
  for (uint64_t shard = 1; shard <= kShards; ++shard) {
    if (std::string why = CheckShard(cl, shard, 1, budget); !why.empty()) return why;
  }
  for (int i = 1; i <= kHosts; ++i) {
    if (cl.host(i).GetMetrics().storage_failed) {
      return "host " + std::to_string(i) + ": storage failed";
    }
    if (std::string left = LeftoverSnapshot(cl, i); !left.empty()) {
      return "host " + std::to_string(i) +
             ": a received snapshot nobody will install is kept: " + left;
    }
  }
  return "";
}

// Brings the cluster to where every input starts: leaders elected, a write
// applied on both shards, and host 3 caught up on shard 1 by a snapshot
// stream (captured, for programs to replay).
void Establish(FuzzCluster& cl) {
  for (uint64_t shard = 1; shard <= kShards; ++shard) {
    if (Write(cl, shard, "init=1") == 0) Fail("the cluster did not come up" + Describe(cl, shard));
  }
  cl.net().Isolate(FuzzCluster::Name(3));
  for (int i = 0; i < 12; ++i) {
    auto h = cl.host(static_cast<int>(cl.host(1).GetReplicaInfo(1)->leader_id))
                 .Propose(1, "lag=" + std::to_string(i), 3600s);
    if (h.ok()) cl.DriveUntil([&] { return h->Done(); }, 200);
  }
  cl.net().HealAll();
  cl.DriveUntil([&] { return !cl.capture().snapshots.empty(); }, 400);
}

std::string g_root;

void RunOne(const uint8_t* data, size_t size) {
  ++g_stats.inputs;
  const std::string root = g_root + "/run";
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  std::filesystem::create_directories(root, ec);
  {
    FuzzCluster cl(root);
    Establish(cl);
    Input in(data, size);
    Program program(&cl, &in);
    if (in.Byte() % 8 == kRawMode) {
      program.RunRaw();
    } else {
      program.Run();
    }
    const std::string why = Check(cl, program.lied() ? kLieBudget : kFullBudget);
    if (program.lied()) {
      ++g_stats.lenient_checks;
      if (!why.empty()) {
        if (g_strict) Fail(why + "\n(after a member's lie; FLOTILLA_FUZZ_STRICT=1)");
        if (++g_stats.lenient_failures <= 10) {
          std::fprintf(stderr, "fuzz: after a member's lie (not a crash): %s\n", why.c_str());
        }
      }
    } else {
      ++g_stats.full_checks;
      if (!why.empty()) Fail(why);
    }
  }
  std::filesystem::remove_all(root, ec);
}

void PrintStats() {
  std::fprintf(stderr,
               "fuzz: %llu inputs: %llu fully checked, %llu after a member's lie (%llu of them "
               "failed a check); %llu injected messages, %llu replays, %llu snapshot streams, "
               "%llu raw\n",
               static_cast<unsigned long long>(g_stats.inputs),
               static_cast<unsigned long long>(g_stats.full_checks),
               static_cast<unsigned long long>(g_stats.lenient_checks),
               static_cast<unsigned long long>(g_stats.lenient_failures),
               static_cast<unsigned long long>(g_stats.injected),
               static_cast<unsigned long long>(g_stats.replayed),
               static_cast<unsigned long long>(g_stats.snapshots),
               static_cast<unsigned long long>(g_stats.raw));
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The seed corpus: programs that use every operation, and raw-mode inputs
// made of the genuine traffic of one established cluster (each distinct
// message type once, heartbeats coalesced as senders send them, and the
// snapshot stream).
void WriteSeeds(const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::mt19937_64 rng(42);
  for (int n = 0; n < 56; ++n) {
    std::string p(1, '\0');
    for (int op = 0; op < 1 + n % 4; ++op) {
      p += static_cast<char>((n + op * 5) % 14);
      for (int k = 0; k < 14; ++k) p += static_cast<char>(rng() & 0xff);
    }
    WriteFile(dir + "/program-" + std::to_string(n), p);
  }
  const std::string root = g_root + "/seeds";
  std::filesystem::create_directories(root);
  FuzzCluster cl(root);
  cl.capture().keep_first = true;  // the elections too
  Establish(cl);
  std::set<std::pair<int, int>> seen;
  int n = 0;
  for (const CapturedMessage& c : cl.capture().messages) {
    if (!seen.insert({static_cast<int>(c.message.type), c.message.entries.empty()}).second)
      continue;
    wire::MessageBatch batch;
    raft::Message m = c.message;
    if (transport::CanCoalesce(m)) {
      transport::AppendHeartbeat(m, batch.mutable_heartbeats());
    } else {
      transport::ToWire(std::move(m), batch.add_messages());
    }
    std::string bytes{static_cast<char>(kRawMode), static_cast<char>(c.to_host - 1)};
    WriteFile(dir + "/raw-batch-" + std::to_string(n++), bytes + batch.SerializeAsString());
  }
  for (const CapturedSnapshot& s : cl.capture().snapshots) {
    std::string bytes{static_cast<char>(kRawMode), static_cast<char>(0x80 | (s.to_host - 1))};
    for (const wire::SnapshotChunk& c : Chunks(s.install, s.files, 0)) {
      const std::string chunk = c.SerializeAsString();
      bytes += static_cast<char>(chunk.size() & 0xff);
      bytes += static_cast<char>(chunk.size() >> 8);
      bytes += chunk;
    }
    WriteFile(dir + "/raw-snapshot-" + std::to_string(n++), bytes);
  }
  std::fprintf(stderr, "fuzz: wrote %d raw seeds and 56 programs to %s\n", n, dir.c_str());
}

}  // namespace
}  // namespace flotilla::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace flotilla::fuzz;
  g_log = std::getenv("FLOTILLA_FUZZ_LOG") != nullptr;
  if (!g_log) spdlog::set_level(spdlog::level::off);
  g_strict = std::getenv("FLOTILLA_FUZZ_STRICT") != nullptr;
  // Snapshot files are fsynced: keep them in memory when /dev/shm exists.
  const std::string base = std::filesystem::exists("/dev/shm")
                               ? "/dev/shm"
                               : std::filesystem::temp_directory_path().string();
  g_root = base + "/flotilla-fuzz-" + std::to_string(getpid());
  std::filesystem::create_directories(g_root);
  std::atexit([] {
    PrintStats();
    std::error_code ec;
    std::filesystem::remove_all(g_root, ec);
  });
  if (const char* dir = std::getenv("FLOTILLA_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  flotilla::fuzz::RunOne(data, size);
  return 0;
}
