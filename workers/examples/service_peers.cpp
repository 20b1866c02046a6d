// Service workers as processes of the coordinator's system
// (docs/messages.md, "Workers are processes"). Under `occasional run`, or a
// config file, every worker is a process named service/replica; run()
// inside a worker joins that system instead of starting one of its own.
//
//   service_peers serve
//       answers ("ping", from) with ("pong", its name), and ("square", from,
//       N) with ("square", N*N), computed by a process it spawns.
//   service_peers ask PEER [OUT]
//       finds PEER by name, pings it, asks it to square 7, monitors it and,
//       when it goes down, waits for the replacement that takes the name and
//       pings that. Each step is a line on stdout (or appended to OUT).
//
// docs/examples/service_peers.json runs both as two services of one
// coordinator; so does the ctest service_peers_example.
#include <occasional/process.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

using namespace occasional;
using namespace std::chrono_literals;

namespace {

FILE* out = stdout;

void say(const std::string& line) {
  std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
}

bool is(const Value& m, const char* tag, size_t size) {
  const Tuple* t = m.as_tuple();
  return t && t->size() == size && (*t)[0] == Value(tag);
}

Value serve(Process& p) {
  const std::string me =
      std::string(std::getenv("OCCASIONAL_SERVICE")) + "/" + std::getenv("OCCASIONAL_REPLICA");
  for (;;) {
    Value m = p.receive();
    const Tuple* t = m.as_tuple();
    if (is(m, "ping", 2) && (*t)[1].as_address()) {
      p.send(*(*t)[1].as_address(), tuple("pong", me));
    } else if (is(m, "square", 3) && (*t)[1].as_address() && (*t)[2].as_int()) {
      // A process of its own does the work; its DOWN carries the result.
      const int64_t n = *(*t)[2].as_int();
      auto [child, ref] = p.spawn_monitor([n](Process&) { return n * n; });
      Value down = p.receive(
          [&](const Value& v) { return is(v, "DOWN", 4) && (*v.as_tuple())[1] == Value(ref); });
      const Value* result = (*down.as_tuple())[3].as_map()->find("value");
      p.send(*(*t)[1].as_address(), tuple("square", result ? *result : Value()));
    }
  }
}

// Waits (up to 30 s) for `name` to name a process other than `not_this`.
std::optional<Address> find(Process& p, const std::string& name,
                            const std::optional<Address>& not_this = std::nullopt) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::optional<Address> a = p.whereis(name); a && a != not_this) return a;
    p.receive([](const Value&) { return false; }, 20ms);
  }
  return std::nullopt;
}

std::optional<Value> ask(Process& p, const Address& to, const Value& request, const char* reply) {
  p.send(to, request);
  return p.receive([&](const Value& v) { return is(v, reply, 2); }, 10s);
}

Value ask_peer(Process& p, const std::string& peer) {
  std::optional<Address> a = find(p, peer);
  if (!a) {
    say("no process named " + peer);
    return 1;
  }
  std::optional<Value> pong = ask(p, *a, tuple("ping", p.self()), "pong");
  say("pong from " + (pong ? pong->to_string() : "nobody"));
  std::optional<Value> sq = ask(p, *a, tuple("square", p.self(), int64_t{7}), "square");
  say("square " + (sq ? (*sq->as_tuple())[1].to_string() : "none"));
  const Reference ref = p.monitor(*a);
  say("monitoring " + peer);
  Value down = p.receive(
      [&](const Value& v) { return is(v, "DOWN", 4) && (*v.as_tuple())[1] == Value(ref); });
  say("down " + (*down.as_tuple())[3].to_string());
  std::optional<Address> next = find(p, peer, a);
  if (!next) {
    say("no replacement for " + peer);
    return 1;
  }
  pong = ask(p, *next, tuple("ping", p.self()), "pong");
  say("replacement pong from " + (pong ? pong->to_string() : "nobody"));
  // Stays up: the service would restart a worker that returns.
  for (;;) p.receive();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "";
  if (what == "ask" && argc > 3 && !(out = std::fopen(argv[3], "a"))) {
    std::fprintf(stderr, "service_peers: cannot open %s: %s\n", argv[3], std::strerror(errno));
    return 2;
  }
  if (what == "serve") return run(serve);
  if (what == "ask" && argc > 2) {
    const std::string peer = argv[2];
    return run([&](Process& p) { return ask_peer(p, peer); });
  }
  std::fprintf(stderr, "usage: service_peers serve | service_peers ask PEER [OUT]\n");
  return 2;
}
