// multigroup_bench: the multi-group throughput benchmark (issue 7).
//
// Three NodeHosts (real gRPC transport on loopback, RocksDB with fsync)
// run G shards x 3 replicas; C logical clients propose P-byte payloads
// (closed loop: each client issues its next request when the previous one
// completes, or open loop at --rate ops/s) for --seconds after --warmup,
// optionally mixing in linearizable reads. Prints a progress line each
// second, a table at the end, and with --json one JSON object per run.
//
//   multigroup_bench                                  # G=48 C=1024 P=16 D=20
//   multigroup_bench --groups 1000 --clients 1000 --rtt-ms 10 --json
//   multigroup_bench --groups 10000 --clients 0 --quiesce --seconds 10   # idle shards
//   multigroup_bench --processes                      # three NodeHost processes
//   multigroup_bench --addresses a:1,b:2,c:3 --host-index 0   # one host of a cluster
//
// "C clients" are logical: a few client threads each keep their clients'
// requests in flight through the asynchronous API (RequestHandle::OnComplete),
// so C=1024 costs no 1,024 OS threads. A proposal goes to the NodeHost of the
// shard's leader (replica id i lives on host i-1), so no forwarding hop is
// measured unless leaders are unknown.
//
// `docs/benchmark.md` explains every figure.
#include <dlfcn.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "flotilla/events.h"
#include "flotilla/node_host.h"

// ---------------------------------------------------------------------------
// fsync counting. The benchmark binary defines fsync and fdatasync, so the
// calls RocksDB (a shared library) makes resolve here first; each counts and
// forwards to the C library. This measures entries per durable write without
// any counter inside the engine.
namespace {
std::atomic<uint64_t> g_syncs{0};
template <typename Fn>
Fn RealFn(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}
}  // namespace

extern "C" int fdatasync(int fd) {
  using Fn = int (*)(int);
  static Fn real = RealFn<Fn>("fdatasync");
  g_syncs.fetch_add(1, std::memory_order_relaxed);
  return real(fd);
}

extern "C" int fsync(int fd) {
  using Fn = int (*)(int);
  static Fn real = RealFn<Fn>("fsync");
  g_syncs.fetch_add(1, std::memory_order_relaxed);
  return real(fd);
}

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// Flags.

struct Options {
  uint64_t groups = 48;
  uint64_t clients = 1024;
  uint64_t payload = 16;
  double seconds = 20;
  double warmup = 5;
  double read_ratio = 0;
  double rate = 0;  // ops/s for all clients together; 0: closed loop
  uint64_t rtt_ms = 10;
  uint32_t election_rtt = 10;
  uint32_t heartbeat_rtt = 1;
  uint32_t client_threads = 2;
  uint32_t step_workers = 0;
  uint32_t apply_workers = 0;
  bool quiesce = false;
  bool balance = true;
  bool json = false;
  bool processes = false;
  bool progress = true;
  int host_index = -1;  // >= 0: run only this host of --addresses
  std::vector<std::string> addresses;
  std::string dir;
  std::string json_out;  // also append the JSON object to this file
  uint64_t timeout_ms = 10000;
  uint64_t snapshot_entries = 0;
  bool histogram_out = false;  // child of --processes: print buckets too
};

void Usage() {
  std::fprintf(
      stderr,
      "usage: multigroup_bench [--groups G] [--clients C] [--payload P] [--seconds D]\n"
      "  [--warmup W] [--read-ratio R] [--rate OPS] [--rtt-ms MS] [--election-rtt T] "
      "[--heartbeat-rtt T]\n"
      "  [--client-threads N] [--step-workers N] [--apply-workers N] [--quiesce]\n"
      "  [--no-balance] [--snapshot-entries N] [--timeout-ms MS] [--dir PATH]\n"
      "  [--processes | --addresses A,B,C --host-index I] [--json] [--json-out FILE] [--quiet]\n");
}

bool ParseOptions(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string v;
    const auto eq = a.find('=');
    if (eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto next = [&]() -> const char* {
      if (eq != std::string::npos) return v.c_str();
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--groups")
      o->groups = std::strtoull(next(), nullptr, 10);
    else if (a == "--clients")
      o->clients = std::strtoull(next(), nullptr, 10);
    else if (a == "--payload")
      o->payload = std::strtoull(next(), nullptr, 10);
    else if (a == "--seconds")
      o->seconds = std::strtod(next(), nullptr);
    else if (a == "--warmup")
      o->warmup = std::strtod(next(), nullptr);
    else if (a == "--read-ratio")
      o->read_ratio = std::strtod(next(), nullptr);
    else if (a == "--rate")
      o->rate = std::strtod(next(), nullptr);
    else if (a == "--rtt-ms")
      o->rtt_ms = std::strtoull(next(), nullptr, 10);
    else if (a == "--election-rtt")
      o->election_rtt = static_cast<uint32_t>(std::strtoul(next(), nullptr, 10));
    else if (a == "--heartbeat-rtt")
      o->heartbeat_rtt = static_cast<uint32_t>(std::strtoul(next(), nullptr, 10));
    else if (a == "--client-threads")
      o->client_threads = static_cast<uint32_t>(std::strtoul(next(), nullptr, 10));
    else if (a == "--step-workers")
      o->step_workers = static_cast<uint32_t>(std::strtoul(next(), nullptr, 10));
    else if (a == "--apply-workers")
      o->apply_workers = static_cast<uint32_t>(std::strtoul(next(), nullptr, 10));
    else if (a == "--snapshot-entries")
      o->snapshot_entries = std::strtoull(next(), nullptr, 10);
    else if (a == "--timeout-ms")
      o->timeout_ms = std::strtoull(next(), nullptr, 10);
    else if (a == "--dir")
      o->dir = next();
    else if (a == "--json-out")
      o->json_out = next();
    else if (a == "--host-index")
      o->host_index = std::atoi(next());
    else if (a == "--addresses") {
      std::stringstream ss(next());
      std::string item;
      while (std::getline(ss, item, ',')) o->addresses.push_back(item);
    } else if (a == "--quiesce")
      o->quiesce = true;
    else if (a == "--no-balance")
      o->balance = false;
    else if (a == "--json")
      o->json = true;
    else if (a == "--quiet")
      o->progress = false;
    else if (a == "--processes")
      o->processes = true;
    else if (a == "--histogram-out")
      o->histogram_out = true;
    else if (a == "--help") {
      Usage();
      std::exit(0);
    } else {
      Usage();
      return false;
    }
  }
  if (o->groups == 0 || o->client_threads == 0 || o->seconds <= 0) {
    Usage();
    return false;
  }
  if (o->host_index >= 0 && (o->addresses.size() != 3 || o->host_index > 2)) {
    std::fprintf(stderr, "--host-index needs --addresses with three host:port entries\n");
    return false;
  }
  // The engine's default (one step worker per core) is for one NodeHost per
  // machine. Here the three share the machine's cores (in one process or as
  // three processes), so each gets a third of them: more step workers than
  // cores only add fsyncs and wake-ups (measured in docs/benchmark.md).
  if (o->step_workers == 0 && o->host_index < 0) {
    o->step_workers = std::max(1u, std::thread::hardware_concurrency() / 3);
  }
  return true;
}

// ---------------------------------------------------------------------------
// Latency histogram, log-linear: exact below 64 us, then 32 sub-buckets per
// power of two (at most ~3% error). Recording is one increment, no allocation.

class Histogram {
 public:
  static constexpr int kLinear = 64;
  static constexpr int kSub = 32;
  static constexpr int kBuckets = kLinear + kSub * 40;

  void Record(uint64_t us) {
    ++counts_[static_cast<size_t>(Index(us))];
    ++total_;
  }
  void Merge(const Histogram& h) {
    for (int i = 0; i < kBuckets; ++i)
      counts_[static_cast<size_t>(i)] += h.counts_[static_cast<size_t>(i)];
    total_ += h.total_;
  }
  void Add(int bucket, uint64_t n) {
    if (bucket < 0 || bucket >= kBuckets) return;
    counts_[static_cast<size_t>(bucket)] += n;
    total_ += n;
  }
  void Clear() {
    counts_.fill(0);
    total_ = 0;
  }
  uint64_t count() const { return total_; }
  uint64_t bucket(int i) const { return counts_[static_cast<size_t>(i)]; }
  // The value (us) below which a fraction p of the samples lie: the middle
  // of the bucket holding that rank.
  double Percentile(double p) const {
    if (total_ == 0) return 0;
    const auto rank = static_cast<uint64_t>(p * static_cast<double>(total_ - 1)) + 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[static_cast<size_t>(i)];
      if (seen >= rank)
        return (static_cast<double>(Lower(i)) + static_cast<double>(Lower(i + 1))) / 2;
    }
    return static_cast<double>(Lower(kBuckets));
  }

  static int Index(uint64_t v) {
    if (v < kLinear) return static_cast<int>(v);
    const int msb = 63 - std::countl_zero(v);  // >= 6
    const int shift = msb - 5;                 // v >> shift lies in [32, 63]
    const int i = kLinear + (msb - 6) * kSub + static_cast<int>((v >> shift) - kSub);
    return std::min(i, kBuckets - 1);
  }
  static uint64_t Lower(int i) {
    if (i < kLinear) return static_cast<uint64_t>(i);
    const int k = i - kLinear;
    const int msb = k / kSub + 6;
    return static_cast<uint64_t>(k % kSub + kSub) << (msb - 5);
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
};

// ---------------------------------------------------------------------------
// The state machine under test: as cheap as possible, so the figures are the
// engine's. It counts entries and keeps an FNV hash of the payloads.

class BenchStateMachine final : public flotilla::StateMachine {
 public:
  flotilla::Status Update(std::span<flotilla::SMEntry> entries) override {
    for (flotilla::SMEntry& e : entries) {
      for (char c : e.cmd) hash_ = (hash_ ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
      ++count_;
      e.result = e.index;
    }
    return flotilla::Status::Ok();
  }
  flotilla::Result<std::string> Lookup(std::string_view) override { return std::to_string(count_); }
  flotilla::Status SaveSnapshot(flotilla::SnapshotWriter* w) override {
    return w->Write(std::to_string(count_) + " " + std::to_string(hash_));
  }
  flotilla::Status RecoverFromSnapshot(flotilla::SnapshotReader* r) override {
    std::string all, chunk;
    do {
      FLOTILLA_RETURN_IF_ERROR(r->Read(1 << 16, &chunk));
      all += chunk;
    } while (!chunk.empty());
    std::sscanf(all.c_str(), "%" SCNu64 " %" SCNu64, &count_, &hash_);
    return flotilla::Status::Ok();
  }

 private:
  uint64_t count_ = 0;
  uint64_t hash_ = 1469598103934665603ULL;
};

// ---------------------------------------------------------------------------
// Leader changes: every replica reports the leader it learns; a change is a
// new term with a known leader, counted once per shard and term.

class LeaderCounter final : public flotilla::EventListener {
 public:
  explicit LeaderCounter(uint64_t groups) : terms_(groups + 1) {}
  void LeaderChanged(uint64_t shard, uint64_t, uint64_t leader, uint64_t term) override {
    if (leader == 0 || shard >= terms_.size()) return;
    uint64_t seen = terms_[shard].load(std::memory_order_relaxed);
    while (term > seen) {
      if (terms_[shard].compare_exchange_weak(seen, term)) {
        if (counting_.load(std::memory_order_relaxed)) changes_.fetch_add(1);
        return;
      }
    }
  }
  void StartCounting() { counting_.store(true); }
  void StopCounting() { counting_.store(false); }
  uint64_t changes() const { return changes_.load(); }

 private:
  std::vector<std::atomic<uint64_t>> terms_;
  std::atomic<bool> counting_{false};
  std::atomic<uint64_t> changes_{0};
};

// ---------------------------------------------------------------------------
// Process figures.

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// VmHWM (peak) or VmRSS (now) in MiB.
double StatusMiB(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0) return std::strtod(line.c_str() + n + 1, nullptr) / 1024.0;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// The cluster: one or three NodeHosts of this process.

class Cluster {
 public:
  Cluster(const Options& o, std::shared_ptr<LeaderCounter> leaders)
      : o_(o), leaders_(std::move(leaders)) {}
  ~Cluster() { Close(); }

  bool Start() {
    root_ = o_.dir;
    if (root_.empty()) {
      std::string tmpl =
          (std::filesystem::temp_directory_path() / "flotilla-mgbench-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) return false;
      root_ = tmpl;
      remove_root_ = true;
    }
    const bool one = o_.host_index >= 0;
    for (int i = 0; i < 3; ++i) {
      if (one && i != o_.host_index) continue;
      flotilla::NodeHostConfig c;
      c.data_dir = root_ + "/nh" + std::to_string(i);
      c.raft_address = one ? o_.addresses[static_cast<size_t>(i)] : "127.0.0.1:0";
      // The benchmark's hosts talk plaintext: run it on a trusted network.
      c.insecure = one;
      c.rtt_ms = o_.rtt_ms;
      c.step_workers = o_.step_workers;
      c.apply_workers = o_.apply_workers;
      c.listener = leaders_;
      auto nh = flotilla::NodeHost::Create(c);
      if (!nh.ok()) {
        std::fprintf(stderr, "NodeHost %d: %s\n", i, nh.status().ToString().c_str());
        return false;
      }
      addresses_.push_back((*nh)->raft_address());
      hosts_.push_back(std::move(nh).value());
    }
    if (one) addresses_ = o_.addresses;
    flotilla::Members members;
    for (uint64_t i = 0; i < 3; ++i) members[i + 1] = addresses_[i];
    for (uint64_t s = 1; s <= o_.groups; ++s) {
      for (size_t h = 0; h < hosts_.size(); ++h) {
        flotilla::ShardConfig sc;
        sc.shard_id = s;
        sc.replica_id = one ? static_cast<uint64_t>(o_.host_index) + 1 : h + 1;
        sc.election_rtt = o_.election_rtt;
        sc.heartbeat_rtt = o_.heartbeat_rtt;
        sc.quiesce_after_election_timeouts = o_.quiesce ? 1 : 0;
        sc.snapshot_entries = o_.snapshot_entries;
        flotilla::Status st = hosts_[h]->StartReplica(
            sc, members, flotilla::StartMode::kNewShard,
            [](uint64_t, uint64_t) { return std::make_unique<BenchStateMachine>(); });
        if (!st.ok()) {
          std::fprintf(stderr, "shard %" PRIu64 ": %s\n", s, st.ToString().c_str());
          return false;
        }
      }
    }
    return true;
  }

  void Close() {
    for (auto& h : hosts_) {
      if (h) h->Close();
    }
    hosts_.clear();
    if (remove_root_) {
      std::error_code ec;
      std::filesystem::remove_all(root_, ec);
      remove_root_ = false;
    }
  }

  // Replica id of shard s's leader as this process knows it (0: unknown).
  uint64_t Leader(uint64_t s) {
    for (auto& h : hosts_) {
      auto info = h->GetReplicaInfo(s);
      if (info.ok() && info->leader_id != 0) return info->leader_id;
    }
    return 0;
  }
  uint64_t Term(uint64_t s) {
    uint64_t t = 0;
    for (auto& h : hosts_) {
      auto info = h->GetReplicaInfo(s);
      if (info.ok()) t = std::max(t, info->term);
    }
    return t;
  }
  // Sum of the commit indexes of every replica in this process: the entries
  // persisted since start, as every replica saves each committed entry.
  // The LogDB saves (one per step-worker pass with anything to persist) and
  // WAL fsyncs of every host so far: count and total microseconds.
  struct Saves {
    uint64_t saves = 0, save_us = 0, fsyncs = 0, fsync_us = 0;
    uint64_t slow_saves = 0;  // longer than 50 ms (a host's pass stalled that long)
  };
  Saves SaveTotals() {
    Saves t;
    for (auto& h : hosts_) {
      const flotilla::NodeHostMetrics m = h->GetMetrics();
      t.saves += m.save_latency.count;
      t.save_us += m.save_latency.sum_us;
      for (size_t i = 0; i < m.save_latency.counts.size(); ++i) {
        if (i >= flotilla::LatencyHistogram::kBoundsUs.size() ||
            flotilla::LatencyHistogram::kBoundsUs[i] > 50000) {
          t.slow_saves += m.save_latency.counts[i];
        }
      }
      t.fsyncs += m.fsync_latency.count;
      t.fsync_us += m.fsync_latency.sum_us;
    }
    return t;
  }

  uint64_t CommitSum() {
    uint64_t sum = 0;
    for (auto& h : hosts_) {
      for (const auto& r : h->GetInfo().replicas) sum += r.commit_index;
    }
    return sum;
  }

  bool WaitLeaders(std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    uint64_t s = 1;
    while (Clock::now() < deadline) {
      while (s <= o_.groups && Leader(s) != 0) ++s;
      if (s > o_.groups) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  // The intended leader of shard s is replica (s % 3) + 1, so leaders (and
  // their work) spread evenly over the three hosts.
  static uint64_t Home(uint64_t s) { return s % 3 + 1; }

  // Transfers leaders to their home replica; returns how many are home.
  uint64_t Balance(std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    uint64_t home = 0;
    while (Clock::now() < deadline) {
      home = 0;
      for (uint64_t s = 1; s <= o_.groups; ++s) {
        const uint64_t l = Leader(s);
        if (l == Home(s)) {
          ++home;
          continue;
        }
        if (l == 0) continue;
        if (NodeHostOf(l) != nullptr) NodeHostOf(l)->TransferLeader(s, Home(s)).IgnoreError();
      }
      if (home == o_.groups) break;
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::max<uint64_t>(200, o_.rtt_ms * o_.election_rtt * 2)));
    }
    return home;
  }

  // The NodeHost of this process holding replica `replica_id`, or null.
  flotilla::NodeHost* NodeHostOf(uint64_t replica_id) {
    if (o_.host_index >= 0) {
      return replica_id == static_cast<uint64_t>(o_.host_index) + 1 ? hosts_[0].get() : nullptr;
    }
    if (replica_id == 0 || replica_id > hosts_.size()) return nullptr;
    return hosts_[replica_id - 1].get();
  }
  flotilla::NodeHost* AnyHost() { return hosts_[0].get(); }
  size_t host_count() const { return hosts_.size(); }

 private:
  const Options& o_;
  std::shared_ptr<LeaderCounter> leaders_;
  std::string root_;
  bool remove_root_ = false;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<flotilla::NodeHost>> hosts_;
};

// ---------------------------------------------------------------------------
// Clients. A client thread owns a set of logical clients. Completions arrive
// on engine threads through OnComplete. In a closed loop a successful one is
// recorded and the client's next request issued right there, in the
// callback, as an asynchronous client would: waking a client thread for
// every completion cost a context switch per write. Failures (retried after
// a pause) and the open loop's completions are queued back to the owning
// client thread.

struct Completion {
  uint32_t client;
  bool ok;
  Clock::time_point at;
};

class Router {
 public:
  Router(Cluster* c, uint64_t groups) : cluster_(c), leader_(groups + 1) {}
  void Refresh(uint64_t s) { leader_[s].store(cluster_->Leader(s), std::memory_order_relaxed); }
  void RefreshAll() {
    for (uint64_t s = 1; s < leader_.size(); ++s) Refresh(s);
  }
  flotilla::NodeHost* HostFor(uint64_t s) {
    flotilla::NodeHost* h = cluster_->NodeHostOf(leader_[s].load(std::memory_order_relaxed));
    return h ? h : cluster_->AnyHost();
  }

 private:
  Cluster* cluster_;
  std::vector<std::atomic<uint64_t>> leader_;
};

struct Counters {
  uint64_t writes = 0;
  uint64_t reads = 0;
  uint64_t errors = 0;
  Histogram write_lat;
  Histogram read_lat;
};

class ClientThread {
 public:
  ClientThread(const Options& o, Router* router, std::vector<uint64_t> shards, uint32_t index)
      : o_(o), router_(router), payload_(o.payload, 'x') {
    for (uint64_t s : shards) {
      clients_.push_back(Client{s, {}, false, index * 7919 + clients_.size() * 104729 + 1});
    }
    if (o.rate > 0 && o.client_threads > 0) {
      interval_ = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(static_cast<double>(o.client_threads) / o.rate));
    }
  }

  void Start() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "bench-client");
      Run();
    });
  }
  void Stop() {
    stopping_.store(true);
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  // Counting starts at `from`: only requests completing after it count.
  void SetWindow(Clock::time_point from) {
    std::lock_guard<std::mutex> c(counters_mu_);
    window_from_ = from;
    counters_ = Counters{};
  }
  Counters Snapshot() {
    std::lock_guard<std::mutex> l(counters_mu_);
    return counters_;
  }
  // Cheap progress figures (atomics).
  uint64_t done() const { return done_.load(std::memory_order_relaxed); }

 private:
  // A client's fields are used by whichever thread holds its one request in
  // flight: the client thread, or the engine thread that completes it.
  struct Client {
    uint64_t shard;
    Clock::time_point start;
    bool read;
    uint64_t rng;  // splitmix64 state: the read/write choice
  };

  void Run() {
    const bool open_loop = interval_.count() > 0;
    next_send_ = Clock::now();
    if (!open_loop) {
      for (uint32_t i = 0; i < clients_.size(); ++i) Issue(i, Clock::now());
    }
    std::vector<Completion> batch;
    while (true) {
      {
        std::unique_lock<std::mutex> l(mu_);
        auto ready = [&] { return stop_ || !queue_.empty() || !retry_.empty(); };
        if (open_loop) {
          cv_.wait_until(l, next_send_, ready);
        } else if (!retry_.empty()) {
          cv_.wait_for(l, 2ms, [&] { return stop_ || !queue_.empty(); });
        } else {
          cv_.wait(l, ready);
        }
        if (stop_) return;
        batch.swap(queue_);
      }
      HandleCompletions(batch);
      batch.clear();
      RetryFailed();
      if (open_loop) SendDue();
    }
  }

  void HandleCompletions(const std::vector<Completion>& batch) {
    const bool open_loop = interval_.count() > 0;
    for (const Completion& d : batch) {
      Client& cl = clients_[d.client];
      Record(cl, d.ok, d.at);
      if (!d.ok) router_->Refresh(cl.shard);
      if (open_loop) {
        idle_.push_back(d.client);
      } else if (!d.ok) {
        retry_.push_back(d.client);  // back off a little before retrying
      } else {
        Issue(d.client, Clock::now());
      }
    }
  }

  void Record(const Client& cl, bool ok, Clock::time_point at) {
    done_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> c(counters_mu_);
    if (at < window_from_) return;
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(at - cl.start).count();
    if (!ok) {
      ++counters_.errors;
    } else if (cl.read) {
      ++counters_.reads;
      counters_.read_lat.Record(static_cast<uint64_t>(std::max<int64_t>(0, us)));
    } else {
      ++counters_.writes;
      counters_.write_lat.Record(static_cast<uint64_t>(std::max<int64_t>(0, us)));
    }
  }

  // A uniform double in [0, 1) from the client's own generator (splitmix64),
  // so that completions on several engine threads never share one.
  static double NextUniform(Client& cl) {
    uint64_t z = (cl.rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-53;
  }

  void RetryFailed() {
    if (retry_.empty() || interval_.count() > 0) return;
    std::vector<uint32_t> again;
    again.swap(retry_);
    for (uint32_t i : again) Issue(i, Clock::now());
  }

  // Open loop: one request per interval, started at its scheduled time, so a
  // stall shows as latency instead of as fewer requests.
  void SendDue() {
    const auto now = Clock::now();
    if (idle_.empty() && !started_open_) {
      started_open_ = true;
      for (uint32_t i = 0; i < clients_.size(); ++i) idle_.push_back(i);
    }
    while (next_send_ <= now) {
      if (idle_.empty()) {
        // Every client is busy: the target rate is not reachable; skip ahead.
        next_send_ = now + interval_;
        break;
      }
      const uint32_t i = idle_.back();
      idle_.pop_back();
      Issue(i, next_send_);
      next_send_ += interval_;
    }
  }

  void Issue(uint32_t i, Clock::time_point start) {
    Client& cl = clients_[i];
    cl.start = start;
    cl.read = o_.read_ratio > 0 && NextUniform(cl) < o_.read_ratio;
    flotilla::NodeHost* h = router_->HostFor(cl.shard);
    const auto timeout = std::chrono::milliseconds(o_.timeout_ms);
    flotilla::Result<flotilla::RequestHandle> rh =
        cl.read ? h->Read(cl.shard, "", timeout) : h->Propose(cl.shard, payload_, timeout);
    if (!rh.ok()) {
      Push(Completion{i, false, Clock::now()});
      return;
    }
    rh->OnComplete([this, i](const flotilla::RequestResult& r) {
      const Clock::time_point at = Clock::now();
      if (r.ok() && interval_.count() == 0 && !stopping_.load(std::memory_order_relaxed)) {
        Record(clients_[i], true, at);
        Issue(i, at);
        return;
      }
      Push(Completion{i, r.ok(), at});
    });
  }

  void Push(Completion c) {
    bool was_empty;
    {
      std::lock_guard<std::mutex> l(mu_);
      was_empty = queue_.empty();
      queue_.push_back(c);
    }
    if (was_empty) cv_.notify_one();
  }

  const Options& o_;
  Router* router_;
  const std::string payload_;
  std::vector<Client> clients_;
  std::vector<uint32_t> retry_;
  std::vector<uint32_t> idle_;
  bool started_open_ = false;
  Clock::duration interval_{0};
  Clock::time_point next_send_;
  std::thread thread_;
  std::atomic<uint64_t> done_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Completion> queue_;      // guarded by mu_
  bool stop_ = false;                  // guarded by mu_
  std::atomic<bool> stopping_{false};  // no more requests from callbacks

  std::mutex counters_mu_;
  Counters counters_;                                         // guarded by counters_mu_
  Clock::time_point window_from_ = Clock::time_point::max();  // guarded by counters_mu_
};

// ---------------------------------------------------------------------------
// One run and its report.

struct Report {
  uint64_t groups = 0, clients = 0, payload = 0;
  double seconds = 0;
  double writes_per_s = 0, reads_per_s = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;
  double read_p50_ms = 0, read_p99_ms = 0;
  double cpu_s = 0, rss_mb = 0, rss_now_mb = 0;
  double entries_per_fsync = 0, fsyncs_per_s = 0;
  uint64_t leader_changes = 0, shards_changed = 0, errors = 0;
  uint64_t leaders_home = 0;
  double start_rss_mb = 0;
  std::string mode;
  Histogram write_lat, read_lat;
  uint64_t writes = 0, reads = 0, syncs = 0, entries = 0;
  // LogDB saves and WAL fsyncs in the window (all hosts) and their total time.
  uint64_t saves = 0, save_us = 0, wal_fsyncs = 0, wal_fsync_us = 0;
  uint64_t slow_saves = 0;  // saves over 50 ms
};

double MeanMs(uint64_t total_us, uint64_t n) {
  return n ? static_cast<double>(total_us) / static_cast<double>(n) / 1000 : 0;
}

void Finish(Report* r) {
  r->writes_per_s = static_cast<double>(r->writes) / r->seconds;
  r->reads_per_s = static_cast<double>(r->reads) / r->seconds;
  r->p50_ms = r->write_lat.Percentile(0.50) / 1000;
  r->p99_ms = r->write_lat.Percentile(0.99) / 1000;
  r->p999_ms = r->write_lat.Percentile(0.999) / 1000;
  r->read_p50_ms = r->read_lat.Percentile(0.50) / 1000;
  r->read_p99_ms = r->read_lat.Percentile(0.99) / 1000;
  r->entries_per_fsync =
      r->syncs ? static_cast<double>(r->entries) / static_cast<double>(r->syncs) : 0;
  r->fsyncs_per_s = static_cast<double>(r->syncs) / r->seconds;
}

std::string Json(const Report& r, bool with_buckets) {
  char buf[2048];
  std::snprintf(
      buf, sizeof buf,
      "{\"mode\":\"%s\",\"groups\":%" PRIu64 ",\"clients\":%" PRIu64 ",\"payload_bytes\":%" PRIu64
      ",\"seconds\":%.3f,\"writes_per_s\":%.1f,\"reads_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%."
      "3f,"
      "\"p999_ms\":%.3f,\"read_p50_ms\":%.3f,\"read_p99_ms\":%.3f,\"cpu_s\":%.2f,\"rss_mb\":%.1f,"
      "\"rss_now_mb\":%.1f,\"start_rss_mb\":%.1f,\"entries_per_fsync\":%.2f,\"fsyncs_per_s\":%.1f,"
      "\"leader_changes\":%" PRIu64 ",\"shards_changed\":%" PRIu64 ",\"leaders_home\":%" PRIu64
      ",\"errors\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"syncs\":%" PRIu64
      ",\"entries\":%" PRIu64 ",\"saves\":%" PRIu64 ",\"save_us\":%" PRIu64
      ",\"wal_fsyncs\":%" PRIu64 ",\"wal_fsync_us\":%" PRIu64
      ",\"save_mean_ms\":%.3f"
      ",\"slow_saves\":%" PRIu64,
      r.mode.c_str(), r.groups, r.clients, r.payload, r.seconds, r.writes_per_s, r.reads_per_s,
      r.p50_ms, r.p99_ms, r.p999_ms, r.read_p50_ms, r.read_p99_ms, r.cpu_s, r.rss_mb, r.rss_now_mb,
      r.start_rss_mb, r.entries_per_fsync, r.fsyncs_per_s, r.leader_changes, r.shards_changed,
      r.leaders_home, r.errors, r.writes, r.reads, r.syncs, r.entries, r.saves, r.save_us,
      r.wal_fsyncs, r.wal_fsync_us, MeanMs(r.save_us, r.saves), r.slow_saves);
  std::string out = buf;
  if (with_buckets) {
    for (const auto* h : {&r.write_lat, &r.read_lat}) {
      out += h == &r.write_lat ? ",\"write_hist\":[" : ",\"read_hist\":[";
      bool first = true;
      for (int i = 0; i < Histogram::kBuckets; ++i) {
        if (h->bucket(i) == 0) continue;
        if (!first) out += ',';
        out += std::to_string(i);
        out += ',';
        out += std::to_string(h->bucket(i));
        first = false;
      }
      out += "]";
    }
  }
  return out + "}";
}

void AppendJson(const Options& o, const Report& r) {
  if (o.json_out.empty()) return;
  std::ofstream out(o.json_out, std::ios::app);
  out << Json(r, false) << "\n";
}

void PrintTable(const Report& r) {
  std::printf("\n== multigroup_bench (%s): %" PRIu64 " shards x 3 replicas, %" PRIu64
              " clients, %" PRIu64 " B payload, %.0f s measured\n",
              r.mode.c_str(), r.groups, r.clients, r.payload, r.seconds);
  std::printf("  %-26s %14.0f\n", "writes/s", r.writes_per_s);
  std::printf("  %-26s %14.0f\n", "reads/s", r.reads_per_s);
  std::printf("  %-26s %14.2f\n", "write latency p50 (ms)", r.p50_ms);
  std::printf("  %-26s %14.2f\n", "write latency p99 (ms)", r.p99_ms);
  std::printf("  %-26s %14.2f\n", "write latency p99.9 (ms)", r.p999_ms);
  if (r.reads) {
    std::printf("  %-26s %14.2f\n", "read latency p50 (ms)", r.read_p50_ms);
    std::printf("  %-26s %14.2f\n", "read latency p99 (ms)", r.read_p99_ms);
  }
  std::printf("  %-26s %14.2f  (%.2f cores)\n", "CPU seconds", r.cpu_s, r.cpu_s / r.seconds);
  std::printf("  %-26s %14.1f  (now %.1f, at start %.1f)\n", "peak RSS (MiB)", r.rss_mb,
              r.rss_now_mb, r.start_rss_mb);
  std::printf("  %-26s %14.1f  (%.0f fsyncs/s)\n", "entries per fsync", r.entries_per_fsync,
              r.fsyncs_per_s);
  std::printf("  %-26s %14.2f  (%.0f saves/s; WAL fsync %.2f ms)\n", "LogDB save mean (ms)",
              MeanMs(r.save_us, r.saves), static_cast<double>(r.saves) / r.seconds,
              MeanMs(r.wal_fsync_us, r.wal_fsyncs));
  std::printf("  %-26s %14" PRIu64 "  (a host's pass stalled that long)\n",
              "LogDB saves over 50 ms", r.slow_saves);
  std::printf("  %-26s %14" PRIu64 "  (%" PRIu64 " shards; %" PRIu64 "/%" PRIu64
              " leaders on home host)\n",
              "leader changes", r.leader_changes, r.shards_changed, r.leaders_home, r.groups);
  std::printf("  %-26s %14" PRIu64 "\n", "failed requests", r.errors);
  std::fflush(stdout);
}

// Runs the cluster (or this process's host of it) and its clients.
int RunLocal(const Options& o) {
  Report rep;
  rep.groups = o.groups;
  rep.clients = o.clients;
  rep.payload = o.payload;
  rep.seconds = o.seconds;
  rep.mode = o.host_index >= 0 ? "host-" + std::to_string(o.host_index) : "in-process";
  const double rss_base = StatusMiB("VmRSS:");
  auto leaders = std::make_shared<LeaderCounter>(o.groups);
  Cluster cluster(o, leaders);
  if (!cluster.Start()) return 1;
  const auto t_start = Clock::now();
  if (!cluster.WaitLeaders(std::chrono::seconds(60 + o.groups / 50))) {
    std::fprintf(stderr, "not every shard elected a leader in time\n");
    return 1;
  }
  const double elect_s = std::chrono::duration<double>(Clock::now() - t_start).count();
  if (o.balance) rep.leaders_home = cluster.Balance(std::chrono::seconds(20));
  if (o.progress) {
    std::fprintf(stderr,
                 "started %" PRIu64 " shards x %zu local replicas; leaders elected in %.1f s\n",
                 o.groups, cluster.host_count(), elect_s);
  }
  rep.start_rss_mb = StatusMiB("VmRSS:") - rss_base;

  // Clients: in the multi-process modes each process drives the shards whose
  // home replica it holds, with its share of the clients.
  std::vector<uint64_t> shards;
  for (uint64_t s = 1; s <= o.groups; ++s) {
    if (o.host_index < 0 || Cluster::Home(s) == static_cast<uint64_t>(o.host_index) + 1)
      shards.push_back(s);
  }
  uint64_t my_clients = o.clients;
  if (o.host_index >= 0) {
    my_clients = shards.empty() ? 0 : o.clients * shards.size() / o.groups;
  }
  Router router(&cluster, o.groups);
  router.RefreshAll();
  std::vector<std::unique_ptr<ClientThread>> threads;
  const uint32_t nthreads = static_cast<uint32_t>(
      std::min<uint64_t>(o.client_threads, std::max<uint64_t>(1, my_clients)));
  std::vector<std::vector<uint64_t>> assign(nthreads);
  for (uint64_t k = 0; k < my_clients; ++k)
    assign[k % nthreads].push_back(shards[k % shards.size()]);
  for (uint32_t t = 0; t < nthreads && my_clients > 0; ++t) {
    threads.push_back(std::make_unique<ClientThread>(o, &router, assign[t], t));
  }
  for (auto& t : threads) t->Start();

  // Warm-up, then the measured window.
  auto progress = [&](double for_s, const char* phase) {
    const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(for_s));
    uint64_t last = 0;
    for (auto& t : threads) last += t->done();
    auto last_t = Clock::now();
    while (Clock::now() < end) {
      const auto remaining = end - Clock::now();
      std::this_thread::sleep_for(std::min<Clock::duration>(remaining, 1s));
      router.RefreshAll();
      uint64_t done = 0;
      for (auto& t : threads) done += t->done();
      const double dt = std::chrono::duration<double>(Clock::now() - last_t).count();
      if (o.progress && dt > 0.05) {
        std::fprintf(
            stderr, "[%s] %8.0f requests/s  cpu %.1f s  rss %.0f MiB  leader changes %" PRIu64 "\n",
            phase, static_cast<double>(done - last) / dt, CpuSeconds(), StatusMiB("VmRSS:"),
            leaders->changes());
      }
      last = done;
      last_t = Clock::now();
    }
  };
  progress(o.warmup, "warm-up");

  std::vector<uint64_t> terms(o.groups + 1);
  for (uint64_t s = 1; s <= o.groups; ++s) terms[s] = cluster.Term(s);
  const uint64_t commits0 = cluster.CommitSum();
  const uint64_t syncs0 = g_syncs.load();
  const Cluster::Saves saves0 = cluster.SaveTotals();
  const double cpu0 = CpuSeconds();
  const auto from = Clock::now();
  for (auto& t : threads) t->SetWindow(from);
  leaders->StartCounting();
  progress(o.seconds, "measure");
  const auto to = Clock::now();
  leaders->StopCounting();
  rep.cpu_s = CpuSeconds() - cpu0;
  rep.syncs = g_syncs.load() - syncs0;
  rep.entries = cluster.CommitSum() - commits0;
  const Cluster::Saves saves1 = cluster.SaveTotals();
  rep.saves = saves1.saves - saves0.saves;
  rep.save_us = saves1.save_us - saves0.save_us;
  rep.wal_fsyncs = saves1.fsyncs - saves0.fsyncs;
  rep.wal_fsync_us = saves1.fsync_us - saves0.fsync_us;
  rep.slow_saves = saves1.slow_saves - saves0.slow_saves;
  rep.seconds = std::chrono::duration<double>(to - from).count();
  for (auto& t : threads) {
    Counters c = t->Snapshot();
    rep.writes += c.writes;
    rep.reads += c.reads;
    rep.errors += c.errors;
    rep.write_lat.Merge(c.write_lat);
    rep.read_lat.Merge(c.read_lat);
  }
  rep.leader_changes = leaders->changes();
  for (uint64_t s = 1; s <= o.groups; ++s)
    rep.shards_changed += cluster.Term(s) != terms[s] ? 1 : 0;
  if (o.balance) {
    rep.leaders_home = 0;
    for (uint64_t s = 1; s <= o.groups; ++s)
      rep.leaders_home += cluster.Leader(s) == Cluster::Home(s) ? 1 : 0;
  }
  rep.rss_mb = StatusMiB("VmHWM:");
  rep.rss_now_mb = StatusMiB("VmRSS:");
  Finish(&rep);

  // Stop issuing, then close the hosts (which completes what is in flight),
  // and only then free the client threads the callbacks point to.
  for (auto& t : threads) t->Stop();
  spdlog::set_level(spdlog::level::err);  // hosts closing one by one see their peers go
  cluster.Close();
  threads.clear();
  if (o.histogram_out || o.json) {
    std::printf("%s\n", Json(rep, o.histogram_out).c_str());
  }
  if (!o.json && !o.histogram_out) PrintTable(rep);
  if (!o.histogram_out) AppendJson(o, rep);
  std::fflush(stdout);
  return 0;
}

// Reads "key":number from a JSON line.
double JsonNumber(const std::string& line, const std::string& key) {
  const auto p = line.find("\"" + key + "\":");
  return p == std::string::npos ? 0 : std::strtod(line.c_str() + p + key.size() + 3, nullptr);
}

void JsonHistogram(const std::string& line, const std::string& key, Histogram* h) {
  const auto p = line.find("\"" + key + "\":[");
  if (p == std::string::npos) return;
  const char* c = line.c_str() + p + key.size() + 4;
  while (*c && *c != ']') {
    char* end;
    const long bucket = std::strtol(c, &end, 10);
    if (*end != ',') break;
    const unsigned long long n = std::strtoull(end + 1, &end, 10);
    h->Add(static_cast<int>(bucket), n);
    c = *end == ',' ? end + 1 : end;
  }
}

// --processes: three child processes of this program, one NodeHost each on
// fixed loopback ports; their reports are merged (histograms bucket by bucket).
int RunProcesses(const Options& o, const char* self) {
  const int base = 20000 + static_cast<int>(getpid() % 20000);
  std::string addrs;
  for (int i = 0; i < 3; ++i)
    addrs += (i ? "," : "") + std::string("127.0.0.1:") + std::to_string(base + i);
  std::vector<FILE*> pipes;
  const double cpu0 = 0;
  for (int i = 0; i < 3; ++i) {
    std::string cmd =
        std::string(self) + " --addresses " + addrs + " --host-index " + std::to_string(i) +
        " --histogram-out --quiet" + " --groups " + std::to_string(o.groups) + " --clients " +
        std::to_string(o.clients) + " --payload " + std::to_string(o.payload) + " --seconds " +
        std::to_string(o.seconds) + " --warmup " + std::to_string(o.warmup) + " --read-ratio " +
        std::to_string(o.read_ratio) + " --rate " + std::to_string(o.rate / 3) + " --rtt-ms " +
        std::to_string(o.rtt_ms) + " --election-rtt " + std::to_string(o.election_rtt) +
        " --heartbeat-rtt " + std::to_string(o.heartbeat_rtt) + " --client-threads " +
        std::to_string(o.client_threads) + " --step-workers " + std::to_string(o.step_workers) +
        " --apply-workers " + std::to_string(o.apply_workers) + " --timeout-ms " +
        std::to_string(o.timeout_ms) + " --snapshot-entries " + std::to_string(o.snapshot_entries) +
        (o.quiesce ? " --quiesce" : "");
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return 1;
    pipes.push_back(p);
  }
  Report rep;
  rep.groups = o.groups;
  rep.clients = o.clients;
  rep.payload = o.payload;
  rep.mode = "three-processes";
  int failures = 0;
  for (FILE* p : pipes) {
    std::string line;
    char buf[65536];
    while (std::fgets(buf, sizeof buf, p)) {
      if (buf[0] == '{') line = buf;
    }
    if (::pclose(p) != 0 || line.empty()) {
      ++failures;
      continue;
    }
    rep.seconds = std::max(rep.seconds, JsonNumber(line, "seconds"));
    rep.writes += static_cast<uint64_t>(JsonNumber(line, "writes"));
    rep.reads += static_cast<uint64_t>(JsonNumber(line, "reads"));
    rep.errors += static_cast<uint64_t>(JsonNumber(line, "errors"));
    rep.syncs += static_cast<uint64_t>(JsonNumber(line, "syncs"));
    rep.entries += static_cast<uint64_t>(JsonNumber(line, "entries"));
    rep.saves += static_cast<uint64_t>(JsonNumber(line, "saves"));
    rep.save_us += static_cast<uint64_t>(JsonNumber(line, "save_us"));
    rep.wal_fsyncs += static_cast<uint64_t>(JsonNumber(line, "wal_fsyncs"));
    rep.wal_fsync_us += static_cast<uint64_t>(JsonNumber(line, "wal_fsync_us"));
    rep.slow_saves += static_cast<uint64_t>(JsonNumber(line, "slow_saves"));
    rep.cpu_s += JsonNumber(line, "cpu_s");
    rep.rss_mb += JsonNumber(line, "rss_mb");
    rep.rss_now_mb += JsonNumber(line, "rss_now_mb");
    rep.start_rss_mb += JsonNumber(line, "start_rss_mb");
    rep.leader_changes =
        std::max(rep.leader_changes, static_cast<uint64_t>(JsonNumber(line, "leader_changes")));
    rep.shards_changed =
        std::max(rep.shards_changed, static_cast<uint64_t>(JsonNumber(line, "shards_changed")));
    rep.leaders_home =
        std::max(rep.leaders_home, static_cast<uint64_t>(JsonNumber(line, "leaders_home")));
    JsonHistogram(line, "write_hist", &rep.write_lat);
    JsonHistogram(line, "read_hist", &rep.read_lat);
  }
  (void)cpu0;
  if (failures) {
    std::fprintf(stderr, "%d of 3 host processes failed\n", failures);
    return 1;
  }
  Finish(&rep);
  if (o.json) {
    std::printf("%s\n", Json(rep, false).c_str());
  } else {
    PrintTable(rep);
  }
  AppendJson(o, rep);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseOptions(argc, argv, &o)) return 2;
  spdlog::set_level(spdlog::level::warn);
  if (o.processes) {
    // popen runs a shell, so /proc/self/exe must be resolved here.
    std::error_code ec;
    const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    return RunProcesses(o, ec ? argv[0] : self.c_str());
  }
  return RunLocal(o);
}
