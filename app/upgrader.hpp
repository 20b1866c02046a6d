#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "app/systemd_notifier.hpp"
#include "app/upgrade_state.hpp"
#include "gateway/gateway.hpp"
#include "metrics/admin_server.hpp"
#include "metrics/metrics.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/supervisor.hpp"

namespace occasional::gateway {

// Replaces the running coordinator by another binary in place
// (`occasional ctl upgrade`, SIGUSR2; docs/supervision.md, "Upgrade"):
// runs the new binary's --self-test against the running command line,
// stops accepting (new clients wait in the listen backlog) until no
// connection is being routed or queued, writes the state the new binary
// needs into a memfd and execve()s it, keeping the pid, the listening
// sockets, the admin socket, the guardian and every worker with its control
// socket. Anything that fails before the execve leaves this coordinator
// running as it was, logged and counted (occasional_upgrade_failures_total).
class Upgrader {
 public:
  struct Parts {
    supervisor::Supervisor& supervisor;
    Gateway& gateway;
    metrics::Metrics& metrics;
    const supervisor::EventLog& log;
    SystemdNotifier& notifier;
  };
  // How long the self-test may take, and the quiet wait.
  static constexpr std::chrono::seconds kSelfTestTimeout{30};
  static constexpr std::chrono::seconds kQuietTimeout{5};

  // `argv`: this coordinator's command line, which the new binary gets too.
  Upgrader(boost::asio::io_context& io, Parts parts, std::vector<std::string> argv);

  // The fds this process was started with (see inherited_fds()): kept
  // open across the execve as they were.
  struct InheritedFd {
    int fd;
    dev_t dev;
    ino_t ino;
  };
  // Call first thing in main: what is open then came from whoever started
  // the coordinator (and, after an upgrade, the carried state, which
  // `minus` takes out).
  static std::vector<InheritedFd> inherited_fds();
  static std::vector<InheritedFd> minus(std::vector<InheritedFd> fds, const std::vector<int>& out);
  void set_inherited(std::vector<InheritedFd> fds) { inherited_ = std::move(fds); }

  // The coordinator's own service manager's watchdog interval (the
  // environment no longer has it: it was taken at start, as NOTIFY_SOCKET).
  void set_watchdog(std::optional<std::chrono::microseconds> watchdog) { watchdog_ = watchdog; }

  // The admin endpoint's socket, carried too (none: -1).
  void set_admin(metrics::AdminServer* admin) { admin_ = admin; }
  // Starts an upgrade to `binary` (empty: the running one as it is on disk
  // now). `done` as metrics::AdminBackend::upgrade: its `after_reply`
  // performs the execve.
  void begin(std::string binary, metrics::AdminBackend::UpgradeDone done);

  // Why the running coordinator cannot be carried over now; empty if it can.
  std::string not_carriable() const;

 private:
  void wait_quiet(std::chrono::steady_clock::time_point deadline);
  void hand_over();
  // Fills the state and writes it: the fds it names are this process's.
  UpgradeState collect() const;
  void fail(const char* reason, int http_status, const std::string& why);
  void wait_signal();

  boost::asio::io_context& io_;
  Parts parts_;
  std::vector<std::string> argv_;
  metrics::AdminServer* admin_ = nullptr;
  boost::asio::steady_timer timer_;
  boost::asio::signal_set usr2_;
  std::vector<InheritedFd> inherited_;
  std::optional<std::chrono::microseconds> watchdog_;
  bool busy_ = false;
  std::string binary_;
  metrics::AdminBackend::UpgradeDone done_;
};

// An upgrade blocks the stop and child signals across its execve, so that
// one sent meanwhile waits for the new coordinator instead of killing the
// process or being lost. The new coordinator calls this once its signal
// handlers are in place (harmless after a normal start).
void release_upgrade_signals();

}  // namespace occasional::gateway
