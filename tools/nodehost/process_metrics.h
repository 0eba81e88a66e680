// The standard process_* metrics of Prometheus' client libraries, read from
// /proc/self (Linux): CPU seconds, resident and virtual memory, open and
// maximum file descriptors, and the start time. A file that cannot be read
// leaves its metrics out rather than report a wrong value.
#pragma once

#include "tools/nodehost/metrics.h"

namespace flotilla::nodehost {

void RenderProcessMetrics(PromWriter* w);

}  // namespace flotilla::nodehost
