#include "tests/nemesis/nemesis.h"

#include <algorithm>
#include <thread>

#include "tools/nodehost/client.h"

namespace flotilla::nemesis {
namespace {

using namespace std::chrono_literals;
using Matrix = std::vector<std::vector<int>>;

constexpr auto kServeLimit = 20s;
constexpr auto kMinHold = 1000ms;
constexpr int kHoldSpreadMs = 3000;

void Cut(Matrix* m, int a, int b) {  // 0-based, both directions
  (*m)[static_cast<size_t>(a)][static_cast<size_t>(b)] = 100;
  (*m)[static_cast<size_t>(b)][static_cast<size_t>(a)] = 100;
}

// Every link between a node in `side` and one not in it is cut.
void CutAround(Matrix* m, const std::vector<int>& side, int nodes) {
  for (int a : side)
    for (int b = 0; b < nodes; ++b)
      if (std::find(side.begin(), side.end(), b) == side.end()) Cut(m, a, b);
}

std::string List(const std::vector<int>& nodes) {  // 0-based in, 1-based out
  std::string s;
  for (int n : nodes) s += (s.empty() ? "" : ",") + std::to_string(n + 1);
  return "{" + s + "}";
}

}  // namespace

const char* FaultName(FaultKind k) {
  static const char* kNames[] = {"isolate",
                                 "split",
                                 "one-way-loss",
                                 "bridge",
                                 "ring",
                                 "kill",
                                 "stop-start",
                                 "kill-all",
                                 "pause-leader",
                                 "transfer",
                                 "idle-transfer-restart",
                                 "two-at-once"};
  return kNames[static_cast<int>(k)];
}

Nemesis::Nemesis(NetNs* net, Daemons* daemons, Workload* workload, uint64_t seed)
    : net_(net), d_(daemons), w_(workload), rng_(seed) {}

double Nemesis::Now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - w_->started()).count();
}

int Nemesis::RandomNode() {
  return 1 + static_cast<int>(rng_() % static_cast<uint64_t>(d_->nodes()));
}

std::chrono::milliseconds Nemesis::Hold() {
  return kMinHold + std::chrono::milliseconds(rng_() % kHoldSpreadMs);
}

// Every kind once per round, in a seeded order, so that a short run sees
// each of them.
FaultKind Nemesis::Next() {
  if (bag_.empty()) {
    for (int k = 0; k < static_cast<int>(FaultKind::kCount); ++k)
      bag_.push_back(static_cast<FaultKind>(k));
    std::shuffle(bag_.begin(), bag_.end(), rng_);
  }
  const FaultKind k = bag_.back();
  bag_.pop_back();
  return k;
}

void Nemesis::SetIdle(bool idle) {
  w_->SetIdle(idle);
  if (idle && idle_since_ < 0) idle_since_ = Now();
  if (!idle && idle_since_ >= 0) {
    idle_.emplace_back(idle_since_, Now());
    idle_since_ = -1;
  }
}

void Nemesis::CheckExits() {
  for (std::string& e : d_->Reap()) failures_.push_back(std::move(e));
}

int Nemesis::LeaderOf(uint64_t shard) {
  nodehost::ClientOptions o;
  o.endpoints = nodehost::SplitList(d_->endpoints());
  o.timeout = 300ms;
  std::string error;
  std::unique_ptr<nodehost::Client> c = nodehost::Client::Create(o, &error);
  for (int n = 1; n <= d_->nodes(); ++n) {
    if (!d_->Running(n) || d_->Paused(n)) continue;
    nodehost::ShardsResponse res;
    if (!c->Shards(d_->client_address(n), &res).ok()) continue;
    for (const nodehost::ReplicaStatus& r : res.replicas())
      if (r.shard() == shard && r.role() == "leader") return n;
  }
  return 0;
}

bool Nemesis::Transfer(uint64_t shard, int target) {
  const std::string cmd = std::string(FLOTILLA_NODEHOST) + " --endpoints " + d_->endpoints() +
                          " --token-file " + d_->token_file() + " --timeout 3000 transfer-leader " +
                          std::to_string(shard) + " " + std::to_string(target);
  return nemesis::Run(cmd);
}

void Nemesis::Restart(int node, bool clean, FaultRecord* r) {
  if (clean) {
    const int rc = d_->Stop(node);
    if (rc != 0)
      Fail("node " + std::to_string(node) + ": SIGTERM gave exit status " + std::to_string(rc) +
           ", not 0; its log ends:\n" + d_->LogTail(node));
  } else {
    d_->Kill(node);
  }
  r->what += std::string(clean ? " stop+start " : " kill+start ") + std::to_string(node);
}

void Nemesis::Network(FaultKind kind, FaultRecord* r) {
  const int n = d_->nodes();
  Matrix m(static_cast<size_t>(n), std::vector<int>(static_cast<size_t>(n), 0));
  std::vector<int> order(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::shuffle(order.begin(), order.end(), rng_);
  if (kind == FaultKind::kIsolate || kind == FaultKind::kSplit) {
    const size_t minority = kind == FaultKind::kIsolate ? 1 : static_cast<size_t>((n - 1) / 2);
    const std::vector<int> side(order.begin(), order.begin() + static_cast<long>(minority));
    CutAround(&m, side, n);
    r->what += " minority " + List(side);
  } else if (kind == FaultKind::kOneWayLoss) {
    static constexpr int kPercents[] = {20, 50, 100};
    const int p = kPercents[rng_() % 3];
    const int from = order[0];
    const bool one = rng_() % 2 == 0;
    for (int b = 0; b < n; ++b)
      if (b != from && (!one || b == order[1]))
        m[static_cast<size_t>(from)][static_cast<size_t>(b)] = p;
    r->what += " " + std::to_string(from + 1) + "->" +
               (one ? std::to_string(order[1] + 1) : "all") + " " + std::to_string(p) + "%";
  } else if (kind == FaultKind::kBridge) {
    const std::vector<int> left(order.begin() + 1, order.begin() + 1 + (n - 1) / 2);
    const std::vector<int> right(order.begin() + 1 + (n - 1) / 2, order.end());
    for (int a : left)
      for (int b : right) Cut(&m, a, b);
    r->what += " " + List(left) + "-" + std::to_string(order[0] + 1) + "-" + List(right);
  } else {  // kRing
    for (int i = 0; i < n; ++i) {
      const int a = order[static_cast<size_t>(i)];
      const int prev = order[static_cast<size_t>((i + n - 1) % n)];
      if (n <= 3) {
        m[static_cast<size_t>(a)][static_cast<size_t>(prev)] = 100;  // only forward
      } else {
        for (int j = 0; j < n; ++j) {
          const int b = order[static_cast<size_t>(j)];
          const int dist = std::min((i - j + n) % n, (j - i + n) % n);
          if (dist > 1) m[static_cast<size_t>(a)][static_cast<size_t>(b)] = 100;
        }
      }
    }
    r->what += " order " + List(order);
  }
  std::string error;
  if (!net_->SetDrops(m, &error)) Fail(error);
}

void Nemesis::Process(FaultKind kind, FaultRecord* r, std::chrono::milliseconds hold) {
  const uint64_t shard = 1 + rng_() % static_cast<uint64_t>(d_->shards());
  if (kind == FaultKind::kKill || kind == FaultKind::kStopStart) {
    const int node = RandomNode();
    Restart(node, kind == FaultKind::kStopStart, r);
    std::this_thread::sleep_for(kind == FaultKind::kKill ? hold : hold / 4);
    if (!d_->Start(node)) Fail("cannot fork node " + std::to_string(node));
  } else if (kind == FaultKind::kKillAll) {
    for (int i = 1; i <= d_->nodes(); ++i) d_->Kill(i);
    r->what += " all";
    std::this_thread::sleep_for(hold / 2);
    for (int i = 1; i <= d_->nodes(); ++i) d_->Start(i);
  } else if (kind == FaultKind::kPauseLeader) {
    int node = LeaderOf(shard);
    if (node == 0) node = RandomNode();
    d_->Pause(node);
    r->what += " node " + std::to_string(node) + " (shard " + std::to_string(shard) + ")";
    std::this_thread::sleep_for(hold);
    d_->Resume(node);
  } else if (kind == FaultKind::kTransfer) {
    const int target = RandomNode();
    const bool ok = Transfer(shard, target);
    r->what += " shard " + std::to_string(shard) + " to " + std::to_string(target) +
               (ok ? "" : " (refused or timed out)");
  } else if (kind == FaultKind::kIdleTransferRestart) {
    SetIdle(true);
    r->idle = true;
    std::this_thread::sleep_for(300ms);  // what was in flight lands
    const int target = RandomNode();
    const bool ok = Transfer(shard, target);
    r->what += " shard " + std::to_string(shard) + " to " + std::to_string(target) +
               (ok ? "," : " (refused),");
    std::this_thread::sleep_for(300ms);
    const int node = RandomNode();
    Restart(node, rng_() % 2 == 0, r);
    if (!d_->Start(node)) Fail("cannot fork node " + std::to_string(node));
  }
}

void Nemesis::HealAll() {
  std::string error;
  if (!net_->Heal(&error)) Fail(error);
  CheckExits();
  for (int i = 1; i <= d_->nodes(); ++i) {
    if (d_->Paused(i)) d_->Resume(i);
    if (!d_->Running(i) && failures_.empty()) d_->Start(i);
  }
  for (int i = 1; i <= d_->nodes(); ++i) {
    std::string why;
    if (d_->Running(i) && !d_->WaitServing(i, kServeLimit, &why)) Fail(why);
  }
}

void Nemesis::Run(std::chrono::seconds length) {
  const double end = static_cast<double>(length.count());
  while (Now() < end && failures_.empty()) {
    // Quiet time, sometimes idle, so that snapshot gaps stay open.
    const bool idle = rng_() % 3 == 0;
    if (idle) SetIdle(true);
    std::this_thread::sleep_for(500ms + std::chrono::milliseconds(rng_() % 1500));
    FaultKind kind = Next();
    FaultRecord r{kind, "", Now(), 0, idle};
    const std::chrono::milliseconds hold = Hold();
    if (kind <= FaultKind::kRing) {
      Network(kind, &r);
      std::this_thread::sleep_for(hold);
    } else if (kind == FaultKind::kTwoAtOnce) {
      Network(static_cast<FaultKind>(rng_() % 5), &r);
      static constexpr FaultKind kProcs[] = {FaultKind::kKill, FaultKind::kPauseLeader,
                                             FaultKind::kTransfer, FaultKind::kStopStart};
      const FaultKind p = kProcs[rng_() % 4];
      r.what += std::string(" +") + FaultName(p);
      Process(p, &r, hold);
    } else {
      Process(kind, &r, hold);
    }
    HealAll();
    SetIdle(false);
    r.heal_s = Now();
    std::fprintf(stderr, "nemesis: %6.1f s %-22s%s\n", r.start_s, FaultName(kind), r.what.c_str());
    records_.push_back(std::move(r));
    CheckExits();
  }
  HealAll();
  SetIdle(false);
}

}  // namespace flotilla::nemesis
