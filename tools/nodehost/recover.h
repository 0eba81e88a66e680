// `nodehost recover`: quorum-loss recovery (docs/operations.md, "Quorum
// loss"). Offline, on a stopped daemon: rebuilds one shard from the replica
// this daemon holds, as its only member.
#pragma once

#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace flotilla::nodehost {

// Adds the `recover` subcommand to `app`; its exit code goes to *rc.
void AddRecoverCommand(CLI::App* app, const std::string* output, int* rc);

}  // namespace flotilla::nodehost
