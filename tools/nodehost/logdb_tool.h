// `nodehost logdb`: the offline inspector of a daemon's data directory
// (docs/cli.md, "Inspecting a data directory"): list, dump, verify, snapshot.
// It opens the LogDB read-only and refuses while a daemon holds it.
#pragma once

#include <memory>
#include <string>

#include "logdb/logdb.h"

namespace CLI {
class App;
}  // namespace CLI

namespace flotilla::nodehost {

// Adds the `logdb` subcommand to `app`. `output` is the global -o value
// ("table" or "json"); the exit code of the command is stored in *rc.
void AddLogdbCommands(CLI::App* app, const std::string* output, int* rc);

// Opens, for writing, the LogDB of a daemon that is stopped (`nodehost
// recover`): data_dir and wal_dir as given or from `config`. Refuses while a
// process holds the LogDB. On failure prints why, sets *rc and returns null.
std::unique_ptr<logdb::LogDB> OpenStoppedLogdbForWriting(const std::string& data_dir,
                                                         const std::string& wal_dir,
                                                         const std::string& config, int* rc);

}  // namespace flotilla::nodehost
