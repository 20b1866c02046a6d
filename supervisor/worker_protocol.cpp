#include "supervisor/worker_protocol.hpp"

#include <cstring>

namespace occasional::supervisor {

WorkerProtocol::WorkerProtocol(boost::asio::io_context& io, UniqueFd control, Duration grace,
                               std::string service, int replica, ServiceObserver& observer,
                               Handlers handlers)
    : grace_(grace),
      service_(std::move(service)),
      replica_(replica),
      observer_(observer),
      handlers_(std::move(handlers)),
      overdue_(io),
      link_(io, std::move(control),
            WorkerLink::Handlers{[this](const workers::Message& m) { on_message(m); },
                                 [this](const char* reason, const std::string& error) {
                                   handlers_.on_broken(reason, error);
                                 },
                                 [this](const char* reason, uint64_t read, uint64_t used) {
                                   observer_.on_closed_counter_clamped(service_, replica_, reason,
                                                                       read, used);
                                 },
                                 [this] { on_channel_closed(); }}) {}

void WorkerProtocol::start() {
  link_.send(workers::encode_hello_coordinator());
}

bool WorkerProtocol::drain() {
  draining_ = true;
  const auto grace_ms = std::chrono::duration_cast<std::chrono::milliseconds>(grace_);
  return !link_.send(workers::encode_drain(grace_ms.count()));
}

std::optional<std::string> WorkerProtocol::finish() {
  link_.read_remaining();
  return std::move(stated_reason_);
}

void WorkerProtocol::on_message(const workers::Message& m) {
  switch (m.type) {
    case workers::MessageType::hello:
      link_.set_takes_batches(m.conn_batches);
      if (m.closed_counter)
        if (std::error_code ec = link_.share_closed_counter())
          observer_.on_closed_counter_unavailable(service_, replica_, ec.message());
      break;
    case workers::MessageType::pong:
      break;
    case workers::MessageType::ready:
      handlers_.on_ready(true);
      break;
    case workers::MessageType::closed:
      observer_.on_conn_closed(service_, replica_, m.id);
      break;
    case workers::MessageType::exit:
      stated_reason_ =
          m.is_error ? "error: " + m.text + (m.detail.empty() ? "" : ": " + m.detail) : m.text;
      handlers_.on_ready(false);
      // While draining, the grace deadline already applies.
      if (!draining_) expect_exit(grace_, "exit_overdue");
      break;
    case workers::MessageType::status:
      handlers_.on_status(m.text);
      break;
    case workers::MessageType::conn:
    case workers::MessageType::conns:
    case workers::MessageType::drain:
    case workers::MessageType::ping:
    case workers::MessageType::closed_counter:
      handlers_.on_broken("wrong_direction", std::string("\"") +
                                                 workers::message_type_name(m.type) +
                                                 "\" is a coordinator-to-worker message");
      break;
  }
}

void WorkerProtocol::on_channel_closed() {
  handlers_.on_ready(false);
  // After `exit`, or while draining, EOF is the expected way out and a
  // deadline is already set.
  if (stated_reason_ || draining_) return;
  // A worker that exits closes its socket a moment before its pidfd becomes
  // readable (the kernel closes files before it notifies the parent), so EOF
  // alone does not tell an exit in progress from a worker that closed fd 3
  // and lives on: a short deadline does, and then `exited` (waitid WNOWAIT)
  // checks for an exit the loop has not seen yet.
  expect_exit(kChannelClosedGrace, "channel_closed");
}

void WorkerProtocol::expect_exit(Duration within, const char* reason) {
  overdue_armed_ = true;
  overdue_.expires_after(within);
  overdue_.async_wait([this, alive = std::weak_ptr<bool>(alive_), within,
                       reason](const boost::system::error_code& ec) {
    if (ec || alive.expired() || handlers_.exited()) return;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(within).count();
    handlers_.on_broken(reason, std::string(std::strcmp(reason, "channel_closed") == 0
                                                ? "the worker closed its control socket"
                                                : "the worker sent exit") +
                                    " and was still running " + std::to_string(ms) + " ms later");
  });
}

}  // namespace occasional::supervisor
