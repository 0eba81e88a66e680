#include "tests/nemesis/workload.h"

#include <random>

#include "tests/nodehost/write_outcome.h"
#include "tools/nodehost/client.h"

namespace flotilla::nemesis {
namespace {

using lincheck::Command;
using lincheck::Outcome;
using lincheck::Response;
using nodehost::CallInfo;
using namespace std::chrono_literals;

// How often a session write is sent (the first time included) before the
// client gives up on it and on its session.
constexpr int kSessionSends = 4;

// One client thread's state.
struct ClientState {
  nodehost::Client* c = nullptr;
  lincheck::History* h = nullptr;
  WorkloadStats* st = nullptr;
  uint64_t id = 0;
  std::mt19937_64 rng;
  uint64_t seq = 0;
  std::map<std::string, std::string> last_seen;  // key -> a value this client saw there
  std::map<uint64_t, nodehost::ClientSession> sessions;
  std::string Value() { return "c" + std::to_string(id) + "-" + std::to_string(++seq); }
};

std::optional<std::string> Found(bool found, const std::string& v) {
  return found ? std::optional<std::string>(v) : std::nullopt;
}

Outcome DoGet(ClientState& s, const std::string& key) {
  ++s.st->gets;
  const uint64_t id = s.h->Invoke(s.id, Command::Get(key));
  nodehost::GetResponse res;
  if (!s.c->Get(key, false, &res).ok()) {
    s.h->Complete(id, Outcome::kFailed);
    return Outcome::kFailed;
  }
  if (res.found()) s.last_seen[key] = res.value();
  s.h->Complete(id, Outcome::kOk, Response::Read(Found(res.found(), res.value())));
  return Outcome::kOk;
}

Outcome DoPut(ClientState& s, const std::string& key) {
  ++s.st->puts;
  const std::string value = s.Value();
  const uint64_t id = s.h->Invoke(s.id, Command::Put(key, value));
  nodehost::PutResponse res;
  const CallInfo info = s.c->Put(key, value, &res);
  const Outcome o = info.ok() ? Outcome::kOk : nodehost::testing::WriteFailure(info);
  s.h->Complete(id, o);
  if (o == Outcome::kOk) s.last_seen[key] = value;
  return o;
}

std::optional<std::string> Expected(ClientState& s, const std::string& key) {
  const auto it = s.last_seen.find(key);
  if (s.rng() % 5 == 0 || it == s.last_seen.end()) return std::nullopt;
  return it->second;
}

Outcome DoCas(ClientState& s, const std::string& key) {
  ++s.st->cas;
  const std::optional<std::string> expected = Expected(s, key);
  const std::string value = s.Value();
  const uint64_t id = s.h->Invoke(s.id, Command::Cas(key, expected, value));
  nodehost::CasResponse res;
  const CallInfo info = s.c->Cas(key, expected, value, &res);
  if (!info.ok()) {
    const Outcome o = nodehost::testing::WriteFailure(info);
    s.h->Complete(id, o);
    return o;
  }
  s.h->Complete(id, Outcome::kOk, Response::Swapped(res.swapped()));
  if (res.swapped()) s.last_seen[key] = value;
  if (!res.swapped() && res.found()) s.last_seen[key] = res.current();
  return Outcome::kOk;
}

// A put or cas in the client's session on the key's shard, resent (with the
// same series) until it is answered: the shard applies it once.
Outcome DoSessionWrite(ClientState& s, const std::string& key) {
  const uint64_t shard = s.c->ShardOf(key);
  if (shard == 0) return Outcome::kFailed;
  nodehost::ClientSession& session = s.sessions[shard];
  if (session.client_id == 0 && !s.c->RegisterSession(shard, &session).ok())
    return Outcome::kFailed;
  ++s.st->session_writes;
  const bool cas = s.rng() % 2 == 0;
  const std::optional<std::string> expected = Expected(s, key);
  const std::string value = s.Value();
  const uint64_t id =
      s.h->Invoke(s.id, cas ? Command::Cas(key, expected, value) : Command::Put(key, value));
  for (int send = 0; send < kSessionSends; ++send) {
    if (send > 0) ++s.st->session_resends;
    nodehost::CasResponse cres;
    nodehost::PutResponse pres;
    const CallInfo info = cas ? s.c->Cas(key, expected, value, &cres, &session)
                              : s.c->Put(key, value, &pres, &session);
    if (info.ok()) {
      s.h->Complete(id, Outcome::kOk, cas ? Response::Swapped(cres.swapped()) : Response::None());
      if (!cas || cres.swapped()) s.last_seen[key] = value;
      return Outcome::kOk;
    }
    if (info.status.error_code() == grpc::StatusCode::DATA_LOSS) {
      // Applied once, earlier; what a cas answered is lost.
      ++s.st->session_result_lost;
      session.Completed();
      s.h->Complete(id, cas ? Outcome::kUnknown : Outcome::kOk);
      return cas ? Outcome::kUnknown : Outcome::kOk;
    }
    if (info.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) break;
  }
  session = nodehost::ClientSession();  // its series is spent: never reuse it
  s.h->Complete(id, Outcome::kUnknown);
  return Outcome::kUnknown;
}

}  // namespace

Workload::Workload(std::string endpoints, int clients, uint64_t seed)
    : endpoints_(std::move(endpoints)),
      clients_(clients),
      seed_(seed),
      buckets_(new std::atomic<uint64_t>[kMaxBuckets]) {
  for (size_t i = 0; i < kMaxBuckets; ++i) buckets_[i].store(0);
}

Workload::~Workload() { Stop(); }

void Workload::Start() {
  started_ = std::chrono::steady_clock::now();
  for (int i = 0; i < clients_; ++i) threads_.emplace_back([this, i] { Run(i + 1); });
}

void Workload::Stop() {
  stop_.store(true);
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void Workload::Run(int client) {
  nodehost::ClientOptions opt;
  opt.endpoints = nodehost::SplitList(endpoints_);
  opt.timeout = 2s;
  std::string error;
  std::unique_ptr<nodehost::Client> c = nodehost::Client::Create(opt, &error);
  WorkloadStats st;
  ClientState s;
  s.c = c.get();
  s.h = &history_;
  s.st = &st;
  s.id = static_cast<uint64_t>(client);
  s.rng.seed(seed_ * 7919 + static_cast<uint64_t>(client));
  uint64_t own = 0;
  while (!stop_.load()) {
    if (idle_.load()) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    const std::string key = "k" + std::to_string(s.rng() % kSharedKeys);
    const int dice = static_cast<int>(s.rng() % 100);
    Outcome o = Outcome::kOk;
    if (dice < 35) {
      o = DoGet(s, key);
    } else if (dice < 55) {
      o = DoPut(s, key);
    } else if (dice < 70) {
      o = DoCas(s, key);
    } else if (dice < 88) {
      o = DoSessionWrite(s, key);
    } else {
      ++st.own_puts;
      const std::string own_key = "a" + std::to_string(client) + "-" + std::to_string(++own);
      nodehost::PutResponse res;
      const CallInfo info = c->Put(own_key, own_key, &res);
      o = info.ok() ? Outcome::kOk : nodehost::testing::WriteFailure(info);
      if (info.ok()) {
        std::lock_guard<std::mutex> l(mu_);
        acks_[own_key] = own_key;
      }
    }
    st.ok += o == Outcome::kOk;
    st.failed += o == Outcome::kFailed;
    st.unknown += o == Outcome::kUnknown;
    if (o == Outcome::kOk) {
      const auto i = static_cast<size_t>((std::chrono::steady_clock::now() - started_) / kBucket);
      if (i < kMaxBuckets) buckets_[i].fetch_add(1);
    } else {
      std::this_thread::sleep_for(10ms);
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  stats_.ok += st.ok;
  stats_.failed += st.failed;
  stats_.unknown += st.unknown;
  stats_.gets += st.gets;
  stats_.puts += st.puts;
  stats_.cas += st.cas;
  stats_.session_writes += st.session_writes;
  stats_.own_puts += st.own_puts;
  stats_.session_resends += st.session_resends;
  stats_.session_result_lost += st.session_result_lost;
}

WorkloadStats Workload::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

std::map<std::string, std::string> Workload::Acknowledged() const {
  std::lock_guard<std::mutex> l(mu_);
  return acks_;
}

std::vector<uint64_t> Workload::Buckets() const {
  const auto n = static_cast<size_t>((std::chrono::steady_clock::now() - started_) / kBucket) + 1;
  std::vector<uint64_t> out;
  for (size_t i = 0; i < std::min(n, kMaxBuckets); ++i) out.push_back(buckets_[i].load());
  return out;
}

}  // namespace flotilla::nemesis
