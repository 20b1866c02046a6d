#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <functional>
#include <map>
#include <utility>

#include "supervisor/event_log.hpp"
#include "supervisor/supervisor.hpp"

namespace occasional::gateway {

// Exit status of the coordinator; documented in `occasional --help` and docs/.
enum class ExitStatus : int {
  clean = 0,        // stopped on request, or every worker finished with code 0
  failed = 1,       // a service was failed at stop, or a worker finished with a failure
  usage = 2,        // bad command line or configuration
  fatal = 3,        // the coordinator itself could not go on
  forced_stop = 4,  // a second stop signal: workers were SIGKILLed
};

// Turns SIGTERM/SIGINT into a graceful stop of every service (a second one
// kills at once), ends the loop when nothing is left running, and decides
// the exit status.
class Shutdown : private supervisor::ServiceObserver {
 public:
  // `on_stop` runs at the first stop signal, before the services stop (the
  // gateway stops accepting there).
  Shutdown(boost::asio::io_context& io, supervisor::Supervisor& supervisor,
           const supervisor::EventLog& log, std::function<void()> on_stop = {});

  ExitStatus status() const { return status_; }
  // An operator stopped a service (admin API): services going idle is then
  // no reason to exit. Cleared when a service is started again.
  void set_operator_stopped(bool stopped) { operator_stopped_ = stopped; }
  // With an admin endpoint an operator can start a failed service again, so
  // a failed service does not end the coordinator.
  void hold_when_failed(bool hold) { hold_when_failed_ = hold; }

 private:
  void wait_signal();
  void on_signal(int signal);
  void on_all_idle();

  void on_exited(const supervisor::ExitRecord& record) override;

  boost::asio::io_context& io_;
  supervisor::Supervisor& supervisor_;
  const supervisor::EventLog& log_;
  boost::asio::signal_set signals_;
  std::function<void()> on_stop_;
  int signals_seen_ = 0;
  bool finished_ = false;
  bool operator_stopped_ = false;
  bool hold_when_failed_ = false;
  ExitStatus status_ = ExitStatus::clean;
  // Whether each replica's last exit was clean, for the status when workers
  // finish on their own.
  std::map<std::pair<std::string, int>, bool> last_exit_clean_;
};

}  // namespace occasional::gateway
