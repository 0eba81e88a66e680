// The operator's commands that talk to running daemons through the client:
// `snapshot export|verify|restore` (backup and restore of one shard) and
// `check consistency` (every replica's state hashed at one index and
// compared). docs/cli.md and docs/operations.md describe them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace CLI {
class App;
}  // namespace CLI

namespace flotilla::nodehost {

class Client;
struct CallInfo;

// What a command needs from the global flags, taken when it runs (the
// client only when asked for).
struct OpsEnv {
  Client* client = nullptr;  // null: it could not be made (the reason is printed)
  bool json = false;
  uint32_t timeout_ms = 5000;
  // Prints why a call failed and returns its exit code.
  std::function<int(const CallInfo&, std::string_view what)> fail;
};
using OpsEnvFn = std::function<OpsEnv(bool with_client)>;

// Adds export, verify and restore under `snapshot`.
void AddArchiveCommands(CLI::App* snapshot, const OpsEnvFn& env, int* rc);
// Adds `consistency` under `check`.
void AddConsistencyCommand(CLI::App* check, const OpsEnvFn& env, int* rc);

}  // namespace flotilla::nodehost
