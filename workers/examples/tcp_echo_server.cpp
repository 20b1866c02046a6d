// Erlang's acceptor pattern with occasional's processes: process zero owns
// the listening socket and only accepts; each connection is handed to a
// process of its own (controlling_process), which greets the client with
// its pid and echoes what it sends. A crash or a kill of one connection's
// process closes that connection and nothing else
// (tests/process/tcp_echo_server_test.py shows it).
//
//   tcp_echo_server [port]   (0 or none: any free port; the first line of
//                             stdout says which: "listening on PORT")
#include <unistd.h>
#include <occasional/process.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace occasional;

// One connection's process: the socket arrives as a message once it is
// this process's own.
Value serve(Process& p) {
  const Value taken = p.receive([](const Value& v) { return tcp::Socket::from(v).has_value(); });
  const tcp::Socket s = *tcp::Socket::from(taken);
  if (!tcp::send(p, s, "hello from pid " + std::to_string(::getpid()) + "\n")) return Value();
  for (;;) {
    // One message at a time ({active, once}): a fast client cannot flood
    // this process's inbox.
    tcp::set_active(p, s, tcp::Active::once);
    const Value m = p.receive(tcp::messages_of(s));
    const std::optional<tcp::Event> e = tcp::event(m);
    if (e->kind != tcp::Event::Kind::data) return Value();  // closed or failed
    if (!tcp::send(p, s, e->bytes)) return Value();
  }
}

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
      const Address worker = p.spawn(serve);
      if (tcp::controlling_process(p, s, worker))
        p.send(worker, s);
      else
        tcp::close(p, s);
    }
  });
}
