// logdb_bench: the storage ceiling of the engine. Each save writes, for N
// shards, M entries of P payload bytes plus a hard state, in one LogDB::Save
// (one WriteBatch, one fsync when --sync=1), the way a step worker persists
// one pass. Prints saves/s and entries/s.
//
//   logdb_bench --shards=48 --entries=64 --bytes=16 --saves=2000
//   logdb_bench --shards=1 --entries=1 --bytes=16 --saves=5000
//
// Other flags: --dir=PATH (default: a fresh directory under /tmp, removed at
// exit), --wal_dir=PATH, --sync=0|1, --threads=T (T savers on disjoint
// shards, like T step workers), --backend=rocksdb|memory, and the RocksDB
// tuning knobs --write_buffer_mb, --compress, --recycle_wal, --pipelined.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "logdb/memory_logdb.h"
#include "logdb/rocks_logdb.h"

namespace {

using flotilla::logdb::LogDB;
using flotilla::logdb::ReplicaUpdate;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::map<std::string, std::string> values;
  std::string Get(const std::string& name, const std::string& fallback) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  uint64_t Int(const std::string& name, uint64_t fallback) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : std::strtoull(it->second.c_str(), nullptr, 10);
  }
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const auto eq = a.find('=');
    if (a.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::fprintf(stderr, "bad flag %s (want --name=value)\n", a.c_str());
      return false;
    }
    f->values[a.substr(2, eq - 2)] = a.substr(eq + 1);
  }
  return true;
}

struct Config {
  uint64_t shards, entries, bytes, saves, threads;
};

// One saver: owns shards [first, first + count) and performs `saves` saves.
// Entries are built once and renumbered in place, so the loop measures the
// LogDB and not the allocator.
void Saver(LogDB* db, const Config& c, uint64_t first, uint64_t count, std::vector<double>* lat_us,
           bool* failed) {
  std::vector<std::vector<flotilla::raft::Entry>> logs(count);
  for (auto& log : logs) {
    log.resize(c.entries);
    for (auto& e : log) e.cmd.assign(c.bytes, 'x');
  }
  std::vector<ReplicaUpdate> updates(count);
  for (uint64_t k = 1; k <= c.saves; ++k) {
    for (uint64_t s = 0; s < count; ++s) {
      for (uint64_t i = 0; i < c.entries; ++i) {
        logs[s][i].index = (k - 1) * c.entries + i + 1;
        logs[s][i].term = 1;
      }
      updates[s] = {
          first + s, 1, logs[s], flotilla::raft::HardState{1, 1, (k - 1) * c.entries}, {}};
    }
    const auto t0 = Clock::now();
    flotilla::Status st = db->Save(updates);
    lat_us->push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (!st.ok()) {
      std::fprintf(stderr, "save failed: %s\n", st.ToString().c_str());
      *failed = true;
      return;
    }
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (!ParseFlags(argc, argv, &f)) return 2;
  const Config c{f.Int("shards", 48), f.Int("entries", 64), f.Int("bytes", 16),
                 f.Int("saves", 2000), std::max<uint64_t>(1, f.Int("threads", 1))};
  std::string dir = f.Get("dir", "");
  const bool temp_dir = dir.empty();
  if (temp_dir) {
    std::string tmpl = "/tmp/flotilla-logdb-bench-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) return 2;
    dir = tmpl;
  }
  std::unique_ptr<LogDB> db;
  const std::string backend = f.Get("backend", "rocksdb");
  if (backend == "memory") {
    db = flotilla::logdb::NewMemoryLogDB();
  } else {
    flotilla::logdb::RocksOptions o;
    o.dir = dir + "/db";
    o.wal_dir = f.Get("wal_dir", "");
    o.sync = f.Int("sync", 1) != 0;
    o.write_buffer_bytes = f.Int("write_buffer_mb", o.write_buffer_bytes >> 20) << 20;
    o.compress = f.Int("compress", o.compress) != 0;
    o.recycle_wal_files = f.Int("recycle_wal", o.recycle_wal_files);
    o.pipelined_write = f.Int("pipelined", o.pipelined_write) != 0;
    auto r = flotilla::logdb::OpenRocksLogDB(o);
    if (!r.ok()) {
      std::fprintf(stderr, "open: %s\n", r.status().ToString().c_str());
      return 1;
    }
    db = std::move(r).value();
  }
  std::vector<std::vector<double>> lat(c.threads);
  std::vector<char> failed(c.threads, 0);
  const uint64_t per_thread = std::max<uint64_t>(1, c.shards / c.threads);
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < c.threads; ++t) {
    threads.emplace_back([&, t] {
      bool bad = false;
      Saver(db.get(), c, 1 + t * per_thread, per_thread, &lat[t], &bad);
      failed[t] = bad ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  db.reset();
  if (temp_dir) std::filesystem::remove_all(dir);
  if (std::count(failed.begin(), failed.end(), 1) > 0) return 1;
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  const double saves = static_cast<double>(c.saves * c.threads);
  const double entries = saves * static_cast<double>(per_thread * c.entries);
  std::printf("backend=%s shards=%llu entries=%llu bytes=%llu threads=%llu sync=%llu saves=%.0f\n",
              backend.c_str(), static_cast<unsigned long long>(c.shards),
              static_cast<unsigned long long>(c.entries), static_cast<unsigned long long>(c.bytes),
              static_cast<unsigned long long>(c.threads),
              static_cast<unsigned long long>(f.Int("sync", 1)), saves);
  std::printf(
      "saves/s %.0f  entries/s %.0f  payload MB/s %.2f  save latency us p50 %.0f p99 %.0f\n",
      saves / secs, entries / secs, entries * static_cast<double>(c.bytes) / secs / 1e6,
      Percentile(all, 0.5), Percentile(all, 0.99));
  return 0;
}
