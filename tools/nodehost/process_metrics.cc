#include "tools/nodehost/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace flotilla::nodehost {

namespace {

// The fields of /proc/self/stat after the command name (which may hold
// spaces and parentheses, so it is skipped up to its last ')').
std::vector<std::string> StatFields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return {};
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// The system's boot time in seconds since the epoch (/proc/stat btime).
double BootTime() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(1 << 16, '\n');
  }
  return 0;
}

int OpenFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int n = 0;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the directory stream's own descriptor
}

}  // namespace

void RenderProcessMetrics(PromWriter* w) {
  // proc(5): after the name come state (index 0 here), ..., utime (11),
  // stime (12), starttime (19), vsize (20), rss (21).
  const std::vector<std::string> f = StatFields();
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  if (f.size() > 21 && ticks > 0) {
    const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
    w->Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
              "counter");
    w->Sample("process_cpu_seconds_total", "", cpu);
    w->Family("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge");
    w->Sample("process_virtual_memory_bytes", "", std::stod(f[20]));
    w->Family("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
    w->Sample("process_resident_memory_bytes", "",
              std::stod(f[21]) * static_cast<double>(sysconf(_SC_PAGESIZE)));
    const double boot = BootTime();
    if (boot > 0) {
      w->Family("process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.", "gauge");
      w->Sample("process_start_time_seconds", "", boot + std::stod(f[19]) / ticks);
    }
  }
  const int fds = OpenFds();
  if (fds >= 0) {
    w->Family("process_open_fds", "Number of open file descriptors.", "gauge");
    w->Sample("process_open_fds", "", static_cast<double>(fds));
  }
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    w->Family("process_max_fds", "Maximum number of open file descriptors.", "gauge");
    w->Sample("process_max_fds", "", static_cast<double>(lim.rlim_cur));
  }
}

}  // namespace flotilla::nodehost
