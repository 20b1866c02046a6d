#include "gateway/inetd_launcher.hpp"

namespace occasional::gateway {

using Launch = supervisor::InetdService::Launch;

InetdLauncher::InetdLauncher(boost::asio::io_context& io, supervisor::InetdService& service,
                             QueueConfig queue, metrics::ConnectionStats& stats)
    : service_(service), stats_(stats), queue_(io, queue, stats) {}

void InetdLauncher::dispatch(UniqueFd fd, workers::ConnHeader header) {
  if (queue_.empty() && launch(fd, header)) return;
  if (fd) queue_.push(std::move(fd), std::move(header));
}

bool InetdLauncher::launch(UniqueFd& fd, const workers::ConnHeader& header) {
  launching_ = true;
  const Launch result = service_.launch(fd.get(), header.peer);
  launching_ = false;
  switch (result) {
    case Launch::started:
      stats_.handed(header.listener);
      stats_.handoff_duration.observe(
          static_cast<double>(workers::monotonic_now_ns() - header.accepted_at_ns) * 1e-9);
      fd.reset();  // the process has its own copy
      return true;
    case Launch::at_cap:
      return false;
    case Launch::failed:
      // The exit record says why (start_failed); this connection has no process.
      stats_.reject("spawn_failed", header.listener);
      fd.reset();
      return true;
    case Launch::stopped:
      stats_.reject("shutdown", header.listener);
      fd.reset();
      return true;
  }
  return false;
}

void InetdLauncher::hand_out_queued() {
  queue_.hand_out([this](UniqueFd& fd, workers::ConnHeader& header) { return launch(fd, header); });
}

}  // namespace occasional::gateway
