#include "tests/sim/sim_kv.h"

#include <vector>

namespace flotilla::sim {

uint64_t Fnv(std::string_view s, uint64_t h) {
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  return h;
}

namespace {

std::vector<std::string_view> Split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t sp = s.find(' ', pos);
    const size_t end = sp == std::string_view::npos ? s.size() : sp;
    out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

}  // namespace

std::string KvCommand::Encode() const {
  std::string out(1, op);
  out += " " + key;
  if (op == 'C') out += " " + (expected ? *expected : std::string("-"));
  out += " " + value;
  if (session) out += " s";
  return out;
}

bool KvCommand::Decode(std::string_view cmd, KvCommand* out) {
  const std::vector<std::string_view> f = Split(cmd);
  if (f.empty() || f[0].size() != 1) return false;
  out->op = f[0][0];
  const size_t base = out->op == 'C' ? 4 : 3;
  if ((out->op != 'P' && out->op != 'C') || f.size() < base) return false;
  out->key = std::string(f[1]);
  if (out->op == 'C') {
    out->expected = f[2] == "-" ? std::nullopt : std::optional<std::string>(f[2]);
  }
  out->value = std::string(f[base - 1]);
  out->session = f.size() > base && f[base] == "s";
  return true;
}

void KvCore::Update(std::span<SMEntry> entries) {
  for (SMEntry& e : entries) {
    if (e.index <= last_index_) observer_->OnOrderViolation(shard_, replica_, last_index_, e.index);
    last_index_ = e.index;
    // On-disk kind: an entry without a command only moves the index.
    if (e.noop) continue;
    observer_->OnApply(shard_, replica_, e.index, e.cmd);
    KvCommand c;
    if (!KvCommand::Decode(e.cmd, &c)) {
      e.result = e.index << 1;
      continue;
    }
    auto it = kv_.find(c.key);
    bool applies = true;
    if (c.op == 'C') {
      applies = c.expected ? (it != kv_.end() && it->second == *c.expected) : it == kv_.end();
    }
    if (applies) kv_[c.key] = c.value;
    e.result = e.index << 1 | (applies ? 1 : 0);
  }
}

Result<std::string> KvCore::Lookup(std::string_view query) const {
  if (query == kStateQuery) {
    uint64_t h = Fnv(std::to_string(last_index_));
    for (const auto& [k, v] : kv_) h = Fnv(v, Fnv(k, h));
    return std::to_string(h) + "@" + std::to_string(last_index_);
  }
  if (query == kSizeQuery) return std::to_string(kv_.size());
  auto it = kv_.find(std::string(query));
  if (it == kv_.end()) return std::string("-");
  return "=" + it->second;
}

std::string KvCore::Serialize() const {
  std::string out = std::to_string(last_index_) + "\n";
  for (const auto& [k, v] : kv_) out += k + " " + v + "\n";
  return out;
}

Status KvCore::Deserialize(std::string_view all) {
  size_t pos = all.find('\n');
  if (pos == std::string::npos) return Status::Corruption("sim kv snapshot without header");
  kv_.clear();
  last_index_ = std::stoull(std::string(all.substr(0, pos)));
  ++pos;
  while (pos < all.size()) {
    const size_t nl = all.find('\n', pos);
    const std::string_view line = all.substr(pos, nl - pos);
    const size_t sp = line.find(' ');
    if (sp != std::string::npos)
      kv_[std::string(line.substr(0, sp))] = std::string(line.substr(sp + 1));
    pos = nl == std::string::npos ? all.size() : nl + 1;
  }
  return Status::Ok();
}

Status KvCore::Recover(SnapshotReader* r) {
  std::string all;
  std::string chunk;
  do {
    FLOTILLA_RETURN_IF_ERROR(r->Read(1 << 20, &chunk));
    all += chunk;
  } while (!chunk.empty());
  return Deserialize(all);
}

std::shared_ptr<void> KvCore::Prepare() const { return std::make_shared<std::string>(Serialize()); }

Status KvCore::WritePrepared(const std::shared_ptr<void>& prepared, SnapshotWriter* w) {
  return w->Write(*static_cast<const std::string*>(prepared.get()));
}

Status SimKv::Update(std::span<SMEntry> entries) {
  core_.Update(entries);
  return Status::Ok();
}

Status SimConcurrentKv::Update(std::span<SMEntry> entries) {
  core_.Update(entries);
  return Status::Ok();
}

Result<uint64_t> SimDiskKv::Open() {
  if (store_->durable.empty()) return uint64_t{0};
  FLOTILLA_RETURN_IF_ERROR(core_.Deserialize(store_->durable));
  return core_.last_index();
}

Status SimDiskKv::Sync() {
  store_->durable = core_.Serialize();
  ++store_->commits;
  return Status::Ok();
}

Status SimDiskKv::Update(std::span<SMEntry> entries) {
  core_.Update(entries);
  return commit_now_() ? Sync() : Status::Ok();
}

// A restored state is committed at once: a state machine that replaced its
// data with a snapshot's must not reopen at its older data.
Status SimDiskKv::RecoverFromSnapshot(SnapshotReader* r) {
  FLOTILLA_RETURN_IF_ERROR(core_.Recover(r));
  return Sync();
}

}  // namespace flotilla::sim
