#include "app/shutdown.hpp"

#include <csignal>

namespace occasional::gateway {

using supervisor::LogLevel;

Shutdown::Shutdown(boost::asio::io_context& io, supervisor::Supervisor& supervisor,
                   const supervisor::EventLog& log, std::function<void()> on_stop)
    : io_(io),
      supervisor_(supervisor),
      log_(log),
      signals_(io, SIGTERM, SIGINT),
      on_stop_(std::move(on_stop)) {
  supervisor_.add_observer(*this);
  supervisor_.on_all_idle([this] { on_all_idle(); });
  wait_signal();
}

void Shutdown::wait_signal() {
  signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    on_signal(signal);
    wait_signal();
  });
}

void Shutdown::on_signal(int signal) {
  ++signals_seen_;
  if (signals_seen_ == 1) {
    log_.event(LogLevel::info, "stop_requested")
        .str("signal", supervisor::signal_name(signal))
        .str("action", "graceful stop of every service");
    status_ = supervisor_.any_failed() ? ExitStatus::failed : ExitStatus::clean;
    if (on_stop_) on_stop_();
    supervisor_.stop_all();
  } else {
    log_.event(LogLevel::warn, "stop_forced")
        .str("signal", supervisor::signal_name(signal))
        .str("action", "SIGKILL to every worker's process group");
    status_ = ExitStatus::forced_stop;
    supervisor_.kill_all();
  }
  if (supervisor_.all_idle()) on_all_idle();
}

void Shutdown::on_exited(const supervisor::ExitRecord& record) {
  last_exit_clean_[{record.service, record.replica}] = record.clean();
}

void Shutdown::on_all_idle() {
  // Reported by the last service to go idle and checked again after a stop
  // request (services may already be idle then): finish once.
  if (finished_) return;
  if (signals_seen_ == 0 && (operator_stopped_ || (hold_when_failed_ && supervisor_.any_failed())))
    return;
  finished_ = true;
  if (signals_seen_ == 0) {
    // Every worker finished and the policy restarts none of them.
    for (const auto& [key, clean] : last_exit_clean_)
      if (!clean) status_ = ExitStatus::failed;
    if (supervisor_.any_failed()) status_ = ExitStatus::failed;
  }
  log_.event(LogLevel::info, "coordinator_exit").num("status", static_cast<int>(status_));
  io_.stop();
}

}  // namespace occasional::gateway
