// Erlang's acceptor pattern with occasional's processes: process zero owns
// the listening socket and only accepts; each connection is handed to a
// process of its own (controlling_process), which greets the client with
// its pid and echoes what it sends. A crash or a kill of one connection's
// process closes that connection and nothing else
// (tests/process/tcp_echo_server_test.py shows it).
//
//   tcp_echo_server [port]   (0 or none: any free port; the first line of
//                             stdout says which: "listening on PORT")
#include <occasional/process.hpp>

#include <cstdio>
#include <cstdlib>

#include "echo_connection.hpp"

using namespace occasional;

int main(int argc, char** argv) {
  const uint16_t port = argc > 1 ? static_cast<uint16_t>(std::atoi(argv[1])) : 0;
  return run([port](Process& p) -> Value {
    tcp::ListenOptions options;
    options.host = "127.0.0.1";
    const tcp::Socket listener = tcp::listen(p, port, options);
    std::printf("listening on %u\n", static_cast<unsigned>(tcp::port(p, listener)));
    std::fflush(stdout);
    for (;;) {
      const tcp::Socket s = tcp::accept(p, listener);
      const Address worker = p.spawn(echo_example::serve);
      if (tcp::controlling_process(p, s, worker))
        p.send(worker, s);
      else
        tcp::close(p, s);
    }
  });
}
