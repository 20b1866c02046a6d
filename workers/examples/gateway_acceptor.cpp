// Erlang's acceptor pattern behind the gateway: a handoff worker whose
// process zero takes the connections the coordinator hands over and gives
// each to a process of its own, which greets the client with its pid and
// echoes. A crash or a kill of one connection's process closes that
// connection and nothing else: not the worker, not its other connections
// (tests/process/tcp_echo_server_test.py --gateway shows it).
//
//   occasional run --listen 127.0.0.1:8080 --mode handoff -- gateway_acceptor
#include <occasional/process.hpp>

#include <cstdint>
#include <map>

#include "echo_connection.hpp"

using namespace occasional;

int main() {
  return run([](Process& p) -> Value {
    tcp::gateway_start(p);                  // hello and ready: connections come from now on
    std::map<Reference, uint64_t> serving;  // the monitor of each connection's process
    bool draining = false;
    for (;;) {
      if (draining && serving.empty()) return Value("drained");
      const Value m = p.receive();
      if (std::optional<tcp::GatewayConn> c = tcp::gateway_conn(m)) {
        auto [server, monitor] = p.spawn_monitor(echo_example::serve);
        if (tcp::controlling_process(p, c->socket, server))
          p.send(server, c->socket);
        else
          tcp::close(p, c->socket);  // the process is gone already: its DOWN follows
        serving.emplace(monitor, c->id);
        continue;
      }
      const Tuple* t = m.as_tuple();
      const std::string* name = t && !t->empty() ? (*t)[0].as_string() : nullptr;
      if (!name) continue;
      if (*name == "DOWN" && t->size() == 4 && (*t)[1].as_reference()) {
        // However the connection's process ended, its connection is over:
        // the gateway's least-connections count and a drain wait on it.
        if (auto it = serving.find(*(*t)[1].as_reference()); it != serving.end()) {
          tcp::gateway_finished(p, it->second);
          serving.erase(it);
        }
      } else if (*name == "gateway_drain") {
        draining = true;  // the connections being served finish first
      } else if (*name == "gateway_lost") {
        return m;  // the worker's exit reason says why
      }
    }
  });
}
