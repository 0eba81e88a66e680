// nodehost: the Flotilla key-value daemon (`nodehost serve --config FILE`) and
// its command-line client (`nodehost status|shards|put|get|...`).
#include <cstdio>
#include <cstdlib>

#include "tools/nodehost/cli.h"

int main(int argc, char** argv) {
  const int rc = flotilla::nodehost::RunCli(argc, argv);
  // Everything the command owned is closed and flushed by now (the daemon
  // has closed its NodeHost and RocksDB databases). Exiting here skips the
  // static destructors, where gRPC's library shutdown otherwise waits about
  // 1.5 s for its background threads after a daemon talked to its peers.
  std::fflush(nullptr);
  std::_Exit(rc);
}
