// `nodehost logdb`: the offline inspector of a daemon's data directory
// (docs/cli.md, "Inspecting a data directory"): list, dump, verify, snapshot.
// It opens the LogDB read-only and refuses while a daemon holds it.
#pragma once

#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace flotilla::nodehost {

// Adds the `logdb` subcommand to `app`. `output` is the global -o value
// ("table" or "json"); the exit code of the command is stored in *rc.
void AddLogdbCommands(CLI::App* app, const std::string* output, int* rc);

}  // namespace flotilla::nodehost
