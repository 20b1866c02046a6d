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
  nobody_running();
}

void SharedListenerGuard::stop() {
  stopped_ = true;
  timer_.cancel();
  stop_refusing();
}

void SharedListenerGuard::on_spawned(const std::string& service, int replica, pid_t) {
  if (!services_.contains(service)) return;
  running_.emplace(service, replica);
  failed_.erase(service);
  timer_.cancel();
  stop_refusing();
}

void SharedListenerGuard::on_exited(const supervisor::ExitRecord& record) {
  if (!services_.contains(record.service)) return;
  running_.erase({record.service, record.replica});
  if (!running_.empty()) return;
  if (!failed_.empty() && !stopped_) return refuse();
  nobody_running();
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

void SharedListenerGuard::nobody_running() {
  if (stopped_ || refusing_) return;
  timer_.expires_after(grace_);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && running_.empty() && !stopped_) refuse();
  });
}

void SharedListenerGuard::refuse() {
  if (refusing_) return;
  refusing_ = true;
  timer_.cancel();
  log_.event(LogLevel::warn, "listener_refusing")
      .str("listener", listener_.name())
      .str("reason", "no worker running")
      .str("action", "clients are accepted and closed until a worker runs");
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
