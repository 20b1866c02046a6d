#include "app/process_metrics.hpp"

namespace occasional::gateway {

metrics::ProcessesStatus processes_status(const supervisor::ProcessHub& hub) {
  const supervisor::ProcessHub::Stats& s = hub.stats();
  metrics::ProcessesStatus out;
  out.alive = hub.live();
  out.spawned = s.spawned;
  out.exits = s.exits;
  out.channels = s.channels;
  out.sends_dropped = s.sends_dropped;
  out.monitors = hub.monitors();
  out.links = hub.links();
  out.protocol_errors = s.protocol_errors;
  out.notices_dropped = s.notices_dropped;
  out.connect_failures = s.connect_failures;
  return out;
}

}  // namespace occasional::gateway
