// The child of the SIGKILL crash test: opens the RocksDB LogDB in argv[1],
// checks what it finds, writes 0 to the file descriptor argv[2], then performs workload saves
// forever, writing the number of each save to the file descriptor argv[2] after the save returned.
// Every tenth save it also compacts, so range deletes are crashed too. The
// parent kills it with SIGKILL at a random moment.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "logdb/rocks_logdb.h"
#include "tests/logdb/workload.h"

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "crash_child: %s\n", what.c_str());
  return 2;
}

bool WriteAck(int fd, uint64_t k) {
  // One write of 8 bytes to a pipe is atomic: the parent sees it whole or not.
  ssize_t n;
  do {
    n = ::write(fd, &k, sizeof(k));
  } while (n < 0 && errno == EINTR);
  return n == sizeof(k);
}

}  // namespace

int main(int argc, char** argv) {
  using flotilla::logdb::testing::Workload;
  if (argc != 3) return Fail("usage: crash_child <dir> <ack-fd>");
  flotilla::logdb::RocksOptions o;
  o.dir = argv[1];
  const int ack_fd = std::atoi(argv[2]);
  auto db = flotilla::logdb::OpenRocksLogDB(o);
  if (!db.ok()) return Fail("open: " + db.status().ToString());
  auto k = Workload::Verify(db->get());
  if (!k.ok()) return Fail("verify: " + k.status().ToString());
  // Save number 0 means "recovered and about to save": the parent times most
  // kills from here, so that a slow start-up does not eat the test.
  if (!WriteAck(ack_fd, 0)) return Fail("ack write failed");
  Workload workload;
  constexpr uint64_t kMaxSaves = 1000000;  // far more than any test run reaches
  for (uint64_t next = k.value() + 1; next < kMaxSaves; ++next) {
    flotilla::Status s = workload.Save(db->get(), next);
    if (!s.ok()) return Fail("save: " + s.ToString());
    if (!WriteAck(ack_fd, next)) return Fail("ack write failed");
    if (next % 10 == 0 && next > 4) {
      // Keep about four saves of entries: compaction runs while saves go on.
      const flotilla::raft::Index to = (next - 4) * Workload::kEntriesPerSave;
      for (uint64_t s2 = 1; s2 <= Workload::kShards; ++s2) {
        flotilla::Status c = db->get()->CompactTo(s2, 1, to);
        if (!c.ok()) return Fail("compact: " + c.ToString());
      }
    }
  }
  return 0;
}
