// The `nodehost` command line: `serve` and the client subcommands
// (docs/cli.md lists them with their exit codes).
#pragma once

#include <string>
#include <vector>

namespace flotilla::nodehost {

// Exit codes of the client subcommands (docs/cli.md, "Exit codes").
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,         // anything else (internal error, bad answer)
  kExitUsage = 2,         // bad flags or arguments
  kExitKeyNotFound = 3,   // get: the key does not exist
  kExitCasMismatch = 4,   // cas: the current value differs; nothing written
  kExitUnreachable = 5,   // no daemon could be reached
  kExitTimeout = 6,       // no answer in time; a write's outcome is unknown
  kExitAuth = 7,          // credentials missing or refused
  kExitNotLeader = 8,     // reached a non-leader (with --no-follow)
  kExitRejected = 9,      // the request is invalid or was refused
  kExitUnsupported = 10,  // the engine does not offer the operation
  kExitUnavailable = 11,  // no leader, dropped or busy now: retry (logdb: a daemon holds the dir)
  kExitDamaged = 12,      // logdb: a damaged record or snapshot file was found
  kExitCheckFailed = 13,  // check: the machine or cluster failed the check (the reason printed)
};

int RunCli(int argc, char** argv);

// Prints rows as aligned columns under a header (the table output).
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);

}  // namespace flotilla::nodehost
