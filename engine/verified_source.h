// A snapshot source that checks the files it streams against the snapshot's
// checksums file, so that a sender never passes off its own damaged copy
// (issue 15): the stream fails with Corruption at the first file whose size
// or CRC32C differs from what was recorded when the snapshot was written,
// and `on_damage` is told once.
//
// Thread-safety: as SnapshotSource (one thread at a time); `on_damage` is
// called on the thread that reads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/snapshot_files.h"
#include "transport/transport.h"

namespace flotilla::engine {

// `inner` streams the snapshot directory `dir`, whose checksums file listed
// `sums`.
std::unique_ptr<transport::SnapshotSource> NewVerifiedSnapshotSource(
    std::unique_ptr<transport::SnapshotSource> inner, std::string dir,
    std::vector<SnapshotFileSum> sums, std::function<void(const Status&)> on_damage);

}  // namespace flotilla::engine
