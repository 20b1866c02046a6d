#pragma once

#include <string>
#include <string_view>
#include <system_error>

#include "workers/unique_fd.hpp"

namespace occasional::workers {

// Datagram I/O on a SOCK_SEQPACKET control socket, with at most one fd per
// message (SCM_RIGHTS). Both sides of the worker protocol use it.

// Sends one datagram, with `pass_fd` attached when >= 0. Non-blocking sockets
// give would_block (EAGAIN) as an error code; nothing is partially sent.
std::error_code send_datagram(int socket, std::string_view payload, int pass_fd = -1);

enum class ReceiveStatus { message, would_block, closed, bad_message, error };

struct Received {
  ReceiveStatus status = ReceiveStatus::error;
  std::string_view payload;  // valid until the next receive_datagram on this thread
  UniqueFd fd;               // the attached fd, if any
  const char* reason = "";   // bad_message/error: short label for metrics
  std::string error;         // bad_message/error: a sentence for the log
};

// Receives one datagram and checks it strictly: only SOL_SOCKET/SCM_RIGHTS
// control data, no MSG_CTRUNC or MSG_TRUNC, at most one fd. A message that
// fails a check is bad_message, and any fds that came with it are closed.
Received receive_datagram(int socket);

}  // namespace occasional::workers
