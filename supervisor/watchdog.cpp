#include "supervisor/watchdog.hpp"

namespace occasional::supervisor {

void Watchdog::kick(Duration period, std::function<void()> on_timeout) {
  armed_ = true;
  // Re-arming cancels the wait under way: its handler sees operation_aborted.
  timer_.expires_after(period);
  timer_.async_wait([on_timeout = std::move(on_timeout)](const boost::system::error_code& ec) {
    if (!ec) on_timeout();
  });
}

void Watchdog::disarm() {
  timer_.cancel();
  armed_ = false;
}

}  // namespace occasional::supervisor
