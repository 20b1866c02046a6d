#include "supervisor/rolling_restart.hpp"

namespace occasional::supervisor {

bool RollingRestart::begin(const RestartPolicy& policy) {
  if (active() || policy.failed()) return false;
  for (int i = 0; i < policy.table_size(); ++i)
    if (policy.wanted(i) && policy.state(i) == ReplicaState::running) to_replace_.push_back(i);
  return true;
}

std::vector<Action> RollingRestart::next(RestartPolicy& policy) {
  surge_ = -1;
  // One that stopped or was scaled away meanwhile has nothing to replace.
  while (!to_replace_.empty() && !(policy.wanted(to_replace_.front()) &&
                                   policy.state(to_replace_.front()) == ReplicaState::running))
    to_replace_.pop_front();
  if (to_replace_.empty()) return {};
  std::vector<Action> actions = policy.add_replica();
  if (actions.empty()) {
    to_replace_.clear();
    return actions;
  }
  surge_ = actions.front().replica;
  return actions;
}

std::optional<std::vector<Action>> RollingRestart::on_ready(RestartPolicy& policy, int replica) {
  if (!active() || replica != surge_) return std::nullopt;
  const int old = to_replace_.front();
  to_replace_.pop_front();
  return policy.retire(old);
}

void RollingRestart::abort() {
  to_replace_.clear();
  surge_ = -1;
}

}  // namespace occasional::supervisor
