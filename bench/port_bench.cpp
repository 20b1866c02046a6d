// Python ports (issue 22, docs/messages.md "Ports") measured the way
// bench/process_bench measures native processes: int64 values, side A
// times, side B echoes or sends. The Python side is bench/port_peer.py on
// workers/ports/occasional_port.py; bench/ports.py runs every mode and
// multiprocessing.Pipe beside them.
//
//   port_bench cpp_pingpong N CPU_A CPU_B  process zero (A) <-> a Python port echoing (B)
//   port_bench port_to_cpp N CPU_A CPU_B   a Python port (B) sends N int64s to zero (A)
//   port_bench cpp_to_port N CPU_A CPU_B   zero (B) sends N int64s to a Python port (A)
//   port_bench py_pingpong N CPU_A CPU_B   Python port (A) <-> Python port echoing (B),
//                                          over occasional's channels
//   port_bench py_stream N CPU_A CPU_B     Python port (B) sends N int64s to another (A)
//
// The coordinator stays on CPU_B, as in process_bench. Every port is
// monitored: a Python exception ends the run with its DOWN, never a hang.
// Prints one JSON line (bench/msg_timing.hpp's fields).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <occasional/process.hpp>
#include <string>
#include <vector>

#include "bench/msg_timing.hpp"

namespace {

using msgbench::now_ns;
using occasional::Address;
using occasional::Process;
using occasional::Reference;
using occasional::Value;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "port_bench: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

struct Port {
  Address address;
  Reference ref;
};

Port start_port(Process& p, int cpu) {
  occasional::PortOptions o;
  o.env.push_back("PYTHONPATH=" OCCASIONAL_SOURCE_DIR "/workers/ports");
  auto [address, ref] = p.spawn_port_monitor(
      {"python3", OCCASIONAL_SOURCE_DIR "/bench/port_peer.py", std::to_string(cpu)}, o);
  return {address, ref};
}

bool is_down(const Value& m) {
  auto* t = m.as_tuple();
  auto* tag = t && t->size() == 4 ? (*t)[0].as_string() : nullptr;
  return tag && *tag == "DOWN";
}

int64_t as_int(const Value& v) {
  auto i = v.as_int();
  if (!i) fail("expected an integer, got " + v.to_string());
  return *i;
}

bool is_normal_down(const Value& m) {
  if (!is_down(m)) return false;
  auto* reason = (*m.as_tuple())[3].as_map();
  auto* kind = reason ? reason->find(Value("kind")) : nullptr;
  return kind && kind->as_string() && *kind->as_string() == "normal";
}

// The figures a Python port sent (JSON text), or the DOWN of a port that
// crashed. A port that ended normally (the echo, done before the timer
// reports) leaves its DOWN for wait_normal_exits.
std::string report_from(Process& p) {
  Value m =
      p.receive([](const Value& v) { return v.as_string() || (is_down(v) && !is_normal_down(v)); });
  if (!m.as_string()) fail("a Python port went DOWN with " + m.to_string());
  return *m.as_string();
}

// Each port must end normally: anything else is a broken measurement.
void wait_normal_exits(Process& p, const std::vector<Port>& ports) {
  for (const Port& port : ports) {
    const Reference ref = port.ref;
    Value down = p.receive(
        [&ref](const Value& m) { return is_down(m) && *(*m.as_tuple())[1].as_reference() == ref; });
    if (!is_normal_down(down)) fail("a Python port went DOWN with " + down.to_string());
  }
}

std::string cpp_pingpong(Process& p, long warmup, long n, int cpu_b) {
  Port echo = start_port(p, cpu_b);
  p.send(echo.address, occasional::tuple("echo", p.self(), warmup + n));
  std::vector<int64_t> samples;
  samples.reserve(size_t(n));
  for (long i = 0; i < warmup + n; ++i) {
    int64_t t0 = now_ns();
    p.send(echo.address, Value(i));
    Value back = p.receive();
    int64_t t1 = now_ns();
    if (as_int(back) != i)
      fail("echo of " + std::to_string(i) + " came back as " + back.to_string());
    if (i >= warmup) samples.push_back(t1 - t0);
  }
  wait_normal_exits(p, {echo});
  return msgbench::round_trip_json(std::move(samples));
}

// A stream is timed by its receiver from its "go" to the last value, as
// bench/port_peer.py times one (see there why not from the first value).
std::string port_to_cpp(Process& p, long n, int cpu_b) {
  Port sender = start_port(p, cpu_b);
  p.send(sender.address, occasional::tuple("send", p.self(), n));
  p.receive([](const Value& m) { return m == Value("ready"); });
  const int64_t go = now_ns();
  p.send_sync(sender.address, Value("go"));
  for (long i = 0; i < n; ++i) {
    Value v = p.receive();
    if (as_int(v) != i) fail("value " + std::to_string(i) + " arrived as " + v.to_string());
  }
  const int64_t last = now_ns();
  p.send(sender.address, Value("done"));
  wait_normal_exits(p, {sender});
  char buf[160];
  const double secs = double(last - go) / 1e9;
  std::snprintf(buf, sizeof buf, "{\"n\": %ld, \"seconds\": %.6f, \"msgs_per_s\": %.0f}", n, secs,
                double(n) / secs);
  return buf;
}

std::string cpp_to_port(Process& p, long n, int cpu_a) {
  Port receiver = start_port(p, cpu_a);
  p.send(receiver.address, occasional::tuple("receive", p.self(), p.self(), n));
  p.send(receiver.address, Value("ready"));
  p.receive([](const Value& m) { return m == Value("go"); });
  for (long i = 0; i < n; ++i) p.send(receiver.address, Value(i));
  std::string figures = report_from(p);
  wait_normal_exits(p, {receiver});
  return figures;
}

std::string py_pingpong(Process& p, long warmup, long n, int cpu_a, int cpu_b) {
  Port echo = start_port(p, cpu_b);
  Port timer = start_port(p, cpu_a);
  p.send(echo.address, occasional::tuple("echo", timer.address, warmup + n));
  p.send(timer.address, occasional::tuple("pingpong", p.self(), echo.address, n, warmup));
  std::string figures = report_from(p);
  wait_normal_exits(p, {echo, timer});
  return figures;
}

std::string py_stream(Process& p, long n, int cpu_a, int cpu_b) {
  Port sender = start_port(p, cpu_b);
  Port receiver = start_port(p, cpu_a);
  p.send(receiver.address, occasional::tuple("receive", p.self(), sender.address, n));
  p.send(sender.address, occasional::tuple("send", receiver.address, n));
  std::string figures = report_from(p);
  p.send(sender.address, Value("done"));
  wait_normal_exits(p, {sender, receiver});
  return figures;
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: port_bench cpp_pingpong|port_to_cpp|cpp_to_port|py_pingpong|py_stream "
               "N CPU_A CPU_B\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) usage();
  const std::string mode = argv[1];
  const long n = std::atol(argv[2]);
  const int cpu_a = std::atoi(argv[3]), cpu_b = std::atoi(argv[4]);
  if (n < 2 || (mode != "cpp_pingpong" && mode != "port_to_cpp" && mode != "cpp_to_port" &&
                mode != "py_pingpong" && mode != "py_stream"))
    usage();
  msgbench::pin(cpu_b);
  return occasional::run([=](Process& p) -> Value {
    const long warmup = std::max(100L, n / 10);
    std::string out;
    if (mode == "cpp_pingpong") {
      msgbench::pin(cpu_a);
      out = cpp_pingpong(p, warmup, n, cpu_b);
    } else if (mode == "port_to_cpp") {
      msgbench::pin(cpu_a);
      out = port_to_cpp(p, n, cpu_b);
    } else if (mode == "cpp_to_port") {
      out = cpp_to_port(p, n, cpu_a);
    } else if (mode == "py_pingpong") {
      out = py_pingpong(p, warmup, n, cpu_a, cpu_b);
    } else {
      out = py_stream(p, n, cpu_a, cpu_b);
    }
    std::printf("%s\n", out.c_str());
    std::fflush(stdout);
    return 0;
  });
}
