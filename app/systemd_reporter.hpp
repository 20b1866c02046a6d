#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>

#include "app/systemd_notifier.hpp"
#include "metrics/status.hpp"
#include "supervisor/event_log.hpp"
#include "supervisor/service_observer.hpp"

namespace occasional::gateway {

// Keeps the coordinator's service manager informed (docs/deployment.md,
// "systemd"): READY=1 once every service with a listener has a ready
// worker, STATUS= with a one-line summary whenever it changes (at most once
// a second), WATCHDOG=1 at half the interval systemd asked for, STOPPING=1
// at shutdown. Does nothing when the notifier is inactive.
class SystemdReporter : public supervisor::ServiceObserver {
 public:
  // The status summary lists at most this many characters.
  static constexpr size_t kMaxStatus = 200;
  static constexpr std::chrono::seconds kStatusInterval{1};

  // `listened`: the services a listener routes to or shares its socket with.
  SystemdReporter(boost::asio::io_context& io, SystemdNotifier& notifier,
                  std::function<metrics::Status()> status, std::set<std::string> listened,
                  std::optional<std::chrono::microseconds> watchdog,
                  const supervisor::EventLog& log);

  // After the services started: READY=1 at once when no service has a
  // listener; the watchdog pings begin.
  void start();
  // The coordinator begins to stop (first stop signal, or nothing left to run).
  void stopping();

  // "stopping; hello 4/4 ready, api 0/2 ready (failed)".
  static std::string summary(const metrics::Status& status, bool stopping);

 private:
  void changed();
  void update();
  void send_status();
  void ping();

  void on_spawned(const std::string&, int, pid_t) override { changed(); }
  void on_ready(const std::string&, int, supervisor::WorkerLink*) override { changed(); }
  void on_unready(const std::string&, int) override { changed(); }
  void on_exited(const supervisor::ExitRecord&) override { changed(); }
  void on_restart_scheduled(const std::string&, int, supervisor::Duration) override { changed(); }
  void on_service_failed(const std::string&, int, supervisor::Duration) override { changed(); }
  void on_idle(const std::string&) override { changed(); }

  boost::asio::io_context& io_;
  SystemdNotifier& notifier_;
  std::function<metrics::Status()> status_;
  std::set<std::string> listened_;
  std::optional<std::chrono::microseconds> watchdog_;
  const supervisor::EventLog& log_;
  boost::asio::steady_timer status_timer_;
  boost::asio::steady_timer watchdog_timer_;
  bool update_posted_ = false;
  bool started_ = false;
  bool ready_sent_ = false;
  bool stopping_ = false;
  std::string wanted_status_;
  std::string sent_status_;
  std::optional<std::chrono::steady_clock::time_point> last_status_;
};

}  // namespace occasional::gateway
