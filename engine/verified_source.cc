#include "engine/verified_source.h"

#include <algorithm>
#include <utility>

#include "logdb/crc32c.h"

namespace flotilla::engine {
namespace {

class VerifiedSource final : public transport::SnapshotSource {
 public:
  VerifiedSource(std::unique_ptr<transport::SnapshotSource> inner, std::string dir,
                 std::vector<SnapshotFileSum> sums, std::function<void(const Status&)> on_damage)
      : inner_(std::move(inner)),
        dir_(std::move(dir)),
        sums_(std::move(sums)),
        seen_(sums_.size(), false),
        on_damage_(std::move(on_damage)) {}

  Result<bool> NextFile(std::string* name) override {
    Result<bool> more = inner_->NextFile(name);
    if (!more.ok()) return more;
    if (!*more) {
      // Every recorded file must have been sent.
      for (size_t i = 0; i < sums_.size(); ++i) {
        if (!seen_[i]) return Damaged("file " + sums_[i].name + " is missing");
      }
      return false;
    }
    name_ = *name;
    size_ = 0;
    crc_ = 0;
    current_ = nullptr;
    if (name_ == kSnapshotChecksumsFile) return true;  // checked when it was read
    for (size_t i = 0; i < sums_.size(); ++i) {
      if (sums_[i].name == name_) {
        current_ = &sums_[i];
        seen_[i] = true;
      }
    }
    if (current_ == nullptr) return Damaged("file " + name_ + " is not in its checksums file");
    return true;
  }

  Result<size_t> Read(size_t max_bytes, std::string* out) override {
    const size_t before = out->size();
    Result<size_t> n = inner_->Read(max_bytes, out);
    if (!n.ok() || current_ == nullptr) return n;
    if (*n > 0) {
      crc_ = logdb::Crc32cExtend(crc_, out->data() + before, *n);
      size_ += *n;
      return n;
    }
    if (size_ != current_->size || crc_ != current_->crc) {
      return Damaged("file " + name_ + ": " + std::to_string(size_) + " bytes with checksum " +
                     Hex(crc_) + " where " + std::to_string(current_->size) +
                     " bytes with checksum " + Hex(current_->crc) + " were recorded");
    }
    return n;
  }

 private:
  static std::string Hex(uint32_t v) {
    char buf[9];
    std::snprintf(buf, sizeof(buf), "%08x", v);
    return buf;
  }
  Status Damaged(const std::string& what) {
    Status s = Status::Corruption("snapshot " + dir_ + " is damaged: " + what);
    if (on_damage_) {
      on_damage_(s);
      on_damage_ = nullptr;
    }
    return s;
  }

  std::unique_ptr<transport::SnapshotSource> inner_;
  const std::string dir_;
  const std::vector<SnapshotFileSum> sums_;
  std::vector<bool> seen_;
  std::function<void(const Status&)> on_damage_;
  const SnapshotFileSum* current_ = nullptr;  // the recorded sum of the file being read
  std::string name_;
  uint64_t size_ = 0;
  uint32_t crc_ = 0;
};

}  // namespace

std::unique_ptr<transport::SnapshotSource> NewVerifiedSnapshotSource(
    std::unique_ptr<transport::SnapshotSource> inner, std::string dir,
    std::vector<SnapshotFileSum> sums, std::function<void(const Status&)> on_damage) {
  return std::make_unique<VerifiedSource>(std::move(inner), std::move(dir), std::move(sums),
                                          std::move(on_damage));
}

}  // namespace flotilla::engine
