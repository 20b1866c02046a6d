#pragma once

#include "metrics/status.hpp"
#include "supervisor/process_hub.hpp"

namespace occasional::gateway {

// The process hub's counters and gauges as the metrics module reads them
// (metrics::Status::processes; docs/metrics.md, "Processes").
metrics::ProcessesStatus processes_status(const supervisor::ProcessHub& hub);

}  // namespace occasional::gateway
