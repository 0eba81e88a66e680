#include "tools/nodehost/bench.h"

#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "tools/nodehost/cli.h"
#include "tools/nodehost/client.h"
#include "tools/nodehost/metrics.h"
#include "tools/nodehost/service.h"

namespace flotilla::nodehost {

size_t LatencyHistogram::Index(uint64_t micros) {
  if (micros < kLinear) return static_cast<size_t>(micros);
  const int e = std::bit_width(micros) - 1;  // >= 6
  const uint64_t sub = (micros >> (e - 5)) & (kSub - 1);
  return kLinear + static_cast<size_t>(e - 6) * kSub + static_cast<size_t>(sub);
}

uint64_t LatencyHistogram::LowerBound(size_t index) {
  if (index < kLinear) return index;
  const size_t j = index - kLinear;
  const int e = static_cast<int>(j / kSub) + 6;
  return (kSub + j % kSub) << (e - 5);
}

void LatencyHistogram::Add(uint64_t micros) {
  buckets_[Index(micros)].fetch_add(1, std::memory_order_relaxed);
}

uint64_t LatencyHistogram::count() const {
  uint64_t n = 0;
  for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
  return n;
}

uint64_t LatencyHistogram::Percentile(double q) const {
  const uint64_t n = count();
  if (n == 0) return 0;
  const auto rank = static_cast<uint64_t>(q * static_cast<double>(n - 1)) + 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += buckets_[i].load(std::memory_order_relaxed);
    if (seen >= rank) return LowerBound(i);
  }
  return LowerBound(kBuckets - 1);
}

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// User plus system CPU time of a process, in seconds (/proc/<pid>/stat).
double ProcessCpuSeconds(int pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return 0;
  char buf[1024];
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const std::string all(buf, n);
  const size_t close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  // Fields after the command: state is field 3, utime 14, stime 15.
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  const auto s = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// The cluster as the load sees it: connections to every daemon, the shard
// map, and each shard's leader (updated from the daemons' redirects).
class Cluster {
 public:
  bool Connect(const BenchOptions& o, std::string* error) {
    ClientOptions co;
    co.endpoints = o.endpoints;
    co.token = o.token;
    std::unique_ptr<Client> c = Client::Create(co, error);
    if (!c) return false;
    ShardMapResponse map;
    CallInfo info = c->GetShardMap(&map);
    if (!info.ok()) {
      *error = "cannot read the shard map: " + info.status.error_message();
      return false;
    }
    map_ = ShardMap({map.shard_ids().begin(), map.shard_ids().end()});
    for (const NodeAddress& n : map.nodes()) AddEndpoint(n.client_address(), o.conns);
    leader_ = std::vector<std::atomic<size_t>>(map_.shard_ids().size());
    for (const std::string& e : addresses_) {
      ShardsResponse shards;
      if (!c->Shards(e, &shards).ok()) continue;
      for (const ReplicaStatus& r : shards.replicas())
        SetLeader(r.shard(), r.leader_client_address());
    }
    return true;
  }

  size_t ShardIndex(std::string_view key) const {
    const uint64_t shard = map_.ShardOf(key);
    const auto& ids = map_.shard_ids();
    return static_cast<size_t>(std::lower_bound(ids.begin(), ids.end(), shard) - ids.begin());
  }
  KV::Stub* StubFor(size_t shard_index, uint32_t client) {
    const size_t e = leader_[shard_index].load(std::memory_order_relaxed);
    const auto& conns = stubs_[e];
    return conns[client % conns.size()].get();
  }
  void SetLeader(uint64_t shard, const std::string& address) {
    const auto& ids = map_.shard_ids();
    const auto it = std::lower_bound(ids.begin(), ids.end(), shard);
    const auto a = std::find(addresses_.begin(), addresses_.end(), address);
    if (it == ids.end() || *it != shard || a == addresses_.end()) return;
    leader_[static_cast<size_t>(it - ids.begin())].store(
        static_cast<size_t>(a - addresses_.begin()), std::memory_order_relaxed);
  }
  void SetLeaderOf(std::string_view key, const std::string& address) {
    SetLeader(map_.ShardOf(key), address);
  }

 private:
  void AddEndpoint(const std::string& address, uint32_t conns) {
    addresses_.push_back(address);
    stubs_.emplace_back();
    for (uint32_t i = 0; i < std::max<uint32_t>(conns, 1); ++i) {
      grpc::ChannelArguments args;
      // Each channel its own TCP connection (not gRPC's shared subchannel).
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("flotilla.bench.conn", static_cast<int>(i));
      stubs_.back().push_back(KV::NewStub(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
    }
  }

  ShardMap map_;
  std::vector<std::string> addresses_;
  std::vector<std::vector<std::unique_ptr<KV::Stub>>> stubs_;
  std::vector<std::atomic<size_t>> leader_;
};

// What every client shares: the phase, the counters, the histograms.
struct Shared {
  const BenchOptions* o = nullptr;
  Cluster* cluster = nullptr;
  std::atomic<int> phase{0};  // 0 load, 1 warmup, 2 measure, 3 stop
  std::atomic<uint64_t> load_next{0};
  LatencyHistogram latency;
  std::mutex mu;
  std::map<std::string, uint64_t> errors;  // GUARDED_BY(mu)
  std::condition_variable idle;
  uint32_t running = 0;  // GUARDED_BY(mu)
};

// One closed-loop client: a request in flight at a time.
class BenchClient {
 public:
  BenchClient(Shared* s, uint32_t id) : s_(s), id_(id), rng_(id * 7919 + 1) {
    value_.assign(s->o->val_size, 'v');
    key_.resize(s->o->key_size, 'k');
  }
  void Start() { Next(); }

 private:
  void SpaceKey(uint64_t i) {
    char buf[32];
    const int n = std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(i));
    key_.assign(s_->o->key_size, 'k');
    std::copy_n(buf, std::min<size_t>(static_cast<size_t>(n), key_.size()), key_.begin());
    key_.insert(0, s_->o->key_prefix);
  }
  // A key no other client writes: its id and sequence number.
  void UniqueKey() {
    char buf[40];
    const int n = std::snprintf(buf, sizeof buf, "%04x%012llx", id_ & 0xffff,
                                static_cast<unsigned long long>(seq_++));
    key_.assign(s_->o->key_size, 'k');
    std::copy_n(buf, std::min<size_t>(static_cast<size_t>(n), key_.size()), key_.begin());
    key_.insert(0, s_->o->key_prefix);
  }

  void Next() {
    const int phase = s_->phase.load();
    bool get = false;
    if (phase == 0) {
      const uint64_t i = s_->load_next.fetch_add(1);
      if (i >= s_->o->key_space) return Stop();
      SpaceKey(i);
    } else if (phase == 3) {
      return Stop();
    } else if (s_->o->op == "put") {
      UniqueKey();
    } else {
      std::uniform_int_distribution<uint64_t> pick(0, s_->o->key_space - 1);
      SpaceKey(pick(rng_));
      get = s_->o->op == "get" ||
            std::uniform_real_distribution<double>(0, 1)(rng_) < s_->o->read_ratio;
    }
    measured_ = phase == 2;
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(s_->o->timeout_ms));
    if (!s_->o->token.empty()) ctx_->AddMetadata("authorization", "Bearer " + s_->o->token);
    KV::Stub* stub = s_->cluster->StubFor(s_->cluster->ShardIndex(key_), id_);
    start_ = Clock::now();
    auto done = [this](grpc::Status st) { Done(st); };
    if (get) {
      get_.set_key(key_);
      stub->async()->Get(ctx_.get(), &get_, &get_res_, std::move(done));
    } else {
      put_.set_key(key_);
      put_.set_value(value_);
      stub->async()->Put(ctx_.get(), &put_, &put_res_, std::move(done));
    }
  }

  void Done(const grpc::Status& st) {
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start_).count();
    if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      const auto& md = ctx_->GetServerTrailingMetadata();
      const auto it = md.find(kLeaderHeader);
      if (it != md.end())
        s_->cluster->SetLeaderOf(key_, std::string(it->second.data(), it->second.size()));
    }
    if (measured_ && s_->phase.load() == 2) {
      if (st.ok()) {
        s_->latency.Add(static_cast<uint64_t>(micros));
      } else {
        std::lock_guard<std::mutex> l(s_->mu);
        ++s_->errors[std::string(GrpcCodeName(static_cast<int>(st.error_code())))];
      }
    }
    Next();
  }

  void Stop() {
    std::lock_guard<std::mutex> l(s_->mu);
    if (--s_->running == 0) s_->idle.notify_all();
  }

  Shared* s_;
  uint32_t id_;
  uint64_t seq_ = 0;
  std::mt19937_64 rng_;
  std::string key_, value_;
  bool measured_ = false;
  std::unique_ptr<grpc::ClientContext> ctx_;
  PutRequest put_;
  PutResponse put_res_;
  GetRequest get_;
  GetResponse get_res_;
  Clock::time_point start_;
};

// Starts every client and waits until all have stopped.
void RunPhase(Shared* s, std::vector<std::unique_ptr<BenchClient>>* clients, int phase,
              const std::function<void()>& while_running) {
  std::unique_lock<std::mutex> l(s->mu);
  s->running = static_cast<uint32_t>(clients->size());
  s->phase = phase;
  l.unlock();
  for (auto& c : *clients) c->Start();
  while_running();
  l.lock();
  s->idle.wait(l, [s] { return s->running == 0; });
}

void Print(const BenchOptions& o, const BenchResult& r) {
  const auto per_op = [&r](double cpu) { return r.ok == 0 ? 0.0 : cpu * 1e6 / r.ok; };
  if (o.json) {
    json j = {{"op", o.op},
              {"clients", o.clients},
              {"conns", o.conns},
              {"seconds", r.seconds},
              {"key_size", o.key_size},
              {"val_size", o.val_size},
              {"ok", r.ok},
              {"ops_per_second", r.ops_per_second},
              {"p50_ms", r.p50_ms},
              {"p99_ms", r.p99_ms},
              {"p999_ms", r.p999_ms},
              {"errors", r.errors},
              {"error_codes", r.error_codes},
              {"client_cpu_us_per_op", per_op(r.client_cpu_seconds)}};
    if (!o.pids.empty()) j["server_cpu_us_per_op"] = per_op(r.server_cpu_seconds);
    std::cout << j.dump() << "\n";
    return;
  }
  std::printf(
      "%s: %u clients over %u connections per daemon, %.1f s, %u-byte keys, %u-byte values\n",
      o.op.c_str(), o.clients, o.conns, r.seconds, o.key_size, o.val_size);
  std::printf("  %.0f requests/s (%llu ok, %llu errors)\n", r.ops_per_second,
              static_cast<unsigned long long>(r.ok), static_cast<unsigned long long>(r.errors));
  std::printf("  latency ms: p50 %.3f  p99 %.3f  p99.9 %.3f\n", r.p50_ms, r.p99_ms, r.p999_ms);
  for (const auto& [code, n] : r.error_codes)
    std::printf("  error %s: %llu\n", code.c_str(), static_cast<unsigned long long>(n));
  if (!o.pids.empty())
    std::printf("  server CPU per request: %.1f us\n", per_op(r.server_cpu_seconds));
  std::printf("  this client's CPU per request: %.1f us\n", per_op(r.client_cpu_seconds));
}

}  // namespace

bool MeasureBench(const BenchOptions& o, BenchResult* out, std::string* error) {
  Cluster cluster;
  if (!cluster.Connect(o, error)) return false;
  Shared s;
  s.o = &o;
  s.cluster = &cluster;
  std::vector<std::unique_ptr<BenchClient>> clients;
  for (uint32_t i = 0; i < o.clients; ++i) clients.push_back(std::make_unique<BenchClient>(&s, i));
  const auto sleep = [](double seconds) {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  };
  // Reads need keys to find: write the key space first.
  if (o.op != "put") RunPhase(&s, &clients, 0, [] {});
  BenchResult& r = *out;
  RunPhase(&s, &clients, 1, [&] {
    sleep(o.warmup);
    const auto cpu = [&o] {
      double sum = 0;
      for (int pid : o.pids) sum += ProcessCpuSeconds(pid);
      return sum;
    };
    const double server0 = cpu(), client0 = SelfCpuSeconds();
    const auto t0 = Clock::now();
    s.phase = 2;
    sleep(o.seconds);
    s.phase = 3;
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.server_cpu_seconds = cpu() - server0;
    r.client_cpu_seconds = SelfCpuSeconds() - client0;
  });
  r.ok = s.latency.count();
  r.error_codes = s.errors;
  for (const auto& [code, n] : s.errors) r.errors += n;
  r.ops_per_second = r.seconds > 0 ? static_cast<double>(r.ok) / r.seconds : 0;
  const auto ms = [&s](double q) { return static_cast<double>(s.latency.Percentile(q)) / 1000; };
  r.p50_ms = ms(0.5);
  r.p99_ms = ms(0.99);
  r.p999_ms = ms(0.999);
  return true;
}

int RunBench(const BenchOptions& o) {
  BenchResult r;
  std::string error;
  if (!MeasureBench(o, &r, &error)) {
    std::cerr << "nodehost bench: " << error << "\n";
    return kExitUnreachable;
  }
  Print(o, r);
  return kExitOk;
}

}  // namespace flotilla::nodehost
