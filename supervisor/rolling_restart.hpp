#pragma once

#include <deque>
#include <optional>
#include <vector>

#include "supervisor/restart_policy.hpp"

namespace occasional::supervisor {

// A service's rolling restart, as decisions on its RestartPolicy: one
// replacement replica at a time is added; once it is ready, the oldest
// replica still to replace is retired, and the next replacement follows.
// The service never has fewer ready workers than before. Pure bookkeeping
// (no timers, no processes), tested without forking; Service carries out
// the actions.
class RollingRestart {
 public:
  bool active() const { return surge_ >= 0; }
  // Queues every running, wanted replica for replacement; false (and
  // nothing queued) if one is under way or the service has failed.
  bool begin(const RestartPolicy& policy);
  // The actions that start the next replacement (from begin, or after a
  // retirement); empty when there is nothing left to replace.
  std::vector<Action> next(RestartPolicy& policy);
  // `replica` became ready. When it is the replacement being waited for:
  // the actions that retire the old replica it replaces, which the caller
  // carries out before it asks for next() (a retired replica that never
  // ran stops at once, and its slot is free again). nullopt otherwise.
  std::optional<std::vector<Action>> on_ready(RestartPolicy& policy, int replica);
  // Forgets the rolling restart (a stop, a scale, a failed service).
  void abort();

 private:
  // The old replicas still to replace, and the new one being waited for
  // (-1: none under way).
  std::deque<int> to_replace_;
  int surge_ = -1;
};

}  // namespace occasional::supervisor
