#include "supervisor/accepting_watch.hpp"

#include <algorithm>
#include <system_error>

#include "supervisor/accept_probe.hpp"

namespace occasional::supervisor {

void AcceptingWatch::start(pid_t pid, ino_t listener, MonoTime give_up_at, Handlers handlers) {
  ++generation_;
  pid_ = pid;
  listener_ = listener;
  give_up_at_ = give_up_at;
  handlers_ = std::move(handlers);
  every_ = kFirstLook;
  look_later();
}

void AcceptingWatch::cancel() {
  ++generation_;
  timer_.cancel();
}

void AcceptingWatch::look_later() {
  timer_.expires_after(every_);
  every_ = std::min(every_ * 2, kLongestLook);
  timer_.async_wait([this, generation = generation_](const boost::system::error_code& ec) {
    if (ec || generation != generation_) return;
    std::error_code error;
    switch (probe_accepting(pid_, listener_, error)) {
      case AcceptProbe::accepting:
        handlers_.on_accepting();
        return;
      case AcceptProbe::cannot_tell:
        handlers_.on_gave_up(error.message());
        return;
      case AcceptProbe::not_yet:
        // One never seen waiting (an io_uring server, one always busy) would
        // otherwise be looked at every 0.5 s for as long as it runs.
        if (std::chrono::steady_clock::now() < give_up_at_) return look_later();
        handlers_.on_gave_up("not seen waiting to accept in time");
        return;
    }
  });
}

}  // namespace occasional::supervisor
