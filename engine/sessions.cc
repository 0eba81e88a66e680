#include "engine/sessions.h"

#include <algorithm>
#include <vector>

namespace flotilla::engine {
namespace {

void Put64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

bool Get64(const std::string& in, size_t* pos, uint64_t* v) {
  if (*pos + 8 > in.size()) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i)
    *v |= static_cast<uint64_t>(static_cast<uint8_t>(in[*pos + i])) << (8 * i);
  *pos += 8;
  return true;
}

// Format 1 had no flags per result; it is still read (every result kept).
constexpr uint64_t kFormatNoFlags = 1;
constexpr uint64_t kFormat = 2;
constexpr uint64_t kResultLost = 1;

}  // namespace

void Sessions::Register(uint64_t client_id) {
  if (sessions_.count(client_id) != 0) return;
  if (sessions_.size() >= kMaxSessions) {
    auto oldest =
        std::min_element(sessions_.begin(), sessions_.end(), [](const auto& a, const auto& b) {
          return a.second.registered_at < b.second.registered_at;
        });
    sessions_.erase(oldest);
  }
  sessions_[client_id].registered_at = ++order_;
}

void Sessions::Unregister(uint64_t client_id) { sessions_.erase(client_id); }

Sessions::Check Sessions::Begin(uint64_t client_id, uint64_t series_id, uint64_t responded_to,
                                const Result** cached) {
  auto it = sessions_.find(client_id);
  if (it == sessions_.end()) return Check::kNoSession;
  Entry& s = it->second;
  // The client saw every result up to responded_to: forget them.
  if (responded_to > s.responded_to) {
    s.responded_to = responded_to;
    s.results.erase(s.results.begin(), s.results.upper_bound(responded_to));
  }
  auto r = s.results.find(series_id);
  if (r != s.results.end()) {
    *cached = &r->second;
    return Check::kDuplicate;
  }
  // A series the client already acknowledged cannot be new.
  if (series_id <= s.responded_to) return Check::kNoSession;
  return Check::kApply;
}

void Sessions::Record(uint64_t client_id, uint64_t series_id, Result r) {
  auto it = sessions_.find(client_id);
  if (it == sessions_.end()) return;
  auto& results = it->second.results;
  results[series_id] = std::move(r);
  while (results.size() > kMaxResultsPerSession) results.erase(results.begin());
}

std::string Sessions::Serialize() const {
  // Sorted by client id so that every replica writes identical bytes.
  std::vector<uint64_t> ids;
  for (const auto& [id, s] : sessions_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::string out;
  Put64(&out, kFormat);
  Put64(&out, order_);
  Put64(&out, ids.size());
  for (uint64_t id : ids) {
    const Entry& s = sessions_.at(id);
    Put64(&out, id);
    Put64(&out, s.registered_at);
    Put64(&out, s.responded_to);
    Put64(&out, s.results.size());
    for (const auto& [series, r] : s.results) {
      Put64(&out, series);
      Put64(&out, r.value);
      Put64(&out, r.lost ? kResultLost : 0);
      Put64(&out, r.data.size());
      out += r.data;
    }
  }
  return out;
}

Status Sessions::Deserialize(const std::string& in) {
  sessions_.clear();
  size_t pos = 0;
  uint64_t format = 0;
  uint64_t count = 0;
  if (!Get64(in, &pos, &format) || (format != kFormat && format != kFormatNoFlags) ||
      !Get64(in, &pos, &order_) || !Get64(in, &pos, &count)) {
    return Status::Corruption("sessions: bad header");
  }
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t id = 0;
    uint64_t nresults = 0;
    Entry s;
    if (!Get64(in, &pos, &id) || !Get64(in, &pos, &s.registered_at) ||
        !Get64(in, &pos, &s.responded_to) || !Get64(in, &pos, &nresults)) {
      return Status::Corruption("sessions: truncated session");
    }
    for (uint64_t j = 0; j < nresults; ++j) {
      uint64_t series = 0;
      uint64_t flags = 0;
      uint64_t len = 0;
      Result r;
      // `len` is compared with what is left, never added to `pos`: a length
      // near 2^64 from a damaged or forged snapshot would wrap the sum.
      if (!Get64(in, &pos, &series) || !Get64(in, &pos, &r.value) ||
          (format == kFormat && !Get64(in, &pos, &flags)) || !Get64(in, &pos, &len) ||
          len > in.size() - pos) {
        return Status::Corruption("sessions: truncated result");
      }
      if ((flags & ~kResultLost) != 0) return Status::Corruption("sessions: unknown result flags");
      r.lost = (flags & kResultLost) != 0;
      r.data = in.substr(pos, len);
      pos += len;
      s.results.emplace(series, std::move(r));
    }
    sessions_.emplace(id, std::move(s));
  }
  if (pos != in.size()) return Status::Corruption("sessions: trailing bytes");
  return Status::Ok();
}

}  // namespace flotilla::engine
