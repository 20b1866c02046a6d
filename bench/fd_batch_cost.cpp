// What passing connections in batches saves: the CPU time per fd of
// send_datagram + receive_datagram + close on a SOCK_SEQPACKET pair (the
// code occasional and its C++ workers use), with K fds per message. The
// coordinator sends `conns` messages of up to 8 (docs/gateway.md, "Batches").
//
//   fd_batch_cost [N]     N fds per batch size (default 200000)
//
// prints one line per batch size: "K us_per_fd".
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "workers/control_channel.hpp"
#include "workers/protocol.hpp"

namespace {

double cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace occasional::workers;
  const long n = argc > 1 ? std::atol(argv[1]) : 200000;
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    std::perror("socketpair");
    return 1;
  }
  // Stand-ins for connections: the kernel's work per fd passed does not
  // depend on what the fd is.
  std::vector<int> fds;
  for (size_t i = 0; i < kMaxConnsPerMessage; ++i)
    fds.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  // A `conn` header's worth of bytes per connection.
  const std::string header(170, 'x');
  for (size_t k : {1, 2, 4, 8, 16}) {
    std::string payload;
    for (size_t i = 0; i < k; ++i) payload += header;
    const double start = cpu_seconds();
    for (long done = 0; done < n; done += static_cast<long>(k)) {
      if (send_datagram(pair[0], payload, std::span<const int>(fds.data(), k))) {
        std::perror("sendmsg");
        return 1;
      }
      Received r = receive_datagram(pair[1], kMaxConnsPerMessage);
      if (r.status != ReceiveStatus::message || r.fds.size() != k) {
        std::fprintf(stderr, "fd_batch_cost: receive failed: %s\n", r.error.c_str());
        return 1;
      }
    }  // the received fds close as `r` goes
    std::printf("%zu %.3f\n", k, (cpu_seconds() - start) / static_cast<double>(n) * 1e6);
  }
  return 0;
}
