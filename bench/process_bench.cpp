// occasional's processes (issue 24, docs/messages.md) measured the way
// bench/msg_floor and bench/msg_zmq measure their peers: 8-byte values
// (int64), side A times, side B echoes or sends.
//
//   process_bench pingpong N CPU_A CPU_B  process zero (A) <-> a spawned echo process (B)
//   process_bench stream N CPU_A CPU_B    a spawned process (B) sends N int64s to zero (A)
//   process_bench spawn N CPU_A CPU_B     spawn_monitor of a function that returns at
//                                         once -> its DOWN in zero, N times
//   process_bench rss K CPU_A CPU_B       K live processes, each with one channel to
//                                         zero: the coordinator's VmRSS
//
// The coordinator (this program's first process, which calls run()) stays
// on CPU_B: it is off the data path of a channel but does the work of a
// spawn. Prints one JSON line (bench/msg_timing.hpp) from process zero.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
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
  std::fprintf(stderr, "process_bench: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

int64_t as_int(const Value& v) {
  auto i = v.as_int();
  if (!i) fail("expected an integer, got " + v.to_string());
  return *i;
}

double vm_rss_mib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  fail("no VmRSS for pid " + std::to_string(pid));
}

std::string pingpong(Process& p, long warmup, long n, int cpu_b) {
  Address echo = p.spawn(
      [](Process& q, Address back, long rounds, int cpu) {
        msgbench::pin(cpu);
        for (long i = 0; i < rounds; ++i) q.send(back, q.receive());
      },
      p.self(), warmup + n, cpu_b);
  std::vector<int64_t> samples;
  samples.reserve(size_t(n));
  for (long i = 0; i < warmup + n; ++i) {
    int64_t t0 = now_ns();
    p.send(echo, Value(i));
    Value back = p.receive();
    int64_t t1 = now_ns();
    if (as_int(back) != i)
      fail("echo of " + std::to_string(i) + " came back as " + back.to_string());
    if (i >= warmup) samples.push_back(t1 - t0);
  }
  return msgbench::round_trip_json(std::move(samples));
}

std::string stream(Process& p, long n, int cpu_b) {
  Address sender = p.spawn(
      [](Process& q, Address to, long count, int cpu) {
        msgbench::pin(cpu);
        for (long i = 0; i < count; ++i) q.send(to, Value(i));
        q.receive();  // zero's "done": exit only once everything is read
      },
      p.self(), n, cpu_b);
  int64_t first = 0;
  for (long i = 0; i < n; ++i) {
    Value v = p.receive();
    if (i == 0) first = now_ns();
    if (as_int(v) != i) fail("value " + std::to_string(i) + " arrived as " + v.to_string());
  }
  int64_t last = now_ns();
  p.send(sender, Value("done"));
  return msgbench::stream_json(n, first, last);
}

bool is_down_of(const Value& m, const Reference& ref) {
  auto* t = m.as_tuple();
  if (!t || t->size() != 4) return false;
  auto* tag = (*t)[0].as_string();
  auto* r = (*t)[1].as_reference();
  return tag && *tag == "DOWN" && r && *r == ref;
}

std::string spawn_to_down(Process& p, long warmup, long n) {
  std::vector<int64_t> samples;
  samples.reserve(size_t(n));
  for (long i = 0; i < warmup + n; ++i) {
    int64_t t0 = now_ns();
    auto [who, ref] = p.spawn_monitor([](Process&) {});
    Value down = p.receive([&ref](const Value& m) { return is_down_of(m, ref); });
    int64_t t1 = now_ns();
    auto* reason = (*down.as_tuple())[3].as_map();
    auto* kind = reason ? reason->find(Value("kind")) : nullptr;
    if (!kind || !kind->as_string() || *kind->as_string() != "normal")
      fail("a function that returns at once went DOWN with " + down.to_string());
    if (i >= warmup) samples.push_back(t1 - t0);
  }
  return msgbench::round_trip_json(std::move(samples));
}

std::string coordinator_rss(Process& p, long k, pid_t coordinator) {
  double before = vm_rss_mib(coordinator);
  int64_t t0 = now_ns();
  for (long i = 0; i < k; ++i)
    p.spawn(
        [](Process& q, Address zero) {
          q.send(zero, Value(1));  // the channel to zero
          q.receive();             // alive until run() ends
        },
        p.self());
  for (long i = 0; i < k; ++i) p.receive();
  int64_t t1 = now_ns();
  double with = vm_rss_mib(coordinator);
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "{\"processes\": %ld, \"coordinator_rss_mib\": %.2f, "
                "\"coordinator_rss_before_mib\": %.2f, \"zero_rss_mib\": %.2f, "
                "\"spawn_and_connect_s\": %.3f}",
                k, with, before, vm_rss_mib(::getpid()), double(t1 - t0) / 1e9);
  return buf;
}

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: process_bench pingpong|stream|spawn|rss N CPU_A CPU_B\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) usage();
  std::string mode = argv[1];
  long n = std::atol(argv[2]);
  int cpu_a = std::atoi(argv[3]), cpu_b = std::atoi(argv[4]);
  if (n < 2 || (mode != "pingpong" && mode != "stream" && mode != "spawn" && mode != "rss"))
    usage();
  // 1000 processes: the coordinator holds a control fd and a pidfd for
  // each, process zero a channel to each.
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &nofile);
  msgbench::pin(cpu_b);
  pid_t coordinator = ::getpid();
  return occasional::run([=](Process& p) -> Value {
    msgbench::pin(cpu_a);
    long warmup = mode == "spawn" ? std::max(10L, n / 10) : std::max(100L, n / 10);
    std::string out = mode == "pingpong" ? pingpong(p, warmup, n, cpu_b)
                      : mode == "stream" ? stream(p, n, cpu_b)
                      : mode == "spawn"  ? spawn_to_down(p, warmup, n)
                                         : coordinator_rss(p, n, coordinator);
    std::printf("%s\n", out.c_str());
    std::fflush(stdout);
    return 0;
  });
}
