#include "tests/transport/test_util.h"

#include <algorithm>
#include <fstream>

namespace flotilla::transport::testing {
namespace fs = std::filesystem;

void WriteRandomFile(const std::string& path, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string buf(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::copy_n(reinterpret_cast<const char*>(&v), 8, buf.data() + i);
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
}

std::vector<std::string> ListWithPrefix(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {
std::vector<std::pair<std::string, std::string>> ReadAll(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string data(static_cast<size_t>(fs::file_size(e.path())), '\0');
    std::ifstream in(e.path(), std::ios::binary);
    in.read(data.data(), static_cast<std::streamsize>(data.size()));
    files.emplace_back(e.path().filename().string(), std::move(data));
  }
  std::sort(files.begin(), files.end());
  return files;
}
}  // namespace

bool SameFiles(const std::string& a, const std::string& b) { return ReadAll(a) == ReadAll(b); }

}  // namespace flotilla::transport::testing
