#pragma once

#include <chrono>
#include <string>

#include "workers/unique_fd.hpp"

namespace occasional::testing {

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string head;
  std::string body;
};

// One HTTP/1.1 request on a fresh connection to 127.0.0.1:port
// (Connection: close); `extra_headers` end in "\r\n" each.
HttpReply http_request(int port, const std::string& method, const std::string& target,
                       const std::string& extra_headers = "", const std::string& body = "",
                       std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Sends raw bytes, returns what came back until EOF or the timeout. With
// `half_close` the write side is shut once all is sent (some servers, Go's
// among them, take that as the client giving up).
std::string raw_exchange(int port, const std::string& bytes,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5),
                         bool half_close = true);

// A connection to 127.0.0.1:port (invalid if refused) that sends nothing
// until the caller does. With `rst_on_close` it closes with a reset
// (SO_LINGER 0): tests that open thousands would otherwise fill the
// ephemeral ports with TIME_WAIT.
UniqueFd connect_loopback(int port, bool rst_on_close = false);

// A loopback port bound (so no one else can take it) but not listening, for
// as long as this object lives: connections to it are refused.
struct ClosedPort {
  ClosedPort();
  UniqueFd fd;
  int port = 0;
};

}  // namespace occasional::testing
