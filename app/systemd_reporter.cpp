#include "app/systemd_reporter.hpp"

#include <boost/asio/post.hpp>

namespace occasional::gateway {

using supervisor::LogLevel;

SystemdReporter::SystemdReporter(boost::asio::io_context& io, SystemdNotifier& notifier,
                                 std::function<metrics::Status()> status,
                                 std::set<std::string> listened,
                                 std::optional<std::chrono::microseconds> watchdog,
                                 const supervisor::EventLog& log)
    : io_(io),
      notifier_(notifier),
      status_(std::move(status)),
      listened_(std::move(listened)),
      watchdog_(watchdog),
      log_(log),
      status_timer_(io),
      watchdog_timer_(io) {}

void SystemdReporter::start() {
  if (!notifier_.active()) return;
  started_ = true;
  if (watchdog_) {
    log_.event(LogLevel::info, "systemd_watchdog")
        .num("interval_us", watchdog_->count())
        .num("ping_every_us", watchdog_->count() / 2);
    ping();
  }
  update();
}

void SystemdReporter::stopping() {
  if (!notifier_.active() || stopping_) return;
  stopping_ = true;
  notifier_.stopping();
  log_.event(LogLevel::info, "systemd_notify").str("sent", "STOPPING=1");
  update();
}

void SystemdReporter::changed() {
  // Several reports in one turn of the loop (a restart is exit, spawn,
  // ready) make one update.
  if (!started_ || update_posted_) return;
  update_posted_ = true;
  boost::asio::post(io_, [this] {
    update_posted_ = false;
    update();
  });
}

void SystemdReporter::update() {
  const metrics::Status status = status_();
  if (!ready_sent_ && !stopping_) {
    bool all_ready = true;
    for (const metrics::ServiceStatus& s : status.services)
      if (listened_.contains(s.name) && s.ready_workers == 0) all_ready = false;
    if (all_ready) {
      ready_sent_ = true;
      notifier_.ready();
      log_.event(LogLevel::info, "systemd_notify").str("sent", "READY=1");
    }
  }
  wanted_status_ = summary(status, stopping_);
  if (wanted_status_ == sent_status_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!last_status_ || now - *last_status_ >= kStatusInterval) return send_status();
  // Within a second of the last one: the newest summary goes out when the
  // second is over (one timer for any number of changes).
  if (status_timer_.expiry() > now) return;
  status_timer_.expires_at(*last_status_ + kStatusInterval);
  status_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && wanted_status_ != sent_status_) send_status();
  });
}

void SystemdReporter::send_status() {
  last_status_ = std::chrono::steady_clock::now();
  sent_status_ = wanted_status_;
  notifier_.status(sent_status_);
}

void SystemdReporter::ping() {
  notifier_.watchdog();
  // Half the interval, as sd_watchdog_enabled(3) advises: one late ping
  // does not get us killed.
  watchdog_timer_.expires_after(*watchdog_ / 2);
  watchdog_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) ping();
  });
}

std::string SystemdReporter::summary(const metrics::Status& status, bool stopping) {
  std::string out = stopping ? "stopping; " : "";
  bool first = true;
  for (const metrics::ServiceStatus& s : status.services) {
    out += first ? "" : ", ";
    first = false;
    out += s.name + " ";
    if (s.mode == "inetd")
      out += "inetd";
    else
      out += std::to_string(s.ready_workers) + "/" + std::to_string(s.replicas) + " ready";
    if (s.failed)
      out += " (failed)";
    else if (s.stopped)
      out += " (stopped)";
  }
  if (first) out += "no services";
  if (out.size() > kMaxStatus) out = out.substr(0, kMaxStatus - 3) + "...";
  return out;
}

}  // namespace occasional::gateway
