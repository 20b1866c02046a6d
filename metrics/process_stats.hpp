#pragma once

#include <cstdint>

namespace occasional::metrics {

// The coordinator's own resources, as Prometheus's process_* metrics, read
// from /proc/self.
struct ProcessStats {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double open_fds = 0;
  double max_fds = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};

ProcessStats read_process_stats();

}  // namespace occasional::metrics
