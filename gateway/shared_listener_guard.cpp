#include "gateway/shared_listener_guard.hpp"

namespace occasional::gateway {

using supervisor::LogLevel;

SharedListenerGuard::SharedListenerGuard(boost::asio::io_context& io, Listener& listener,
                                         std::set<std::string> services,
                                         std::chrono::milliseconds grace,
                                         metrics::ConnectionStats& stats,
                                         const supervisor::EventLog& log)
    : listener_(listener),
      services_(std::move(services)),
      grace_(grace),
      stats_(stats),
      log_(log),
      timer_(io) {}

void SharedListenerGuard::start() {
  stopped_ = false;
  nobody_ready();
}

void SharedListenerGuard::stop() {
  stopped_ = true;
  timer_.cancel();
  unready_since_.reset();
  stop_refusing();
}

void SharedListenerGuard::on_spawned(const std::string& service, int replica, pid_t) {
  if (!services_.contains(service)) return;
  running_.emplace(service, replica);
  failed_.erase(service);
}

void SharedListenerGuard::on_ready(const std::string& service, int replica,
                                   supervisor::WorkerLink*) {
  if (!services_.contains(service)) return;
  ready_.emplace(service, replica);
  unready_since_.reset();
  timer_.cancel();
  stop_refusing();
}

void SharedListenerGuard::on_unready(const std::string& service, int replica) {
  if (!services_.contains(service)) return;
  ready_.erase({service, replica});
  if (ready_.empty()) nobody_ready();
}

void SharedListenerGuard::on_exited(const supervisor::ExitRecord& record) {
  if (!services_.contains(record.service)) return;
  running_.erase({record.service, record.replica});
  ready_.erase({record.service, record.replica});
  if (running_.empty() && !failed_.empty() && !stopped_) return refuse();
  if (ready_.empty()) nobody_ready();
}

void SharedListenerGuard::on_service_failed(const std::string& service, int, supervisor::Duration) {
  if (!services_.contains(service)) return;
  failed_.insert(service);
  if (running_.empty() && !stopped_) refuse();
}

void SharedListenerGuard::on_idle(const std::string& service) {
  // Failed or stopped, with nothing scheduled: no worker is coming.
  if (services_.contains(service) && running_.empty() && !stopped_) refuse();
}

void SharedListenerGuard::nobody_ready() {
  // The clock runs from the moment no worker was ready; what happens while
  // it runs (spawns, exits before ready) does not start it again.
  if (stopped_ || refusing_ || unready_since_) return;
  unready_since_ = std::chrono::steady_clock::now();
  timer_.expires_at(*unready_since_ + grace_);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && ready_.empty() && !stopped_) refuse();
  });
}

void SharedListenerGuard::refuse() {
  if (refusing_) return;
  refusing_ = true;
  timer_.cancel();
  log_.event(LogLevel::warn, "listener_refusing")
      .str("listener", listener_.name())
      .str("reason", "no worker ready")
      .str("action", "clients are accepted and closed until a worker is ready");
  // The fd closes as the handler returns: a reset if the client had sent
  // something, else an end of file.
  listener_.start([this](UniqueFd, workers::ConnHeader header) {
    stats_.reject("no_worker", header.listener);
  });
}

void SharedListenerGuard::stop_refusing() {
  if (!refusing_) return;
  refusing_ = false;
  listener_.stop();
  log_.event(LogLevel::info, "listener_shared")
      .str("listener", listener_.name())
      .str("action", "workers accept again");
}

}  // namespace occasional::gateway
