// One connection's process, shared by the acceptor examples
// (tcp_echo_server.cpp, gateway_acceptor.cpp): the socket arrives as a
// message once it is this process's own; the process greets the client
// with its pid and echoes what it sends.
#pragma once

#include <unistd.h>
#include <occasional/process.hpp>

#include <optional>
#include <string>

namespace echo_example {

inline occasional::Value serve(occasional::Process& p) {
  using namespace occasional;
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

}  // namespace echo_example
