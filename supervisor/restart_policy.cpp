#include "supervisor/restart_policy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace occasional::supervisor {

const char* restart_mode_name(RestartMode mode) {
  switch (mode) {
    case RestartMode::always:
      return "always";
    case RestartMode::on_failure:
      return "on-failure";
    case RestartMode::never:
      return "never";
  }
  return "?";
}

std::optional<RestartMode> parse_restart_mode(std::string_view name) {
  for (RestartMode mode : {RestartMode::always, RestartMode::on_failure, RestartMode::never})
    if (name == restart_mode_name(mode)) return mode;
  return std::nullopt;
}

const char* replica_state_name(ReplicaState state) {
  switch (state) {
    case ReplicaState::stopped:
      return "stopped";
    case ReplicaState::running:
      return "running";
    case ReplicaState::backoff:
      return "backoff";
    case ReplicaState::stopping:
      return "stopping";
  }
  return "?";
}

RestartPolicy::RestartPolicy(RestartConfig config, int replicas,
                             std::function<double()> unit_random)
    : config_(config),
      unit_random_(std::move(unit_random)),
      replicas_(static_cast<size_t>(replicas)),
      desired_(replicas) {}

void RestartPolicy::adopt(const std::vector<Carried>& carried) {
  int size = 0;
  for (const Carried& c : carried) size = std::max(size, c.replica + 1);
  replicas_.assign(static_cast<size_t>(size), Replica{});
  for (Replica& r : replicas_) r.wanted = false;
  for (const Carried& c : carried) {
    Replica& r = replicas_.at(static_cast<size_t>(c.replica));
    r.state = ReplicaState::running;
    r.wanted = true;
    r.consecutive = c.consecutive;
    r.restarts.assign(c.restarts.begin(), c.restarts.end());
  }
  desired_ = static_cast<int>(carried.size());
  failed_ = false;
  retry_pending_ = false;
}

Duration RestartPolicy::backoff_delay(int k, double u) const {
  if (k <= 1) return Duration::zero();
  using Sec = std::chrono::duration<double>;
  double base = Sec(config_.backoff_initial).count() * std::ldexp(1.0, std::min(k - 2, 60));
  base = std::min(base, Sec(config_.backoff_max).count());
  double delay = base * (1.0 - config_.jitter * std::clamp(u, 0.0, 1.0));
  return std::chrono::duration_cast<Duration>(Sec(std::max(delay, 0.0)));
}

std::vector<Action> RestartPolicy::on(int replica, PolicyEvent event, MonoTime now) {
  Replica& r = replicas_.at(static_cast<size_t>(replica));
  using S = ReplicaState;
  using E = PolicyEventKind;
  switch (r.state) {
    case S::stopped:
      if (event.kind == E::start && !failed_) {
        r.state = S::running;
        return {{replica, ActionKind::spawn}};
      }
      return {};
    case S::running:
      switch (event.kind) {
        case E::exited:
          return on_exited(replica, event, now);
        case E::stop:
          r.state = S::stopping;
          return {{replica, ActionKind::terminate}};
        case E::start:
        case E::backoff_elapsed:
        case E::grace_elapsed:
          return {};
      }
      return {};
    case S::backoff:
      switch (event.kind) {
        case E::backoff_elapsed:
          r.state = S::running;
          return {{replica, ActionKind::spawn}};
        case E::stop:
          r.state = S::stopped;
          return {{replica, ActionKind::cancel_restart}};
        case E::start:
        case E::exited:
        case E::grace_elapsed:
          return {};
      }
      return {};
    case S::stopping:
      switch (event.kind) {
        case E::exited:
          r.state = S::stopped;
          return {};
        case E::grace_elapsed:
          return {{replica, ActionKind::kill}};
        case E::start:
        case E::stop:
        case E::backoff_elapsed:
          return {};
      }
      return {};
  }
  std::fprintf(stderr, "occasional: RestartPolicy: replica state %d is not handled\n",
               static_cast<int>(r.state));
  std::abort();
}

std::vector<Action> RestartPolicy::on_exited(int replica, PolicyEvent event, MonoTime now) {
  Replica& r = replicas_[static_cast<size_t>(replica)];
  if (event.uptime >= config_.stable_after) r.consecutive = 0;
  const bool wanted = r.wanted;
  const bool policy_restarts = config_.mode == RestartMode::always ||
                               (config_.mode == RestartMode::on_failure && !event.clean_exit);
  if (!wanted || !policy_restarts || failed_) {
    r.state = ReplicaState::stopped;
    return {};
  }

  while (!r.restarts.empty() && now - r.restarts.front() > config_.window) r.restarts.pop_front();
  r.restarts.push_back(now);
  if (static_cast<int>(r.restarts.size()) > config_.max_restarts) {
    failed_ = true;
    r.state = ReplicaState::stopped;
    std::vector<Action> actions{{replica, ActionKind::service_failed}};
    for (size_t i = 0; i < replicas_.size(); ++i) {
      if (replicas_[i].state == ReplicaState::backoff) {
        replicas_[i].state = ReplicaState::stopped;
        actions.push_back({static_cast<int>(i), ActionKind::cancel_restart});
      }
    }
    if (config_.cooloff > Duration::zero()) {
      // A retry that lasted a whole window was not a crash loop going on.
      if (failures_in_row_ > 0 && now - retried_at_ > config_.window) failures_in_row_ = 0;
      ++failures_in_row_;
      retry_pending_ = true;
      actions.push_back({replica, ActionKind::schedule_retry, cooloff_delay(failures_in_row_)});
    }
    return actions;
  }

  ++r.consecutive;
  Duration delay = backoff_delay(r.consecutive, unit_random_());
  if (delay == Duration::zero()) return {{replica, ActionKind::spawn}};
  r.state = ReplicaState::backoff;
  return {{replica, ActionKind::schedule_restart, delay}};
}

Duration RestartPolicy::cooloff_delay(int k) const {
  const Duration cap = std::max(kCooloffCap, config_.cooloff);
  Duration delay = config_.cooloff;
  for (int i = 1; i < k && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

std::vector<Action> RestartPolicy::retry_service(MonoTime now) {
  if (!failed_ || !retry_pending_) return {};
  const int failures = failures_in_row_;
  std::vector<Action> actions = start_service();
  failures_in_row_ = failures;
  retried_at_ = now;
  return actions;
}

std::vector<Action> RestartPolicy::start_service() {
  failed_ = false;
  retry_pending_ = false;
  failures_in_row_ = 0;
  std::vector<Action> actions;
  for (int i = 0; i < table_size(); ++i) {
    Replica& r = replicas_[static_cast<size_t>(i)];
    r.consecutive = 0;
    r.restarts.clear();
    if (r.wanted && r.state == ReplicaState::stopped) {
      r.state = ReplicaState::running;
      actions.push_back({i, ActionKind::spawn});
    }
  }
  return actions;
}

int RestartPolicy::wanted_count() const {
  int n = 0;
  for (const Replica& r : replicas_) n += r.wanted ? 1 : 0;
  return n;
}

int RestartPolicy::free_slot() {
  for (size_t i = 0; i < replicas_.size(); ++i)
    if (!replicas_[i].wanted && replicas_[i].state == ReplicaState::stopped)
      return static_cast<int>(i);
  replicas_.push_back(Replica{ReplicaState::stopped, 0, false, {}});
  return table_size() - 1;
}

void RestartPolicy::unwant(int replica, std::vector<Action>& actions) {
  Replica& r = replicas_[static_cast<size_t>(replica)];
  r.wanted = false;
  if (r.state == ReplicaState::running) {
    r.state = ReplicaState::stopping;
    actions.push_back({replica, ActionKind::terminate});
  } else if (r.state == ReplicaState::backoff) {
    r.state = ReplicaState::stopped;
    actions.push_back({replica, ActionKind::cancel_restart});
  }
}

std::vector<Action> RestartPolicy::scale(int replicas) {
  std::vector<Action> actions;
  int have = wanted_count();
  while (have < replicas) {
    const int i = free_slot();
    Replica& r = replicas_[static_cast<size_t>(i)];
    r.wanted = true;
    r.consecutive = 0;
    r.restarts.clear();
    ++have;
    if (!failed_) {
      r.state = ReplicaState::running;
      actions.push_back({i, ActionKind::spawn});
    }
  }
  std::vector<int> removed;
  for (int i = table_size() - 1; i >= 0 && have > replicas; --i)
    if (replicas_[static_cast<size_t>(i)].wanted) {
      removed.insert(removed.begin(), i);
      --have;
    }
  for (int i : removed) unwant(i, actions);
  desired_ = replicas;
  return actions;
}

std::vector<Action> RestartPolicy::add_replica() {
  const int i = free_slot();
  Replica& r = replicas_[static_cast<size_t>(i)];
  r.wanted = true;
  r.consecutive = 0;
  r.restarts.clear();
  ++desired_;
  if (failed_) return {};
  r.state = ReplicaState::running;
  return {{i, ActionKind::spawn}};
}

std::vector<Action> RestartPolicy::retire(int replica) {
  std::vector<Action> actions;
  if (!replicas_.at(static_cast<size_t>(replica)).wanted) return actions;
  unwant(replica, actions);
  --desired_;
  return actions;
}

}  // namespace occasional::supervisor
