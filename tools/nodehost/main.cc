// nodehost: the Flotilla key-value daemon (`nodehost serve --config FILE`) and
// its command-line client (`nodehost status|shards|put|get|...`).
#include "tools/nodehost/cli.h"

int main(int argc, char** argv) { return flotilla::nodehost::RunCli(argc, argv); }
