// Payload: the bytes of an entry's command, immutable once made.
//
// An entry is copied several times on its way (into the log cache, into each
// follower's append, into the apply batch), on several threads. A
// std::string copy allocates for anything over 15 bytes, so a 16-byte
// command cost a malloc and a free per copy. A Payload keeps up to kInline
// bytes in place (copying is a 32-byte copy) and shares longer ones through
// one reference-counted block (copying is an atomic increment), so copying
// an entry never allocates. Moving never allocates either.
//
// Thread-safety: a Payload is a value; copies on different threads may be
// used and destroyed concurrently (the block's count is atomic, its bytes
// are never written after it is made).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace flotilla::raft {

class Payload {
 public:
  static constexpr size_t kInline = 24;

  Payload() noexcept = default;
  Payload(std::string_view bytes) { Init(bytes); }                      // NOLINT: implicit
  Payload(const char* bytes) { Init(std::string_view(bytes)); }         // NOLINT: implicit
  Payload(const std::string& bytes) { Init(std::string_view(bytes)); }  // NOLINT: implicit
  // Takes the string's buffer when it is too long to keep in place.
  Payload(std::string&& bytes) { Adopt(std::move(bytes)); }  // NOLINT: implicit

  Payload(const Payload& o) noexcept : size_(o.size_) {
    if (o.on_heap()) {
      block_ = o.block_;
      block_->refs.fetch_add(1, std::memory_order_relaxed);
    } else {
      std::memcpy(inline_, o.inline_, kInline);
    }
  }
  Payload(Payload&& o) noexcept : size_(o.size_) {
    std::memcpy(inline_, o.inline_, kInline);  // the block pointer, if any
    o.size_ = 0;
  }
  Payload& operator=(const Payload& o) noexcept {
    if (this != &o) {
      Payload copy(o);
      Swap(copy);
    }
    return *this;
  }
  Payload& operator=(Payload&& o) noexcept {
    if (this != &o) {
      Release();
      size_ = o.size_;
      std::memcpy(inline_, o.inline_, kInline);
      o.size_ = 0;
    }
    return *this;
  }
  Payload& operator=(std::string_view bytes) { return *this = Payload(bytes); }
  Payload& operator=(const char* bytes) { return *this = Payload(bytes); }
  Payload& operator=(const std::string& bytes) { return *this = Payload(bytes); }
  Payload& operator=(std::string&& bytes) { return *this = Payload(std::move(bytes)); }
  ~Payload() { Release(); }

  void assign(std::string_view bytes) { *this = Payload(bytes); }
  void assign(size_t n, char c) { *this = Payload(std::string(n, c)); }
  void clear() noexcept {
    Release();
    size_ = 0;
  }

  const char* data() const noexcept { return on_heap() ? block_->bytes.data() : inline_; }
  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const char* begin() const noexcept { return data(); }
  const char* end() const noexcept { return data() + size_; }
  char operator[](size_t i) const noexcept { return data()[i]; }
  std::string_view view() const noexcept { return {data(), size_}; }
  operator std::string_view() const noexcept { return view(); }  // NOLINT: implicit
  std::string str() const { return std::string(view()); }
  std::string_view substr(size_t pos, size_t n = std::string_view::npos) const {
    return view().substr(pos, n);
  }

  // True when the bytes live in a shared block (longer than kInline).
  bool on_heap() const noexcept { return size_ > kInline; }

  friend bool operator==(const Payload& a, const Payload& b) noexcept {
    return a.view() == b.view();
  }
  friend bool operator==(const Payload& a, std::string_view b) noexcept { return a.view() == b; }
  friend bool operator==(const Payload& a, const char* b) noexcept {
    return a.view() == std::string_view(b);
  }
  friend bool operator==(const Payload& a, const std::string& b) noexcept {
    return a.view() == std::string_view(b);
  }
  friend std::string operator+(const std::string& a, const Payload& b) {
    std::string s = a;
    s.append(b.view());
    return s;
  }
  friend std::string operator+(const Payload& a, const std::string& b) {
    std::string s = a.str();
    s.append(b);
    return s;
  }
  friend std::ostream& operator<<(std::ostream& os, const Payload& p) { return os << p.view(); }

 private:
  struct Block {
    explicit Block(std::string&& b) : bytes(std::move(b)) {}
    std::atomic<uint32_t> refs{1};
    std::string bytes;
  };

  void Init(std::string_view bytes) {
    size_ = bytes.size();
    if (on_heap()) {
      block_ = new Block(std::string(bytes));
    } else if (size_ != 0) {
      std::memcpy(inline_, bytes.data(), size_);
    }
  }
  void Adopt(std::string&& bytes) {
    size_ = bytes.size();
    if (on_heap()) {
      block_ = new Block(std::move(bytes));
    } else if (size_ != 0) {
      std::memcpy(inline_, bytes.data(), size_);
    }
  }
  void Release() noexcept {
    if (on_heap() && block_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete block_;
  }
  void Swap(Payload& o) noexcept {
    char tmp[kInline];
    std::memcpy(tmp, inline_, kInline);
    std::memcpy(inline_, o.inline_, kInline);
    std::memcpy(o.inline_, tmp, kInline);
    std::swap(size_, o.size_);
  }

  size_t size_ = 0;
  union {
    char inline_[kInline] = {};  // zeroed: copies move all of it
    Block* block_;
  };
};

static_assert(sizeof(Payload) == 32);

}  // namespace flotilla::raft
