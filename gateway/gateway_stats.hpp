#pragma once

#include "metrics/connection_stats.hpp"

namespace occasional::gateway {

// The gateway's counters live in the metrics module, which exports them.
using GatewayStats = metrics::ConnectionStats;

}  // namespace occasional::gateway
