// Snapshot files of one replica, under <data_dir>/snapshots/<shard>-<replica>/:
//   snapshot-<index>/          a snapshot: "data" (the state machine's bytes;
//                              absent when shallow), "sessions", and for a
//                              snapshot of metadata only, "metadata-only"
//   snapshot-<index>.tmp/      one being written
//   received-<index>-<from>-<term>/
//                              one received (from replica <from> in <term>),
//                              waiting for the engine's checks and the core
// A snapshot is written into a temporary directory, fsynced, and renamed into
// place, so a crash never leaves a partial snapshot under the final name. A
// received snapshot becomes snapshot-<index> only when the core installs it,
// before the LogDB records it: a directory the LogDB records is never
// replaced, and never pruned.
//
// Thread-safety: the file classes are not thread-safe; SnapshotPins and the
// functions are.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/managed_sm.h"
#include "flotilla/state_machine.h"

namespace flotilla::engine {

// The files of a snapshot directory.
inline constexpr char kSnapshotDataFile[] = "data";
inline constexpr char kSnapshotSessionsFile[] = "sessions";
// Present in a snapshot of metadata only (a witness's, or one sent to a
// witness): restoring it leaves the state machine as it is.
inline constexpr char kSnapshotMetadataOnlyFile[] = "metadata-only";
// The size and CRC32C of every other file of the snapshot, itself closed by
// a CRC32C of its own bytes (docs/logdb-format.md, "Snapshot files"). It is
// streamed with the snapshot, so a receiver checks the sender's copy too.
inline constexpr char kSnapshotChecksumsFile[] = "checksums";

std::string SnapshotRoot(const std::string& data_dir, uint64_t shard, uint64_t replica);
std::string SnapshotPath(const std::string& root, uint64_t index);
// Who streamed a received snapshot: its install message's sender and term.
// A received snapshot waits under a name of its own per sender, so that one
// from a sender the engine then refuses is removed, and never stands in for
// the leader's snapshot of the same index.
struct SnapshotSender {
  uint64_t from = 0;
  uint64_t term = 0;
};
std::string ReceivedSnapshotPath(const std::string& root, uint64_t index, SnapshotSender sender);

// Snapshot directories being streamed to a peer: pruning leaves them.
class SnapshotPins : public std::enable_shared_from_this<SnapshotPins> {
 public:
  // Keeps snapshot `index` from pruning until the returned token is
  // destroyed (on any thread). REQUIRES: owned by a shared_ptr.
  std::shared_ptr<void> Pin(uint64_t index);
  bool Pinned(uint64_t index);

 private:
  std::mutex mu_;
  std::map<uint64_t, int> counts_;  // guarded by mu_
};

class FileSnapshotWriter final : public SnapshotWriter {
 public:
  ~FileSnapshotWriter() override;
  Status Open(const std::string& path);
  Status Write(std::string_view bytes) override;
  // Flushes and fsyncs; REQUIRES: Open succeeded.
  Status Finish();
  // The size and CRC32C of what was written, for the checksums file.
  uint64_t bytes() const { return bytes_; }
  uint32_t crc() const { return crc_; }

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
  uint64_t bytes_ = 0;
  uint32_t crc_ = 0;
};

class FileSnapshotReader final : public SnapshotReader {
 public:
  ~FileSnapshotReader() override;
  Status Open(const std::string& path);
  Status Read(size_t max, std::string* out) override;

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

// Saves a state machine's snapshot at `index` under `root` (temporary
// directory, fsync, rename): the file `data` holds the state machine's bytes,
// `sessions` the engine's session registry. Returns the final directory.
// With `save` null the snapshot is shallow: only `sessions` is written (an
// on-disk state machine keeps its own data, made durable by Sync first).
// With `metadata_only` it is marked as a witness's (and `save` is ignored).
using SaveFn = std::function<Status(SnapshotWriter*)>;
Result<std::string> WriteSnapshot(const std::string& root, uint64_t index, const SaveFn& save,
                                  const std::string& sessions, bool metadata_only = false);
// Restores a state machine (and the session registry bytes) from `dir`. A
// snapshot of metadata only leaves the state machine as it is. NotFound
// when the snapshot is shallow (it has no `data`).
Status ReadSnapshot(const std::string& dir, ManagedStateMachine* sm, std::string* sessions);
// True when `dir` holds a shallow snapshot: sessions, no state-machine data,
// and not one of metadata only (a witness's: nothing to bring up to it).
bool IsShallowSnapshot(const std::string& dir);
// True when `dir` holds a snapshot of metadata only.
bool IsMetadataOnlySnapshot(const std::string& dir);
// Reads only the session registry bytes of the snapshot in `dir`.
// Neither ReadSnapshot nor this verifies checksums: VerifySnapshotFiles does.
Status ReadSnapshotSessions(const std::string& dir, std::string* sessions);

// One line of a checksums file.
struct SnapshotFileSum {
  std::string name;
  uint64_t size = 0;
  uint32_t crc = 0;  // CRC32C (logdb/crc32c.h) of the whole file
  friend bool operator==(const SnapshotFileSum&, const SnapshotFileSum&) = default;
};
// Reads and verifies the checksums file of `dir`: NotFound when there is
// none, Corruption when it is damaged.
Result<std::vector<SnapshotFileSum>> ReadSnapshotChecksums(const std::string& dir);
// Checks the files of `dir` against `sums` (every listed file present with
// its size and checksum, every other file listed). Reads only.
Status CheckSnapshotFiles(const std::string& dir, const std::vector<SnapshotFileSum>& sums);
// The size and CRC32C of one file, read in bounded chunks.
Status ChecksumFile(const std::string& path, SnapshotFileSum* out);

// What VerifySnapshotFiles found.
enum class SnapshotCheck : uint8_t {
  kVerified,  // every file matches the checksums file
  kUpgraded,  // written before checksums existed: accepted, and its checksums written now
};
// Verifies every file of the snapshot in `dir` against its checksums file:
// Corruption naming the directory and the file on a mismatch, a missing or
// unlisted file, or a damaged checksums file. A snapshot without one (written
// before format 2) is accepted and given one, as WriteSnapshotChecksums does.
Result<SnapshotCheck> VerifySnapshotFiles(const std::string& dir);
// Writes the checksums file of `dir` from the files it holds now, durably.
Status WriteSnapshotChecksums(const std::string& dir);
// A snapshot directory the transport received and verified chunk by chunk:
// its checksums file, when the sender sent one, must match (a mismatch is
// the sender's copy damaged at rest: Corruption); otherwise one is written.
Status SealReceivedSnapshot(const std::string& dir);

// Keeps the verified snapshot directory `incoming` (the transport's) as the
// received snapshot of `index` from `sender` under `root`, where it waits
// for the engine to check its install message and for the core. When one of
// that index from that sender waits already, `incoming` is removed and the
// one waiting stays (both hold the committed state at `index`).
Status KeepReceivedSnapshot(const std::string& root, uint64_t index, SnapshotSender sender,
                            const std::string& incoming);
// Removes the received snapshot of `index` from `sender`: its install
// message was refused.
void DropReceivedSnapshot(const std::string& root, uint64_t index, SnapshotSender sender);
// The core installs the received snapshot of `index` from `sender`: it
// becomes snapshot-<index> (replacing a directory of that index, which the
// LogDB cannot have recorded: the core installs only snapshots above its
// commit index), durably, before the LogDB records it. NotFound when none
// waits.
Status InstallReceivedSnapshot(const std::string& root, uint64_t index, SnapshotSender sender);
// Removes what pruning may: snapshot directories below `recorded` (the
// index the LogDB recorded) that no stream pins, and received snapshots at
// or below it (the core never installs those).
void PruneSnapshots(const std::string& root, uint64_t recorded, SnapshotPins* pins);
// At start: removes temporaries left by a crash and received snapshots that
// were never installed (no message refers to them any more).
void CleanSnapshotRoot(const std::string& root);

}  // namespace flotilla::engine
